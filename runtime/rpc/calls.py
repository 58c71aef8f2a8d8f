"""What every gRPC call shares: queueing rows with the call's deadline, metrics,
errors as statuses, and the access line (AccessLog, an interceptor)."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ..batcher import Group, Outcome
from ..errors import ServingError
from ..fastpath import access, request_ids
from ..seams import MetricsSink
from ..service import ModelService

log = logging.getLogger("mkserve.grpc")

TORCHSERVE = "org.pytorch.serve.grpc.inference.InferenceAPIsService"
OPEN_INFERENCE = "inference.GRPCInferenceService"


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


def first_error(outcomes: list[Outcome]) -> ServingError | None:
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
