"""KServe's inference.GRPCInferenceService (the Open Inference Protocol), answered as
the /v2 REST routes answer."""
from __future__ import annotations

from typing import Any

import grpc

from .. import __version__
from ..errors import ServingError
from ..kserve import PLATFORM, SERVER_NAME, check_model
from ..kserve_v2 import build_outputs, check_output_request, parse_request, to_rows
from . import tensors
from .calls import Calls, first_error


def _model_infer(calls: Calls, pb: Any, request: Any, context: grpc.ServicerContext) -> Any:
    """ModelInfer as POST /v2/models/{m}/infer answers it; raw tensors answer raw."""
    service = calls.service
    check_model(service, request.model_name, request.model_version or None)
    body = tensors.request_body(request)
    response = pb.ModelInferResponse(model_name=service.model_name,
                                     model_version=service.model_version)
    raw = bool(request.raw_input_contents)
    if service.settings.service_envelope:  # the handler's envelope reads the whole body
        _, outcomes = calls.run([{"body": body}], context, {})
        error = first_error(outcomes)
        if error is not None:
            raise error
        answer = outcomes[0].value if isinstance(outcomes[0].value, dict) else {}
        response.id = str(answer.get("id") or request.id)
        tensors.fill_response(response, answer.get("outputs") or [], raw)
        return response
    parsed = parse_request(body)
    check_output_request(parsed.outputs)
    _, outcomes = calls.run(to_rows(parsed), context, {})
    error = first_error(outcomes)
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
                check_model(service, request.name, request.version or None)
            except ServingError as exc:
                calls.abort(context, exc)
            return pb.ModelReadyResponse(ready=service.ready)

        def ServerMetadata(self, request: Any, context: Any) -> Any:
            return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__,
                                             extensions=[])

        def ModelMetadata(self, request: Any, context: Any) -> Any:
            try:
                check_model(service, request.name, request.version or None)
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
