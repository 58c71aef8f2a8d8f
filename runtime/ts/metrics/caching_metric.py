"""`ts.metrics.caching_metric.CachingMetric`: a declared metric handlers update by value."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mkserve.runtime.ts.metrics.dimension import as_dimension_dict
from mkserve.runtime.ts.metrics.metric_type_enum import MetricTypes

logger = logging.getLogger(__name__)


class CachingMetric:
    """A metric with fixed dimension names, created by `add_metric_to_cache`/`get_metric`.

    Updates go straight to the owning HandlerMetrics' sink; nothing is
    buffered. Bad updates (wrong number of dimension values) are logged and
    dropped, because a metric must never fail a request.
    """

    def __init__(self, metric_name: str, unit: str, dimension_names: list[str],
                 metric_type: MetricTypes, emit: Callable[..., None],
                 defaults: dict[str, str]) -> None:
        self.metric_name = metric_name
        self.unit = unit
        self.dimension_names = list(dimension_names)
        self.metric_type = metric_type
        self._emit = emit
        self._defaults = defaults

    def __repr__(self) -> str:
        return (f"CachingMetric({self.metric_name!r}, {self.unit!r}, "
                f"{self.dimension_names!r}, {self.metric_type})")

    def add_or_update(self, value: float, dimension_values: list[str] | None = None,
                      request_id: str = "") -> None:
        """Record `value` with one value per declared dimension name, in order.

        Trailing default dimensions (ModelName, Level) may be left out.
        """
        values = [str(v) for v in (dimension_values or [])]
        names = self.dimension_names
        if len(values) > len(names):
            self._reject(f"{len(values)} dimension values for {len(names)} names {names}")
            return
        for name in names[len(values):]:
            if name not in self._defaults:
                self._reject(f"no value for dimension {name!r} (names are {names})")
                return
            values.append(self._defaults[name])
        self._emit(self.metric_name, self.metric_type, value, self.unit,
                   dict(zip(names, values, strict=False)))

    def update(self, value: float, request_id: str = "", dimensions: Any = None) -> None:
        """Record `value` with Dimension objects (TorchServe's older calling style)."""
        given = as_dimension_dict(dimensions, self._defaults)
        if not self.dimension_names:
            self._emit(self.metric_name, self.metric_type, value, self.unit, given)
            return
        merged = {**self._defaults, **given}
        missing = [name for name in self.dimension_names if name not in merged]
        if missing:
            self._reject(f"no value for dimensions {missing}")
            return
        self._emit(self.metric_name, self.metric_type, value, self.unit,
                   {name: merged[name] for name in self.dimension_names})

    def _reject(self, problem: str) -> None:
        logger.warning("metric %s not recorded: %s", self.metric_name, problem)
