"""`ts.metrics.metric_encoder.MetricEncoder`: JSON for Metric and Dimension objects."""
from __future__ import annotations

import json
from typing import Any


class MetricEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if hasattr(o, "to_dict"):
            return o.to_dict()
        return super().default(o)
