"""Start the runtime: resolve settings, open the model, run gunicorn with mkserve's hooks.

The image's ENTRYPOINT (`python -m mkserve.runtime`) and `mkserve serve` both
end here, so both run the same process tree: a gunicorn master (PID 1 in a
container) and event-loop workers (worker.py, http/), each loading the model after fork.
"""
from __future__ import annotations

import atexit
import gc
import logging
import logging.config
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.errors import HaltServer
from gunicorn.glogging import Logger as GunicornLogger

from . import __version__, routes
from .access_log import AccessLogWriter, write_access_log_in_background
from .devices import WorkerPlan, cpu_cores, gpu_count, gpu_for_worker, plan_workers, worker_bounds
from .http.balancer import connection_table
from .logs import logging_config
from .memory import tune_allocator
from .settings import RuntimeSettings, SettingsError, resolve, unhonoured
from .settings import read as read_setting
from .source import ModelSource, SourceError, open_source

log = logging.getLogger("mkserve.server")

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_CONFIG = 2
EXIT_MODEL = 3  # gunicorn's WORKER_BOOT_ERROR: the arbiter halts with it


class _Logger(GunicornLogger):
    """gunicorn's logger minus its access log: mkserve writes its own (MKSERVE_ACCESS_LOG).

    Given a logging config, gunicorn would build the access-log fields of every
    request only for its WARNING-level `gunicorn.access` logger to drop them.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


class Runtime(BaseApplication):
    """gunicorn application: configuration in, one Flask app per worker out."""

    def __init__(self, settings: RuntimeSettings, source: ModelSource, plan: WorkerPlan) -> None:
        self.settings = settings
        self.source = source
        self.plan = plan
        self.service: Any = None
        self._slot = 0
        self._worker: Any = None
        self._access_writer: AccessLogWriter | None = None
        self._grpc: Any = None  # the worker's GrpcListener when MKSERVE_GRPC_PORT is set
        # How many connections each worker slot holds, shared by all workers: the
        # server spreads connections with it (http/balancer.py).
        self.connection_counts = connection_table(plan.workers)
        super().__init__()

    def load_config(self) -> None:
        s, plan = self.settings, self.plan
        config = {
            "bind": [f"{'[' + s.host + ']' if ':' in s.host else s.host}:{s.http_listen_port}"],
            "workers": plan.workers,
            "worker_class": "mkserve.runtime.worker.EventLoopWorker",
            "threads": plan.threads,
            # The model loads in a thread, so the heartbeat runs during long loads.
            "timeout": 30,
            "graceful_timeout": max(1, round(s.graceful_timeout_s)),
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": s.log_level,
            "logconfig_dict": logging_config(s.log_format, s.log_level,
                                             {"model": s.model_name or self.source.name}),
            "proc_name": f"mkserve-{s.model_name or self.source.name}",
            "worker_tmp_dir": tempfile.gettempdir(),
            "control_socket_disable": True,
            "logger_class": _Logger,
            "on_starting": self._on_starting,
            "when_ready": self._when_ready,
            "pre_fork": self._pre_fork,
            "post_fork": self._post_fork,
            "post_worker_init": self._post_worker_init,
            "worker_exit": self._worker_exit,
            "child_exit": self._child_exit,
        }
        for key, value in config.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    # -- master -----------------------------------------------------------
    def _on_starting(self, arbiter: Any) -> None:
        folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        for name in os.listdir(folder):  # stale samples from an earlier run must not count
            os.unlink(os.path.join(folder, name))

    def _when_ready(self, arbiter: Any) -> None:
        s, plan = self.settings, self.plan
        device = f"{plan.gpus} GPU(s)" if plan.gpus else "CPU"
        log.info("serving %s %s on http://%s:%d (%d workers x %d threads, %d intra-op threads, %s)",
                 s.model_name or self.source.name, self.source.version, s.host,
                 s.http_listen_port,
                 plan.workers, plan.threads, plan.intra_op_threads, device)
        for name in ("K_SERVICE", "K_REVISION", "K_CONFIGURATION"):
            if os.environ.get(name):
                log.info("platform %s=%s", name, os.environ[name])
        if s.metrics_port:
            from prometheus_client import start_http_server

            from .metrics import AggregateRegistry

            start_http_server(s.metrics_port, addr=s.host, registry=AggregateRegistry())
            log.info("metrics also on http://%s:%d/metrics", s.host, s.metrics_port)

    def _pre_fork(self, arbiter: Any, worker: Any) -> None:
        # Give the new worker the least-used slot, so that a replaced worker
        # takes over its predecessor's GPU rather than doubling up on another.
        used = [getattr(w, "mkserve_slot", -1) for w in arbiter.WORKERS.values()]
        slots = range(self.plan.workers)
        worker.mkserve_slot = min(slots, key=lambda i: (used.count(i), i))

    def _child_exit(self, arbiter: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    # -- worker -----------------------------------------------------------
    def _post_fork(self, arbiter: Any, worker: Any) -> None:
        import torch

        self._slot = getattr(worker, "mkserve_slot", 0)
        torch.set_num_threads(self.plan.intra_op_threads)
        if self.settings.access_log:
            self._access_writer = write_access_log_in_background()

    def load(self) -> Any:
        """Runs in each worker after fork: build the service and the app, start loading."""
        from .app import create_app
        from .metrics import Metrics
        from .service import ModelService

        gpu_id = gpu_for_worker(self._slot, self.plan.gpus,
                                self.source.model_config.get("deviceIds"))
        name = self.settings.model_name or self.source.name
        metrics = Metrics(name, self.source.version)
        self.service = ModelService(self.source, self.settings, gpu_id, metrics,
                                    on_load_failed=self._exit_after_grace,
                                    on_stuck=self._retire, replica_workers=self.plan.workers)
        app = create_app(self.service, metrics, access_log=self.settings.access_log)
        _attach_exporter(app)
        # Everything so far lives as long as the worker: out of the collector's sight, a
        # full collection no longer walks torch's and Flask's objects (a 40+ ms pause).
        gc.freeze()
        self.service.start()
        if self.settings.grpc_listen_port:  # grpcio is imported (and started) only if asked
            from .rpc.server import GrpcListener

            self._grpc = GrpcListener(self.service, metrics)
            self._grpc.start()
        return app

    def _retire(self, reason: str) -> None:
        # Ask this worker to exit gracefully; gunicorn's master starts a fresh one.
        if self._worker is not None:
            self._worker.handle_exit(signal.SIGTERM, None)

    def _post_worker_init(self, worker: Any) -> None:
        self._worker = worker
        original = worker.handle_exit

        def drain_then_exit(sig: int, frame: Any) -> None:
            if self.service is not None:
                self.service.drain()  # readiness turns 503 at once
            if self._grpc is not None:  # no new calls; those in flight finish
                threading.Thread(target=self._grpc.stop, args=(self.settings.graceful_timeout_s,),
                                 name="mkserve-grpc-drain", daemon=True).start()
            original(sig, frame)

        signal.signal(signal.SIGTERM, drain_then_exit)

    def _worker_exit(self, arbiter: Any, worker: Any) -> None:
        if self._grpc is not None:  # gRPC calls in flight still need the model thread
            self._grpc.stop(self.settings.graceful_timeout_s)
        if self.service is not None:
            self.service.metrics.worker_stopped()
            self.service.stop(0.0)
        if self._access_writer is not None:
            self._access_writer.close()  # writes the lines still queued

    def _exit_after_grace(self, reason: str) -> None:
        def leave() -> None:
            time.sleep(self.settings.load_failure_grace_s)
            logging.getLogger("mkserve.server").critical(
                "exiting: model %s failed to load: %s", self.source.name, reason)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os._exit(EXIT_MODEL)

        threading.Thread(target=leave, name="mkserve-exit", daemon=True).start()


def _attach_exporter(app: Any) -> None:
    """/metrics through prometheus-flask-exporter, aggregating every worker's samples.

    Its default per-request series (flask_http_request_duration_seconds by method,
    endpoint and status; flask_http_request_total) are recorded by the app itself
    (Metrics.http_request, same names and labels): the exporter's own hooks cost a
    request context lookup, five regular expressions and two label lookups per request.
    """
    from prometheus_client.exposition import choose_encoder
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    from .metrics import AggregateRegistry

    class Exporter(GunicornInternalPrometheusMetrics):
        def generate_metrics(self, accept_header: str | None = None,
                             names: list[str] | None = None) -> tuple[str, str]:
            """Every worker's samples; with TorchServe's `?name[]=` only those series.
            (The exporter restricts the registry before adding the multiprocess
            collector to it, which a restricted registry cannot take: a 500.)"""
            registry = AggregateRegistry()
            chosen: Any = registry.restricted_registry(names) if names else registry
            encode, content_type = choose_encoder(accept_header or "")
            return encode(chosen).decode("utf-8"), content_type

    exporter = Exporter(app, path=routes.METRICS, export_defaults=False)
    exporter.info("flask_exporter_info", "Information about the Prometheus Flask exporter",
                  version=exporter.version)


def _owned_tempdir(prefix: str) -> str:
    """A temp folder removed when this process (the master, not a forked worker) exits."""
    path = tempfile.mkdtemp(prefix=prefix)
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


def prepare(env: dict[str, str] | None = None) -> tuple[RuntimeSettings, ModelSource, WorkerPlan]:
    """Resolve settings and open the model source; raises SettingsError or SourceError."""
    env = dict(os.environ if env is None else env)
    first = resolve(env)
    workdir = None
    if not os.path.isdir(first.model_dir):
        workdir = _owned_tempdir("mkserve-model-")
    source = open_source(first.model_dir, workdir)
    warnings: list[str] = []
    settings = resolve(env, source.model_config, warn=warnings.append)
    for warning in warnings:
        log.warning(warning)
    for note in source.notes:
        log.info(note)
    for line in unhonoured(source.model_config):
        log.warning(line)
    settings = settings.replace(model_name=settings.model_name or source.name)
    plan = plan_workers(settings.workers, settings.threads, settings.intra_op_threads,
                        settings.batch_size, settings.device, cpu_cores(),
                        gpu_count() if settings.device != "cpu" else 0,
                        **worker_bounds(source.model_config))
    if settings.device == "gpu" and plan.gpus == 0:
        log.warning("deviceType gpu requested but no GPU is visible; serving on CPU")
    return settings, source, plan


def main() -> int:
    """Entry point of `python -m mkserve.runtime`; returns the process exit code."""
    # Before any thread exists: every thread of the master and of the workers then
    # allocates from the one tuned heap (memory.py).
    tuned = tune_allocator()
    fmt = read_setting("log_format")
    level = read_setting("log_level")
    try:
        logging.config.dictConfig(logging_config(fmt if fmt in ("json", "text") else "json",
                                                 level if level in ("debug", "info", "warning",
                                                                    "error") else "info"))
        settings, source, plan = prepare()
    except SettingsError as exc:
        log.critical("%s", exc)
        return EXIT_CONFIG
    except SourceError as exc:
        log.critical("cannot serve the model: %s", exc)
        return EXIT_MODEL
    metrics_dir = _owned_tempdir("mkserve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # Import torch and the web stack once in the master so that workers fork
    # with them loaded (faster start, shared pages); this does not touch CUDA.
    import flask  # noqa: F401
    import torch  # noqa: F401

    # Frozen objects are never touched by the collector, so their pages stay shared with
    # the workers instead of being copied into each one (memory), and full collections
    # in the workers skip them (latency).
    gc.freeze()

    log.info("mkserve %s starting: model %s from %s", __version__, source.name, source.origin)
    if tuned:
        log.debug("malloc tuned: %s", ", ".join(tuned))
    try:
        Runtime(settings, source, plan).run()
    except HaltServer as exc:
        # gunicorn raises this out of its own halt when a second worker exits with
        # the boot-failure code while the master is already stopping for the first.
        log.critical("stopped: %s", exc.reason)
        return int(exc.exit_status)
    return EXIT_OK
