"""`ts.handler_utils.timer.timed`: time a handler step when the model config asks for it."""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any


def _profiling(handler: Any) -> bool:
    config = getattr(getattr(handler, "context", None), "model_yaml_config", None) or {}
    section = config.get("handler") if isinstance(config, dict) else None
    return bool(isinstance(section, dict) and section.get("profile"))


def timed(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a handler method (preprocess, inference, postprocess, ...).

    With `handler: {profile: true}` in model-config.yaml, each call records its
    wall time in ms as the metric `ts_handler_<method>` through
    `context.metrics`; otherwise the method runs untimed.
    """
    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _profiling(self):
            return func(self, *args, **kwargs)
        started = time.perf_counter()
        try:
            return func(self, *args, **kwargs)
        finally:
            metrics = getattr(self.context, "metrics", None)
            if metrics is not None:
                elapsed_ms = (time.perf_counter() - started) * 1000.0
                metrics.add_time(f"ts_handler_{func.__name__}", round(elapsed_ms, 3), None, "ms")

    return wrapper
