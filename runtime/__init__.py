"""mkserve's serving runtime: what runs inside every image and under `mkserve serve`.

Nothing here imports the builder or its dependencies (typer, jinja2, docker).
"""
from __future__ import annotations

__version__ = "0.1.0"
