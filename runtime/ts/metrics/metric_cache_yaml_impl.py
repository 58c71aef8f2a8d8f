"""`ts.metrics.metric_cache_yaml_impl.MetricsCacheYamlImpl`: a cache that declares the
`model_metrics` of a TorchServe metrics.yaml."""
from __future__ import annotations

from typing import Any

import yaml
from mkserve.runtime.ts.metrics.metric_cache_abstract import MetricCacheAbstract
from mkserve.runtime.ts.metrics.metric_cache_errors import (
    MetricsCacheIOError,
    MetricsCachePyYamlError,
)
from mkserve.runtime.ts.metrics.metric_type_enum import MetricTypes


class MetricsCacheYamlImpl(MetricCacheAbstract):
    def __init__(self, config_file_path: str, sink: Any = None, model_name: str = "") -> None:
        super().__init__(config_file_path, sink, model_name)
        try:
            with open(config_file_path, encoding="utf-8") as handle:
                self._parsed = yaml.safe_load(handle) or {}
        except OSError as exc:
            raise MetricsCacheIOError(f"cannot read {config_file_path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise MetricsCachePyYamlError(f"{config_file_path} is not YAML: {exc}") from exc

    def initialize_cache(self) -> None:
        metrics = (self._parsed.get("model_metrics") or {}) if isinstance(self._parsed, dict) \
            else {}
        for kind, entries in metrics.items():
            for entry in entries or []:
                self.add_metric_to_cache(entry["name"], entry.get("unit", ""),
                                         entry.get("dimensions") or [], MetricTypes(kind))
