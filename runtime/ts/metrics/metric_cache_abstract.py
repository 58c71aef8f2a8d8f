"""`ts.metrics.metric_cache_abstract.MetricCacheAbstract`: the `context.metrics` API.

mkserve's `context.metrics` (HandlerMetrics) is one; built directly, a cache
logs each metric on the `ts.metrics` logger.
"""
from __future__ import annotations

import logging
from typing import Any

from mkserve.runtime.ts.metrics.metric_cache import HandlerMetrics

log = logging.getLogger("ts.metrics")


def _log_sink(name: str, kind: str, value: float, unit: str, dims: dict[str, str]) -> None:
    log.info("%s %s %s %s %s", name, kind, value, unit, dims)


class MetricCacheAbstract(HandlerMetrics):
    def __init__(self, config_file_path: str | None = None, sink: Any = None,
                 model_name: str = "") -> None:
        super().__init__(sink or _log_sink, model_name)
        self.config_file_path = config_file_path
        self.request_ids: Any = None

    def set_request_ids(self, request_ids: Any) -> None:
        self.request_ids = request_ids

    def initialize_cache(self) -> None:
        """Declare the metrics the config file lists (subclasses read it)."""
