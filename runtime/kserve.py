"""KServe V1 and V2 (Open Inference Protocol) routes over the same model service."""
from __future__ import annotations

from typing import Any, Callable


def register_kserve(app: Any, service: Any, predict: Callable[[list[Any]], list[Any]]) -> None:
    """Add the KServe routes to `app`; `predict(rows)` runs rows through the batcher."""
