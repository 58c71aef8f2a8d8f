"""TorchServe 0.12's org.pytorch.serve.grpc.inference.InferenceAPIsService."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from ..batcher import Group, Outcome
from ..codec import encode_value
from ..errors import BadRequest
from ..service import ModelService
from ..ts_routes import check_served, predictions_headers
from .calls import Calls, first_error


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
    error = first_error(outcomes)
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
    error = first_error(outcomes)
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
