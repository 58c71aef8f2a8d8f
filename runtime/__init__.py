"""mkserve's serving runtime: what runs inside every image and under `mkserve serve`.

Nothing here imports the builder or its dependencies (typer, jinja2, docker).
"""
from __future__ import annotations

__version__ = "0.1.0"

# torch warns in plain text at import when numpy is absent (numpy is optional for torch):
# noise on every start, and a line that would break the one-JSON-object-per-line logs.
# The image's ENV and `mkserve serve` put this in PYTHONWARNINGS.
QUIET_WARNINGS = "ignore:Failed to initialize NumPy"
