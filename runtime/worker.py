"""mkserve's gunicorn worker class: gunicorn's settings in, one HttpServer per worker.

gunicorn's gthread worker hands every request to a thread that parses it,
waits on the model and writes the answer; on a small model that is most of the
cost of a prediction (measured here, a trivial Flask endpoint under gthread
served fewer requests per second than TorchServe with its model). This worker
runs mkserve's own server instead (mkserve.runtime.http: llhttp framing, one
event loop, predictions queued from the loop without a thread each). The
worker only maps configuration: gunicorn's (keep-alive, timeouts, request
limits, threads, max_requests) and mkserve's (MKSERVE_MAX_REQUEST_SIZE, the
head and body deadlines, the connection cap), read from the gunicorn
application's `settings` when it has them.
"""
from __future__ import annotations

import os
import resource
from typing import Any

from gunicorn.workers import base

from .http import HttpServer, Limits, ServerConfig
from .http.balancer import Balancer
from .settings import RuntimeSettings

# Descriptors a worker keeps for itself (model files, pipes, logs) below its file limit.
FD_RESERVE = 64


def connection_cap(wanted: int) -> int:
    """`wanted`, or fewer if the open-file limit leaves room for fewer connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 32
    return max(1, min(wanted, soft - in_use - FD_RESERVE))


def server_config(cfg: Any, settings: RuntimeSettings, max_requests: int) -> ServerConfig:
    """The HttpServer's configuration from gunicorn's `cfg` and mkserve's settings
    (`max_requests`: the worker's own, gunicorn's jitter added)."""
    limits = Limits(max_line=cfg.limit_request_line, max_fields=cfg.limit_request_fields,
                    max_field=cfg.limit_request_field_size,
                    max_body=settings.max_request_bytes)
    return ServerConfig(
        limits=limits, keepalive=float(cfg.keepalive), stall_timeout=float(cfg.timeout),
        graceful_timeout=float(cfg.graceful_timeout), max_requests=max_requests,
        threads=max(1, cfg.threads), head_timeout=settings.head_timeout_s,
        body_min_rate=float(settings.body_min_rate),
        max_connections=connection_cap(settings.max_connections),
        multiprocess=cfg.workers > 1)


class EventLoopWorker(base.Worker):
    """A gunicorn worker serving HTTP/1.1 from one HttpServer (see the module doc)."""

    server: HttpServer | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.alive = False
        if self.server is not None:
            self.server.stop()

    def run(self) -> None:
        app = self.wsgi
        service = getattr(app, "service", None)
        settings = getattr(self.app, "settings", None) or RuntimeSettings()
        ready = (lambda: service.ready) if service is not None else (lambda: True)
        table = getattr(self.app, "connection_counts", None)
        slot = getattr(self, "mkserve_slot", None)
        balancer = Balancer(table if self.cfg.workers > 1 and slot is not None else None,
                            slot or 0, ready)
        config = server_config(self.cfg, settings, self.max_requests)
        self.server = HttpServer(app, config, self.sockets,
                                 self.log, balancer, getattr(app, "fast_path", None), ready,
                                 self.heartbeat)
        if service is not None:
            service.on_ready = self.server.wake  # the loop publishes "ready" at once
        if not self.alive:  # a signal came before the server existed
            self.server.stop()
        self.server.serve()

    def heartbeat(self) -> bool:
        """Tell the master this worker is alive; False once the master has gone."""
        self.notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            return False
        return self.alive
