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

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .. import __version__
from ..batcher import Group, Outcome
from ..codec import encode_value
from ..errors import BadRequest, NotFound, ServingError
from ..fastpath import access, request_ids
from ..kserve import PLATFORM, SERVER_NAME
from ..kserve_v2 import build_outputs, check_output_request, parse_request, to_rows
from ..seams import MetricsSink
from ..service import ModelService
from ..ts_routes import check_served, predictions_headers
from . import stubs, tensors

log = logging.getLogger("mkserve.grpc")

TORCHSERVE = "org.pytorch.serve.grpc.inference.InferenceAPIsService"
OPEN_INFERENCE = "inference.GRPCInferenceService"
# A gRPC message may be as large as an HTTP body may be, plus its framing.
_FRAMING = 64 * 1024


_call = threading.local()  # the request id of the call this thread answers (AccessLog)


def status_code(error: ServingError) -> grpc.StatusCode:
    """The gRPC status of a serving error, from its HTTP status."""
    status = error.status
    if status == 404:
        return grpc.StatusCode.NOT_FOUND
    if status in (429, 503):
        return grpc.StatusCode.UNAVAILABLE
    if status == 504:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if status == 507:
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if 400 <= status < 500:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


class Calls:
    """What every RPC shares: queueing rows with the call's deadline, metrics, errors."""

    def __init__(self, service: ModelService, metrics: MetricsSink | None) -> None:
        self.service = service
        self.metrics = metrics
        self.new_request_id = request_ids()

    def abort(self, context: grpc.ServicerContext, error: Exception) -> None:
        if not isinstance(error, ServingError):
            log.exception("unexpected error answering a gRPC call", exc_info=error)
            error = ServingError(f"internal error: {type(error).__name__}")
        context.abort(status_code(error), error.message)

    def request_id(self, context: grpc.ServicerContext) -> str:
        """The call's id: the access log's (AccessLog sets it for this thread), else the
        client's x-request-id metadata, else a new one."""
        current = getattr(_call, "request_id", None)
        if current is not None:
            return str(current)
        for key, value in context.invocation_metadata():
            if key == "x-request-id" and isinstance(value, str) and value:
                return value
        return self.new_request_id()

    def run(self, rows: list[Any], context: grpc.ServicerContext, headers: dict[str, str],
            on_part: Callable[[Group], None] | None = None, request_id: str | None = None,
            ) -> tuple[Group, list[Outcome]]:
        """Queue the rows and wait for them (or the deadline); their group and outcomes."""
        metrics = self.metrics
        started = time.perf_counter()
        if metrics is not None:
            metrics.request_started()
        status = 500
        try:
            remaining = context.time_remaining()
            wanted = time.monotonic() + remaining if remaining is not None else None
            group, jobs, deadline = self.service.submit(
                rows, headers, request_id or self.request_id(context), deadline=wanted)
            group.on_part = on_part
            if on_part is not None and group.parts:
                on_part(group)  # parts made before on_part was set
            if not group.wait(deadline - time.monotonic()):
                self.service.expire(jobs)
            outcomes = group.outcomes
            status = max((o.error.status if o.error is not None else o.status)  # type: ignore
                         for o in outcomes)
            return group, outcomes  # type: ignore[return-value]
        except ServingError as exc:
            status = exc.status
            raise
        finally:
            if metrics is not None:
                metrics.request_finished(status, (time.perf_counter() - started) * 1000.0,
                                         "grpc")


def _first_error(outcomes: list[Outcome]) -> ServingError | None:
    """The error a call answers with: the first failed row's, its message after
    TorchServe's "Prediction failed" when the handler failed (clients match it)."""
    for outcome in outcomes:
        error = outcome.error
        if error is None and outcome.status >= 400:  # the handler set an error status
            value = outcome.value
            text = value.decode(errors="replace") if isinstance(value, (bytes, bytearray)) \
                else value if isinstance(value, str) else json.dumps(value)
            error = ServingError(text, status=outcome.status)
        if error is None:
            continue
        if not isinstance(error, ServingError):
            error = ServingError(f"internal error: {type(error).__name__}")
        if error.status in (400, 500):  # the handler's failure, not the server's refusal
            return type(error)(f"Prediction failed: {error.message}", status=error.status)
        return error
    return None


def _ts_rows(service: ModelService, request: Any) -> list[dict[str, Any]]:
    """A PredictionsRequest's one row: its `input` map, values as bytes (TorchServe's)."""
    check_served(service, request.model_name, request.model_version or None)
    if not request.input:
        raise BadRequest("the request has no input: set the `input` map (e.g. "
                         "{\"body\": <bytes>})")
    return [{key: bytearray(value) for key, value in request.input.items()}]


def _predict_once(calls: Calls, request: Any, context: grpc.ServicerContext) -> bytes:
    group, outcomes = calls.run(_ts_rows(calls.service, request), context,
                                predictions_headers())
    error = _first_error(outcomes)
    if error is not None:
        raise error
    # A streaming handler's first part is the answer, as TorchServe's unary call gives it
    # (StreamPredictions has them all).
    parts = group.take_parts()
    value, content_type = parts[0] if parts else (outcomes[0].value, outcomes[0].content_type)
    return encode_value(value, content_type)[0]


def _stream(calls: Calls, request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
    """Each part as the handler sends it, then its return value; a failure is raised."""
    rows = _ts_rows(calls.service, request)
    request_id = calls.request_id(context)  # read here: the call's thread knows it
    parts: list[bytes] = []
    wake = threading.Condition()
    result: list[tuple[Group, list[Outcome]] | Exception] = []

    def on_part(group: Group) -> None:
        with wake:
            parts.extend(encode_value(v, c)[0] for v, c in group.take_parts())
            wake.notify()

    def work() -> None:
        try:
            done: tuple[Group, list[Outcome]] | Exception = calls.run(
                rows, context, predictions_headers(), on_part, request_id)
        except Exception as exc:  # noqa: BLE001 - raised by the caller's thread below
            done = exc
        with wake:
            result.append(done)
            wake.notify()

    threading.Thread(target=work, name="mkserve-grpc-stream", daemon=True).start()
    finished = False
    while not finished:
        with wake:
            while not parts and not result:
                wake.wait()
            ready, parts[:] = list(parts), []
            finished = bool(result)
        yield from ready
    outcome = result[0]
    if isinstance(outcome, Exception):
        raise outcome
    group, outcomes = outcome
    yield from (encode_value(v, c)[0] for v, c in group.take_parts())
    error = _first_error(outcomes)
    if error is not None:
        raise error
    if outcomes[0].value is not None:
        yield encode_value(outcomes[0].value, outcomes[0].content_type)[0]


def torchserve_servicer(calls: Calls, pb: Any, pb_grpc: Any) -> Any:
    service = calls.service

    class TorchServeApi(pb_grpc.InferenceAPIsServiceServicer):
        def Ping(self, request: Any, context: grpc.ServicerContext) -> Any:
            status = "Healthy" if service.ready else "Unhealthy"
            return pb.TorchServeHealthResponse(health=json.dumps({"status": status}))

        def Predictions(self, request: Any, context: grpc.ServicerContext,
                        ) -> Any:
            try:
                return pb.PredictionResponse(prediction=_predict_once(calls, request, context))
            except Exception as exc:  # noqa: BLE001 - every failure is a status
                calls.abort(context, exc)

        def StreamPredictions(self, request: Any,
                              context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                for body in _stream(calls, request, context):
                    yield pb.PredictionResponse(prediction=body)
            except Exception as exc:  # noqa: BLE001 - every failure is a status
                calls.abort(context, exc)

        def StreamPredictions2(self, request_iterator: Any,
                               context: grpc.ServicerContext) -> Iterator[Any]:
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          "StreamPredictions2 carries TorchServe's stateful sequences, which "
                          "mkserve does not serve: every request stands alone; use "
                          "Predictions or StreamPredictions")
            yield  # pragma: no cover - abort raises

    return TorchServeApi()


def _check_model(service: ModelService, model: str, version: str) -> None:
    name = service.model_name
    if model != name:
        raise NotFound(f"model {model!r} is not served here; this server serves {name!r}")
    if version and version != service.model_version:
        raise NotFound(f"version {version!r} of {name} is not served here; this server "
                       f"serves version {service.model_version}")


def _model_infer(calls: Calls, pb: Any, request: Any, context: grpc.ServicerContext) -> Any:
    """ModelInfer as POST /v2/models/{m}/infer answers it; raw tensors answer raw."""
    service = calls.service
    _check_model(service, request.model_name, request.model_version)
    body = tensors.request_body(request)
    response = pb.ModelInferResponse(model_name=service.model_name,
                                     model_version=service.model_version)
    raw = bool(request.raw_input_contents)
    if service.settings.service_envelope:  # the handler's envelope reads the whole body
        _, outcomes = calls.run([{"body": body}], context, {})
        error = _first_error(outcomes)
        if error is not None:
            raise error
        answer = outcomes[0].value if isinstance(outcomes[0].value, dict) else {}
        response.id = str(answer.get("id") or request.id)
        tensors.fill_response(response, answer.get("outputs") or [], raw)
        return response
    parsed = parse_request(body)
    check_output_request(parsed.outputs)
    _, outcomes = calls.run(to_rows(parsed), context, {})
    error = _first_error(outcomes)
    if error is not None:
        raise error
    outputs = build_outputs([o.value for o in outcomes], parsed.outputs)
    response.id = request.id
    tensors.fill_response(response, outputs, raw)
    return response


def open_inference_servicer(calls: Calls, pb: Any, pb_grpc: Any) -> Any:
    service = calls.service

    class OpenInference(pb_grpc.GRPCInferenceServiceServicer):
        def ServerLive(self, request: Any, context: Any) -> Any:
            return pb.ServerLiveResponse(live=True)

        def ServerReady(self, request: Any, context: Any) -> Any:
            return pb.ServerReadyResponse(ready=service.ready)

        def ModelReady(self, request: Any, context: Any) -> Any:
            try:
                _check_model(service, request.name, request.version)
            except ServingError as exc:
                calls.abort(context, exc)
            return pb.ModelReadyResponse(ready=service.ready)

        def ServerMetadata(self, request: Any, context: Any) -> Any:
            return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__,
                                             extensions=[])

        def ModelMetadata(self, request: Any, context: Any) -> Any:
            try:
                _check_model(service, request.name, request.version)
            except ServingError as exc:
                calls.abort(context, exc)
            return pb.ModelMetadataResponse(name=service.model_name,
                                            versions=[service.model_version],
                                            platform=PLATFORM)

        def ModelInfer(self, request: Any, context: Any) -> Any:
            try:
                return _model_infer(calls, pb, request, context)
            except Exception as exc:  # noqa: BLE001 - every failure is a status
                calls.abort(context, exc)

    return OpenInference()


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


class AccessLog(grpc.ServerInterceptor):
    """One access line per call, as an HTTP request gets: `GRPC /service/Method CODE`
    with the request id (x-request-id metadata or a new one) and the duration."""

    def __init__(self, model_name: str, new_request_id: Callable[[], str]) -> None:
        self.model_name = model_name
        self.new_request_id = new_request_id

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.request_streaming:
            return handler
        method = details.method
        metadata = dict(details.invocation_metadata or ())

        def begin() -> tuple[str, float]:
            request_id = metadata.get("x-request-id") or self.new_request_id()
            _call.request_id = request_id
            return str(request_id), time.perf_counter()

        def end(context: Any, request_id: str, started: float) -> None:
            _call.request_id = None
            code = context.code() or grpc.StatusCode.OK
            access.info("GRPC %s %s", method, code.name, extra={
                "request_id": request_id, "model": self.model_name, "status": code.name,
                "duration_ms": round((time.perf_counter() - started) * 1e3, 3)})

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary(request: Any, context: Any) -> Any:
                request_id, started = begin()
                try:
                    return inner(request, context)
                finally:
                    end(context, request_id, started)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer)
        streaming = handler.unary_stream

        def stream(request: Any, context: Any) -> Iterator[Any]:
            request_id, started = begin()
            try:
                yield from streaming(request, context)
            finally:
                end(context, request_id, started)

        return grpc.unary_stream_rpc_method_handler(
            stream, handler.request_deserializer, handler.response_serializer)


class GrpcListener:
    """One worker's grpcio server on the gRPC port (shared by the workers: SO_REUSEPORT)."""

    def __init__(self, service: ModelService, metrics: MetricsSink | None = None) -> None:
        settings = service.settings
        self.service = service
        self.address = f"{settings.host}:{settings.grpc_port}"
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

    def start(self) -> None:
        if self.server.add_insecure_port(self.address) == 0:
            raise RuntimeError(f"gRPC: cannot listen on {self.address} (MKSERVE_GRPC_PORT)")
        self.server.start()
        log.info("gRPC listening on %s (%s, %s, grpc.health.v1)", self.address, TORCHSERVE,
                 OPEN_INFERENCE)

    def stop(self, grace: float) -> None:
        """Refuse new calls now; those in flight get `grace` seconds to finish."""
        self.health.stop()
        self.server.stop(grace).wait(grace + 1.0)
        self.stopped.set()
