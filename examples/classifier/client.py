"""The guide's "Making Predictions" calls, pointed at any server.

Usage: python client.py [BASE_URL] [--model NAME]
       (default: http://localhost:8080, model "classifier")

Sends the guide's single input, then its two-input batch, and prints each
JSON answer. Under mkserve a top-level JSON array is a client batch and comes
back as an array in the same order; stock TorchServe answers that second call
with 503 (its handler receives the whole list as one body).
"""
from __future__ import annotations

import argparse
import json
import sys

import requests

# Prepare input data
input_data = {"features": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}

batch_data = [
    {"features": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]},
    {"features": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]},
]


def show(label: str, response: requests.Response) -> None:
    """Print the status and the JSON answer (or the raw text when it is not JSON)."""
    print(f"--- {label}: HTTP {response.status_code}")
    try:
        print(json.dumps(response.json(), indent=2))
    except ValueError:
        print(response.text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", nargs="?", default="http://localhost:8080")
    parser.add_argument("--model", default="classifier")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    url = f"{args.base_url.rstrip('/')}/predictions/{args.model}"

    # Single prediction
    single = requests.post(url, json=input_data, timeout=args.timeout)
    show("single prediction", single)

    # Batch prediction
    batch = requests.post(url, json=batch_data, timeout=args.timeout)
    show("batch prediction", batch)

    return 0 if single.ok and batch.ok else 1


if __name__ == "__main__":
    sys.exit(main())
