"""`ts.metrics.metric.Metric`: one named value with its unit and dimensions (the
pre-0.8 metrics API, which `context.metrics.store` still holds)."""
from __future__ import annotations

from typing import Any

from mkserve.runtime.ts.metrics.unit import Units

MetricUnit = Units()


class Metric:
    def __init__(self, name: str, value: float, unit: str, dimensions: list[Any] | None,
                 request_id: str | None = None, metric_method: str | None = None) -> None:
        self.name = name
        self.unit = MetricUnit.units.get(unit, unit)
        self.metric_method = metric_method
        self.value = value
        self.dimensions = list(dimensions or [])
        self.request_id = request_id

    def update(self, value: float) -> None:
        """Counters add `value`; other metrics take it."""
        self.value = self.value + value if self.metric_method == "counter" else value

    def reset(self) -> None:
        self.value = 0

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.dimensions)
        text = f"{self.name}.{self.unit}:{self.value}|#{dims}"
        return f"{text}|{self.request_id}" if self.request_id else text

    def to_dict(self) -> dict[str, Any]:
        out = {"MetricName": self.name, "Value": self.value, "Unit": self.unit,
               "Dimensions": [d.to_dict() if hasattr(d, "to_dict") else d
                              for d in self.dimensions]}
        if self.request_id:
            out["RequestId"] = self.request_id
        return out
