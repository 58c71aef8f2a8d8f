"""The paths every image answers that others name too: probes, metrics, predictions.

Declared here once: runtime/app.py and runtime/server.py serve them, and the
builder writes them into manifests, the image's HEALTHCHECK and its own clients.
"""
from __future__ import annotations

LIVENESS = "/livez"  # the process answers: restart it when not
READINESS = "/readyz"  # the model is loaded and answering: send it traffic
PING = "/ping"  # TorchServe's health check, kept for its clients
METRICS = "/metrics"  # Prometheus text format, every worker's samples
PREDICTIONS = "/predictions"  # + /{model}[/{version}]: TorchServe's inference API


def predictions(model: str) -> str:
    return f"{PREDICTIONS}/{model}"
