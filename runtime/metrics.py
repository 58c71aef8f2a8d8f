"""Prometheus metrics: TorchServe's names plus mkserve's own, correct across gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (the server sets it before anything imports
prometheus_client), each worker writes its samples to files in that folder
and any worker's /metrics reports the sum over all of them.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("mkserve.metrics")

LATENCY_MS_BUCKETS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                      60000, 120000)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_NAME_RE = re.compile(r"[^a-zA-Z0-9_:]")


HOSTNAME = socket.gethostname()


class HostCollector:
    """TorchServe's host series, read when /metrics is scraped: CPU (since the previous
    scrape by this process), memory (/proc/meminfo) and the root disk."""

    def __init__(self) -> None:
        self._cpu: tuple[int, int] | None = None

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        labels = {"Level": "Host", "Hostname": HOSTNAME}
        for name, unit, value in self.figures():
            family = GaugeMetricFamily(name, f"Host {name} ({unit}), as TorchServe reports it",
                                       labels=list(labels))
            family.add_metric(list(labels.values()), value)
            yield family

    def figures(self) -> list[tuple[str, str, float]]:
        out = []
        cpu = self._cpu_percent()
        if cpu is not None:
            out.append(("CPUUtilization", "Percent", cpu))
        mem = _meminfo()
        if mem:
            total, available = mem.get("MemTotal", 0), mem.get("MemAvailable", 0)
            out += [("MemoryUsed", "Megabytes", (total - available) / 1024),
                    ("MemoryAvailable", "Megabytes", available / 1024),
                    ("MemoryUtilization", "Percent",
                     100.0 * (total - available) / total if total else 0.0)]
        disk = shutil.disk_usage("/")
        out += [("DiskUsage", "Gigabytes", disk.used / 1024**3),
                ("DiskUtilization", "Percent", 100.0 * disk.used / disk.total),
                ("DiskAvailable", "Gigabytes", disk.free / 1024**3)]
        return out

    def _cpu_percent(self) -> float | None:
        try:
            with open("/proc/stat") as handle:
                fields = [int(v) for v in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle, total = fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)
        before, self._cpu = self._cpu, (idle, total)
        if before is None or total == before[1]:
            before = (0, 0)
        busy = (total - before[1]) - (idle - before[0])
        return max(0.0, 100.0 * busy / max(1, total - before[1]))


def _meminfo() -> dict[str, int]:
    try:
        with open("/proc/meminfo") as handle:
            return {line.split(":")[0]: int(line.split()[1]) for line in handle
                    if line.split()[1:2] and line.split()[1].isdigit()}
    except (OSError, ValueError):
        return {}


_HOST = HostCollector()


class AggregateRegistry(CollectorRegistry):
    """Every worker's samples (the multiprocess collector), with TorchServe's metrics query.

    `GET /metrics?name[]=ts_inference_requests_total` answers those series only;
    prometheus_client's own restriction knows a collector's names only when it
    describes them, which the multiprocess collector does not (it answers nothing).
    """

    def __init__(self) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        super().__init__()
        MultiProcessCollector(self)
        self.register(_HOST)

    def restricted_registry(self, names: Any) -> _Restricted:  # type: ignore[override]
        return _Restricted(self, set(names))


class _Restricted:
    def __init__(self, registry: CollectorRegistry, names: set[str]) -> None:
        self.registry, self.names = registry, names

    def collect(self) -> Any:
        from prometheus_client.metrics_core import Metric

        for metric in self.registry.collect():
            samples = [s for s in metric.samples if s.name in self.names]
            if samples:
                chosen = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                chosen.samples = samples
                yield chosen


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """All series one worker reports, labelled with the model's name and version.

    Gauges use multiprocess modes that make a scrape through any worker
    correct: `livesum` for per-worker states (workers, in-flight, queue),
    `sum` for the TorchServe microsecond totals (they must never go down).
    """

    def __init__(self, model_name: str, model_version: str,
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry
        self.labels = {"model_name": model_name, "model_version": model_version}
        base = ("model_name", "model_version")
        reg = registry
        labels = self.labels
        self.requests = Counter("ts_inference_requests", "Prediction requests received",
                                base, registry=reg).labels(**labels)
        self.latency_ms = Histogram("ts_inference_latency_ms",
                                    "Time from request received to answer (ms)", base,
                                    buckets=LATENCY_MS_BUCKETS, registry=reg).labels(**labels)
        self.queue_ms = Histogram("ts_queue_latency_ms", "Time a row waited for the model (ms)",
                                  base, buckets=LATENCY_MS_BUCKETS, registry=reg).labels(**labels)
        self.latency_us = Gauge("ts_inference_latency_microseconds",
                                "Total time spent answering requests (µs), TorchServe-compatible",
                                base, multiprocess_mode="sum", registry=reg).labels(**labels)
        self.queue_us = Gauge("ts_queue_latency_microseconds",
                              "Total time rows waited for the model (µs), TorchServe-compatible",
                              base, multiprocess_mode="sum", registry=reg).labels(**labels)
        self.workers = Gauge("ts_model_workers", "Workers serving the model (ready)",
                             ("model_name",), multiprocess_mode="livesum",
                             registry=reg).labels(model_name=model_name)
        self.gpu_memory = Gauge("ts_gpu_memory_used_bytes",
                                "GPU memory allocated by the model's workers (0 on CPU)",
                                ("model_name",), multiprocess_mode="livesum",
                                registry=reg).labels(model_name=model_name)
        self.batch_size = Histogram("mkserve_batch_size", "Rows per batch handed to the handler",
                                    base, buckets=BATCH_BUCKETS, registry=reg).labels(**labels)
        self.inflight = Gauge("mkserve_inflight_requests", "Prediction requests being answered",
                              base, multiprocess_mode="livesum", registry=reg).labels(**labels)
        self.queue_depth = Gauge("mkserve_queue_depth", "Rows waiting for the model",
                                 base, multiprocess_mode="livesum", registry=reg).labels(**labels)
        self.load_seconds = Gauge("mkserve_model_load_seconds", "Time to load the model (s)",
                                  base, multiprocess_mode="max", registry=reg).labels(**labels)
        self.responses = Counter("mkserve_responses", "Prediction answers by HTTP status "
                                 "(a gRPC call's as its REST twin's) and protocol (http, grpc)",
                                 base + ("status", "protocol"), registry=reg)
        self.shed_total = Counter("mkserve_shed_requests", "Requests refused with a full queue",
                                  base, registry=reg).labels(**labels)
        self.handler_errors = Counter("mkserve_handler_errors", "Batches or rows the handler "
                                      "failed, by status", base + ("status",), registry=registry)
        # prometheus-flask-exporter's default series, same names, labels and buckets: the
        # exporter still serves /metrics, the app records these with cached label children.
        self.http_duration = Histogram("flask_http_request_duration_seconds",
                                       "Flask HTTP request duration in seconds",
                                       ("method", "endpoint", "status"), registry=registry)
        self.http_total = Counter("flask_http_request_total", "Total number of HTTP requests",
                                  ("method", "status"), registry=registry)
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._responses: dict[tuple[int, str], Any] = {}
        self.gpu_memory.set(0)
        self._custom: dict[str, Any] = {}
        self._custom_lock = threading.Lock()
        self._torchserve_series(model_name, model_version, reg)

    def _torchserve_series(self, model_name: str, model_version: str,
                           reg: CollectorRegistry | None) -> None:
        """TorchServe's default series (its metrics.yaml, metrics_mode=prometheus), with its
        names and labels. Its counters are gauges summed over workers here, so that the
        names carry no `_total` suffix, as TorchServe's do. The host figures (CPU, memory,
        disk) are read at scrape time (HostCollector)."""
        host = {"Level": "Host", "Hostname": HOSTNAME}
        self.requests_by_class = {
            c: Gauge(f"Requests{c}XX", f"Requests answered with a {c}xx status (TorchServe)",
                     ("Level", "Hostname"), multiprocess_mode="sum", registry=reg,
                     ).labels(**host) for c in "245"}
        self.queue_time = Gauge("QueueTime", "Time the last batch's rows waited (ms)",
                                ("Level", "Hostname"), multiprocess_mode="livemostrecent",
                                registry=reg).labels(**host)
        self.worker_thread_time = Gauge(
            "WorkerThreadTime", "Time of the last prediction spent in the server outside the "
            "queue and the model (ms)", ("Level", "Hostname"),
            multiprocess_mode="livemostrecent", registry=reg).labels(**host)
        self.worker_load_time = Gauge(
            "WorkerLoadTime", "Time the worker took to load the model (ms)",
            ("WorkerName", "Level", "Hostname"), multiprocess_mode="livemostrecent",
            registry=reg).labels(WorkerName=f"W-{os.getpid()}-{model_name}_{model_version}",
                                 **host)
        self.prediction_time = Gauge(
            "PredictionTime", "Time the model took for the last batch (ms)",
            ("ModelName", "Level", "Hostname"), multiprocess_mode="livemostrecent",
            registry=reg).labels(ModelName=model_name, Level="Model", Hostname=HOSTNAME)
        self._last_queue_ms = self._last_prediction_ms = 0.0

    # -- request threads --------------------------------------------------
    def request_started(self) -> None:
        self.requests.inc()
        self.inflight.inc()

    def request_finished(self, status: int, elapsed_ms: float, protocol: str = "http") -> None:
        self.inflight.dec()
        self.latency_ms.observe(elapsed_ms)
        self.latency_us.inc(elapsed_ms * 1000.0)
        key = (status, protocol)
        child = self._responses.get(key)
        if child is None:  # labels() costs a lock and a tuple per call: keep the children
            child = self._responses[key] = self.responses.labels(
                status=str(status), protocol=protocol, **self.labels)
        child.inc()
        self.worker_thread_time.set(max(0.0, elapsed_ms - self._last_queue_ms
                                        - self._last_prediction_ms))

    def http_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """One answered HTTP request, as prometheus-flask-exporter's defaults record it."""
        key = (method, endpoint, status)
        children = self._http_children.get(key)
        if children is None:
            children = self._http_children[key] = (
                self.http_duration.labels(method=method, endpoint=endpoint, status=str(status)),
                self.http_total.labels(method=method, status=str(status)))
        children[0].observe(seconds)
        children[1].inc()
        by_class = self.requests_by_class.get(str(status)[0])
        if by_class is not None:
            by_class.inc()

    def shed(self) -> None:
        self.shed_total.inc()

    # -- model thread -----------------------------------------------------
    def model_loaded(self, seconds: float) -> None:
        self.load_seconds.set(seconds)
        self.worker_load_time.set(seconds * 1000.0)
        self.workers.set(1)

    def worker_stopped(self) -> None:
        self.workers.set(0)

    def batch(self, size: int, queue_ms: list[float]) -> None:
        self.batch_size.observe(size)
        for waited in queue_ms:
            self.queue_ms.observe(waited)
        self.queue_us.inc(sum(queue_ms) * 1000.0)
        if queue_ms:
            self._last_queue_ms = sum(queue_ms) / len(queue_ms)
            self.queue_time.set(self._last_queue_ms)

    def inference(self, size: int, elapsed_ms: float, depth: int = 0) -> None:
        self.queue_depth.set(depth)
        self._last_prediction_ms = elapsed_ms
        self.prediction_time.set(elapsed_ms)

    def gpu_memory_used(self, used: int) -> None:
        self.gpu_memory.set(used)

    def handler_error(self, status: int) -> None:
        self.handler_errors.labels(status=str(status), **self.labels).inc()

    def handler_metric(self, name: str, kind: str, value: float, unit: str,
                       dimensions: dict[str, str]) -> None:
        """The handler's context.metrics calls, as Prometheus series named after the metric."""
        key = _NAME_RE.sub("_", name)
        if key[:1].isdigit():
            key = "_" + key
        dims = {_NAME_RE.sub("_", k): str(v) for k, v in dimensions.items()}
        with self._custom_lock:
            metric = self._custom.get(key)
            if metric is None:
                labelnames = ("model_name",) + tuple(sorted(dims))
                doc = f"Handler metric {name} ({unit})" if unit else f"Handler metric {name}"
                if kind == "counter":
                    metric = Counter(key, doc, labelnames, registry=self.registry)
                elif kind == "histogram":
                    metric = Histogram(key, doc, labelnames, registry=self.registry)
                else:
                    metric = Gauge(key, doc, labelnames, multiprocess_mode="livemostrecent",
                                   registry=self.registry)
                self._custom[key] = metric
        expected = set(metric._labelnames) - {"model_name"}
        if set(dims) != expected:
            log.warning("handler metric %s: dimensions %s differ from its first use %s; dropped",
                        name, sorted(dims), sorted(expected))
            return
        child: Any = metric.labels(model_name=self.labels["model_name"], **dims)
        if kind == "counter":
            child.inc(value)
        elif kind == "histogram":
            child.observe(value)
        else:
            child.set(value)
