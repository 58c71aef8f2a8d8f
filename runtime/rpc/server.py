"""The worker's gRPC listener: three services over the worker's ModelService.

- org.pytorch.serve.grpc.inference.InferenceAPIsService (TorchServe 0.12):
  Ping; Predictions, whose `input` map is the handler's row (values as bytes, as
  TorchServe hands them) and whose `prediction` is the body POST /predictions
  would answer; StreamPredictions, one PredictionResponse per
  send_intermediate_predict_response part, then the handler's return value.
- inference.GRPCInferenceService (KServe V2): ServerLive, ServerReady, ModelReady,
  ServerMetadata, ModelMetadata, ModelInfer (typed or raw binary tensors), answered
  as the /v2 REST routes answer.
- grpc.health.v1.Health: SERVING exactly when /readyz is 200.

A call is queued with the request's gRPC deadline when it is sooner than the
response timeout: a row still queued at the deadline is never run. Errors are gRPC
statuses (status_code) with the message the REST answer would carry. On SIGTERM,
`stop(grace)` refuses new calls and lets those in flight finish.
"""
from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..fastpath import request_ids
from ..seams import MetricsSink
from ..service import ModelService
from . import stubs
from .calls import OPEN_INFERENCE, TORCHSERVE, AccessLog, Calls
from .open_inference import open_inference_servicer
from .torchserve import torchserve_servicer

log = logging.getLogger("mkserve.grpc")
# A gRPC message may be as large as an HTTP body may be, plus its framing.
_FRAMING = 64 * 1024


class ReadinessHealth(health.HealthServicer):
    """grpc.health.v1 from the service's readiness: Check answers it as it is now; a
    poller keeps Watch's statuses in step."""

    SERVICES = ("", TORCHSERVE, OPEN_INFERENCE)

    def __init__(self, service: ModelService) -> None:
        super().__init__()
        self.service = service
        self._stopped = threading.Event()
        threading.Thread(target=self._follow, name="mkserve-grpc-health", daemon=True).start()

    def _status(self) -> Any:
        return (health_pb2.HealthCheckResponse.SERVING if self.service.ready
                else health_pb2.HealthCheckResponse.NOT_SERVING)

    def Check(self, request: Any, context: Any) -> Any:
        if request.service not in self.SERVICES:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self._status())

    def _follow(self) -> None:
        last = None
        while not self._stopped.wait(0.25):
            status = self._status()
            if status != last:
                for name in self.SERVICES:
                    self.set(name, status)
                last = status

    def stop(self) -> None:
        self._stopped.set()
        self.enter_graceful_shutdown()


class GrpcListener:
    """One worker's grpcio server on the gRPC port (shared by the workers: SO_REUSEPORT)."""

    def __init__(self, service: ModelService, metrics: MetricsSink | None = None) -> None:
        settings = service.settings
        self.service = service
        self.address = f"{settings.host}:{settings.grpc_listen_port}"
        limit = settings.max_request_bytes + _FRAMING
        self.server = grpc.server(
            # Each call holds a thread while its rows wait: enough for several full batches.
            futures.ThreadPoolExecutor(max_workers=max(32, settings.batch_size * 4),
                                       thread_name_prefix="mkserve-grpc"),
            options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", limit),
                     ("grpc.max_send_message_length", -1)],
            interceptors=[AccessLog(service.model_name, request_ids())]
            if settings.access_log else None)
        modules = stubs.load()
        calls = Calls(service, metrics)
        ts_pb, ts_grpc = modules["torchserve_inference_pb2"], \
            modules["torchserve_inference_pb2_grpc"]
        v2_pb, v2_grpc = modules["open_inference_pb2"], modules["open_inference_pb2_grpc"]
        ts_grpc.add_InferenceAPIsServiceServicer_to_server(
            torchserve_servicer(calls, ts_pb, ts_grpc), self.server)
        v2_grpc.add_GRPCInferenceServiceServicer_to_server(
            open_inference_servicer(calls, v2_pb, v2_grpc), self.server)
        self.health = ReadinessHealth(service)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.stopped = threading.Event()
        self._stopping = threading.Lock()
        self._stop_started = False

    def start(self) -> None:
        if self.server.add_insecure_port(self.address) == 0:
            raise RuntimeError(f"gRPC: cannot listen on {self.address} (MKSERVE_GRPC_PORT, or "
                               "PORT with MKSERVE_PROTOCOL=grpc)")
        self.server.start()
        log.info("gRPC listening on %s (%s, %s, grpc.health.v1)", self.address, TORCHSERVE,
                 OPEN_INFERENCE)

    def stop(self, grace: float) -> None:
        """Refuse new calls now; those in flight get `grace` seconds to finish. Once:
        a second caller (the worker's exit after SIGTERM's drain) waits for the first."""
        with self._stopping:
            first = not self._stop_started
            self._stop_started = True
        if first:
            self.health.stop()
            self.server.stop(grace).wait(grace + 1.0)
            self.stopped.set()
        else:
            self.stopped.wait(grace + 1.0)
