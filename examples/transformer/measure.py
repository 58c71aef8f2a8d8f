"""Time the transformer's forward pass in-process, on one intra-op thread.

Usage: python measure.py [MODEL_PT] [--threads N] [--batches 1,16]
       (default: model_scripted.pt next to this script, 1 thread)

This is the physical limit a server is compared against: the best rows/s the
model reaches without any HTTP in front of it. Prints the median over many
runs because these machines are shared and noisy.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SEQ_LEN = 64


def time_forward(model: torch.jit.ScriptModule, batch: int, repeats: int) -> float:
    """Median milliseconds of one forward pass over `batch` token rows."""
    tokens = torch.randint(1, 1000, (batch, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(batch, SEQ_LEN, dtype=torch.bool)
    samples = []
    with torch.inference_mode():
        # TorchScript's profiling executor optimises over the first calls.
        for _ in range(5):
            model(tokens, mask)
        for _ in range(repeats):
            start = time.perf_counter()
            model(tokens, mask)
            samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(HERE / "model_scripted.pt"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model = torch.jit.load(args.model, map_location="cpu").eval()
    print(f"torch {torch.__version__}, {args.threads} intra-op thread(s)")
    for batch in (int(b) for b in args.batches.split(",")):
        ms = time_forward(model, batch, args.repeats)
        print(f"batch {batch:>3}: {ms:8.2f} ms/forward  {batch * 1000.0 / ms:8.1f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
