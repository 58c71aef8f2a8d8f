"""`ts.metrics.metric_cache_errors`: what the metrics cache raises."""
from __future__ import annotations


class GeneralMetricsCacheError(Exception):
    """Base of the metrics cache's errors."""


class MetricsCacheTypeError(GeneralMetricsCacheError, TypeError):
    pass


class MetricsCacheValueError(GeneralMetricsCacheError, ValueError):
    pass


class MetricsCacheKeyError(GeneralMetricsCacheError, KeyError):
    pass


class MetricsCacheIOError(GeneralMetricsCacheError, OSError):
    pass


class MetricsCachePyYamlError(GeneralMetricsCacheError):
    pass
