"""`ts.metrics`: the custom-metrics API handlers reach through `context.metrics`."""
from __future__ import annotations

from mkserve.runtime.ts.metrics.caching_metric import CachingMetric
from mkserve.runtime.ts.metrics.dimension import Dimension
from mkserve.runtime.ts.metrics.metric_cache import HandlerMetrics, MetricSink
from mkserve.runtime.ts.metrics.metric_type_enum import MetricTypes

__all__ = ["CachingMetric", "Dimension", "HandlerMetrics", "MetricSink", "MetricTypes"]
