"""`ts.metrics.metric_abstract.MetricAbstract`: the interface of a declared metric."""
from __future__ import annotations

from mkserve.runtime.ts.metrics.metric import MetricUnit
from mkserve.runtime.ts.metrics.metric_type_enum import MetricTypes

__all__ = ["MetricAbstract", "MetricUnit"]


class MetricAbstract:
    def __init__(self, metric_name: str, unit: str, dimension_names: list[str] | None = None,
                 metric_type: MetricTypes = MetricTypes.COUNTER) -> None:
        self.metric_name = metric_name
        self.unit = unit
        self.dimension_names = list(dimension_names or [])
        self.metric_type = metric_type

    def add_or_update(self, value: float, dimension_values: list[str] | None = None,
                      request_id: str = "") -> None:
        raise NotImplementedError
