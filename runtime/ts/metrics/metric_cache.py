"""HandlerMetrics: the `context.metrics` object, forwarding handler metrics to a sink."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from mkserve.runtime.ts.metrics.caching_metric import CachingMetric
from mkserve.runtime.ts.metrics.dimension import as_dimension_dict
from mkserve.runtime.ts.metrics.metric_type_enum import MetricTypes

logger = logging.getLogger(__name__)

# sink(name, kind, value, unit, dimensions): kind is "counter", "gauge" or "histogram".
MetricSink = Callable[[str, str, float, str, "dict[str, str]"], None]


def _metric_type(metric_type: MetricTypes | str) -> MetricTypes:
    if isinstance(metric_type, MetricTypes):
        return metric_type
    try:
        return MetricTypes(str(metric_type).lower())
    except ValueError:
        raise ValueError(f"metric_type must be one of counter, gauge, histogram "
                         f"(or MetricTypes), not {metric_type!r}") from None


class HandlerMetrics:
    """TorchServe's custom-metrics API (`context.metrics`) on top of a sink callable.

    Every add_* call and every CachingMetric update calls
    `sink(name, kind, value, unit, dimensions)` once, synchronously, where kind
    is "counter" (value is an increment), "gauge" (value is the new value) or
    "histogram" (value is one observation), unit is the handler's unit string
    ("ms", "MB", "percent", "count", ...) and dimensions is {name: value} with
    ModelName and Level ("Model", or "Error" for add_error) added unless the
    handler gave them. `add_metric_to_cache` metrics carry exactly their
    declared dimension names. `idx` and `request_id` are accepted and ignored:
    per-request labels would explode Prometheus series.

    Errors in the sink or in the handler's arguments are logged (once per
    metric name) and swallowed: a metric must never fail a request. The
    declared-metric cache is guarded by a lock; the sink must be thread-safe
    if handlers emit metrics from their own threads.
    """

    def __init__(self, sink: MetricSink, model_name: str = "") -> None:
        self._sink = sink
        self.model_name = model_name
        self._cache: dict[tuple[MetricTypes, str], CachingMetric] = {}
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        # TorchServe's deprecated MetricsStore exposed `store`; old handlers iterate it.
        self.store: list[Any] = []

    # -- plumbing ---------------------------------------------------------
    def _defaults(self, level: str = "Model") -> dict[str, str]:
        return {"ModelName": self.model_name, "Level": level}

    def _emit(self, name: str, metric_type: MetricTypes | str, value: Any, unit: str,
              dimensions: dict[str, str]) -> None:
        try:
            kind = _metric_type(metric_type).value
            self._sink(str(name), kind, float(value), str(unit), dimensions)
        except Exception:
            if name not in self._warned:
                self._warned.add(name)
                logger.warning("metric %s (value %r, dimensions %r) was not recorded; "
                               "further failures of this metric are logged at debug level",
                               name, value, dimensions, exc_info=True)
            else:
                logger.debug("metric %s not recorded", name, exc_info=True)

    def _record(self, name: str, value: Any, unit: str, dimensions: Any,
                metric_type: MetricTypes | str, level: str = "Model") -> None:
        defaults = self._defaults(level)
        try:
            dims = as_dimension_dict(dimensions, defaults)
        except Exception:  # noqa: BLE001 - malformed dimensions drop the metric, not the request
            logger.warning("metric %s: cannot read dimensions %r", name, dimensions)
            return
        for key, default in defaults.items():
            dims.setdefault(key, default)
        self._emit(name, metric_type, value, unit, dims)

    # -- add_* (TorchServe names and defaults) ------------------------------
    def add_metric(self, name: str, value: float, unit: str, idx: Any = None,
                   dimensions: Any = None,
                   metric_type: MetricTypes | str = MetricTypes.COUNTER) -> None:
        """Record a metric with any unit; counter unless `metric_type` says otherwise."""
        self._record(name, value, unit, dimensions, metric_type)

    def add_time(self, name: str, value: float, idx: Any = None, unit: str = "ms",
                 dimensions: Any = None,
                 metric_type: MetricTypes | str = MetricTypes.GAUGE) -> None:
        """Record a duration (unit "ms" or "s"); gauge by default."""
        self._record(name, value, unit, dimensions, metric_type)

    def add_size(self, name: str, value: float, idx: Any = None, unit: str = "MB",
                 dimensions: Any = None,
                 metric_type: MetricTypes | str = MetricTypes.GAUGE) -> None:
        """Record a size (unit "MB", "kB", "GB" or "B"); gauge by default."""
        self._record(name, value, unit, dimensions, metric_type)

    def add_percent(self, name: str, value: float, idx: Any = None, dimensions: Any = None,
                    metric_type: MetricTypes | str = MetricTypes.GAUGE) -> None:
        """Record a percentage; gauge by default."""
        self._record(name, value, "percent", dimensions, metric_type)

    def add_counter(self, name: str, value: float, idx: Any = None, dimensions: Any = None,
                    metric_type: MetricTypes | str = MetricTypes.COUNTER) -> None:
        """Increment a counter by `value`."""
        self._record(name, value, "count", dimensions, metric_type)

    def add_error(self, name: str, value: float, dimensions: Any = None) -> None:
        """Count an error: a counter with Level "Error"."""
        self._record(name, value, "count", dimensions, MetricTypes.COUNTER, level="Error")

    # -- declared metrics ---------------------------------------------------
    def add_metric_to_cache(self, metric_name: str, unit: str,
                            dimension_names: list[str] | None = None,
                            metric_type: MetricTypes | str = MetricTypes.COUNTER
                            ) -> CachingMetric:
        """Declare a metric (replacing one of the same name and type) and return it.

        Declaring emits nothing; call `add_or_update` on the result.
        """
        if not isinstance(metric_name, str) or not isinstance(unit, str):
            raise TypeError("add_metric_to_cache needs metric_name and unit as str")
        kind = _metric_type(metric_type)
        metric = CachingMetric(metric_name, unit, list(dimension_names or []), kind,
                               self._emit, self._defaults())
        with self._lock:
            self._cache[(kind, metric_name)] = metric
        return metric

    def get_metric(self, metric_name: str,
                   metric_type: MetricTypes | str = MetricTypes.COUNTER) -> CachingMetric:
        """Return the declared metric; an undeclared one is created with ModelName, Level.

        TorchServe raises for metrics missing from its metrics.yaml, which lives
        in the server's config rather than the archive, so mkserve declares
        them on first use instead.
        """
        kind = _metric_type(metric_type)
        with self._lock:
            metric = self._cache.get((kind, metric_name))
        if metric is None:
            logger.info("metric %s (%s) was not declared; declaring it with dimensions "
                        "ModelName, Level", metric_name, kind.value)
            metric = self.add_metric_to_cache(metric_name, "", ["ModelName", "Level"], kind)
        return metric
