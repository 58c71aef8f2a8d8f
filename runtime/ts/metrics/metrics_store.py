"""`ts.metrics.metrics_store.MetricsStore`: the pre-0.8 metrics API; each add_* also keeps
a Metric in `store`."""
from __future__ import annotations

from typing import Any

from mkserve.runtime.ts.metrics.metric import Metric
from mkserve.runtime.ts.metrics.metric_cache import HandlerMetrics


class MetricsStore(HandlerMetrics):
    def __init__(self, request_ids: Any = None, model_name: str = "", sink: Any = None) -> None:
        def keep(name: str, kind: str, value: float, unit: str, dims: dict[str, str]) -> None:
            from mkserve.runtime.ts.metrics.dimension import Dimension

            self.store.append(Metric(name, value, unit, [Dimension(k, v) for k, v in
                                                         dims.items()], None, kind))
            if sink is not None:
                sink(name, kind, value, unit, dims)

        super().__init__(keep, model_name)
        self.request_ids = request_ids
