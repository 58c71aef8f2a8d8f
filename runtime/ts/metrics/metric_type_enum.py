"""`ts.metrics.metric_type_enum.MetricTypes`: the three metric kinds."""
from __future__ import annotations

import enum


class MetricTypes(enum.Enum):
    """Metric kind; the value is the kind string the metrics sink receives."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
