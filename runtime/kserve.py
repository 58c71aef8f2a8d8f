"""KServe V1 and V2 (Open Inference Protocol) routes over the same model service."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request

from . import __version__
from .batcher import Outcome
from .codec import dumps, parse_json
from .errors import BadRequest, HandlerFailed, NotFound, ServingError
from .kserve_v2 import build_outputs, check_output_request, parse_request, to_rows
from .seams import ServedModel

JSON = "application/json"
SERVER_NAME = "mkserve"
PLATFORM = "pytorch"
Predict = Callable[..., list[Outcome]]  # (rows, extra_headers=None) -> one Outcome per row
# What TorchServe's frontend adds to an explanation request: BaseHandler then explains.
EXPLAIN = {"explain": "True"}
# A body "id" may become the request id (logs, X-Request-ID) only if it is header-safe.
_SAFE_ID = re.compile(r"[\x21-\x7e]{1,128}")


def register_kserve(app: Flask, service: ServedModel, predict: Predict) -> None:
    """Add the KServe routes to `app`; `predict(rows)` runs rows through the batcher.

    V1 (TensorFlow-Serving style):
    - GET  /v1/models                → 200 {"models": [name]}
    - GET  /v1/models/{m}            → 200 {"name", "ready": true}; 503 with "ready": false
      while loading, failed or draining (as KServe's own server answers, so it works as a
      probe); 404 for another model
    - POST /v1/models/{m}:predict    {"instances": [...]} or {"inputs": [...]} → 200
      {"predictions": [...]}: each instance is one handler row {"body": instance}, answers
      in order. Missing, empty or non-list instances → 400.
    - POST /v1/models/{m}:explain    the same, each row reaching the handler with the
      `explain` header "True" (as TorchServe's frontend sends it) → {"explanations": [...]}
    V2 / Open Inference Protocol (every model path also under /versions/{v}; another
    version → 404):
    - GET  /v2                       → {"name": "mkserve", "version", "extensions": []}
    - GET  /v2/health/live           → 200 {"live": true}
    - GET  /v2/health/ready          → 200 {"ready": true}; 503 {"ready": false, "error"}
    - GET  /v2/models/{m}            → {"name", "versions", "platform": "pytorch",
      "inputs": [], "outputs": []} (a handler declares no tensor metadata)
    - GET  /v2/models/{m}/ready      → 200 {"name", "ready": true}; 503 with "ready": false
    - POST /v2/models/{m}/infer      → {"model_name", "model_version", "id", "outputs"};
      rows and outputs are mapped as kserve_v2 describes; "id" is echoed, or is the
      request's X-Request-ID (generated when absent).
    - POST /v2/models/{m}/explain    the same, with the `explain` header "True".
    Errors on every /v1 and /v2 path, including unknown routes, 405 and 413, are KServe's
    {"error": "<message>"} with the status the contract gives (400 bad input, 404 unknown
    model, 413, 503 not ready or queue full with Retry-After, 504 deadline, 500 handler
    bug). A request with several rows fails as a whole with the first failing row's status.
    """
    _v1_routes(app, service, predict)
    _v2_routes(app, service, predict)
    app.after_request(_kserve_error_shape)


def check_model(service: ServedModel, model: str, version: str | None = None) -> None:
    name = service.model_name
    if model != name:
        raise NotFound(f"model {model!r} is not served here; this server serves {name!r}")
    if version is not None and version != service.model_version:
        raise NotFound(f"version {version!r} of {name} is not served here; this server "
                       f"serves version {service.model_version}")


def _not_ready(service: ServedModel, body: dict[str, Any]) -> Response:
    message = f"model {service.model_name} is not ready: {service.reason}"
    return _json({**body, "error": message}, 503)


def _v1_routes(app: Flask, service: ServedModel, predict: Predict) -> None:
    name = service.model_name

    @app.get("/v1/models")
    def v1_models() -> Response:
        return _json({"models": [name]})

    @app.get("/v1/models/<model>")
    def v1_model_ready(model: str) -> Response:
        check_model(service, model)
        if not service.ready:
            return _not_ready(service, {"name": name, "ready": False})
        return _json({"name": name, "ready": True})

    @app.post("/v1/models/<model>:predict")
    def v1_predict(model: str) -> Response:
        return v1_answer(model, "predictions")

    @app.post("/v1/models/<model>:explain")
    def v1_explain(model: str) -> Response:
        return v1_answer(model, "explanations", EXPLAIN)

    def v1_answer(model: str, key: str, extra: dict[str, str] | None = None) -> Response:
        check_model(service, model)
        if service.settings.service_envelope:
            return _enveloped(predict, extra)
        instances = _instances(parse_json(request.get_data(cache=False)))
        outcomes = predict([{"body": instance} for instance in instances], extra)
        _raise_first_error(outcomes, "instance")
        return _json({key: [o.value for o in outcomes]})


def _v2_routes(app: Flask, service: ServedModel, predict: Predict) -> None:
    name = service.model_name

    @app.get("/v2", strict_slashes=False)
    def v2_server() -> Response:
        return _json({"name": SERVER_NAME, "version": __version__, "extensions": []})

    @app.get("/v2/health/live")
    def v2_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    def v2_ready() -> Response:
        if not service.ready:
            return _not_ready(service, {"ready": False})
        return _json({"ready": True})

    @app.get("/v2/models/<model>")
    @app.get("/v2/models/<model>/versions/<version>")
    def v2_model(model: str, version: str | None = None) -> Response:
        check_model(service, model, version)
        return _json({"name": name, "versions": [service.model_version], "platform": PLATFORM,
                      "inputs": [], "outputs": []})

    @app.get("/v2/models/<model>/ready")
    @app.get("/v2/models/<model>/versions/<version>/ready")
    def v2_model_ready(model: str, version: str | None = None) -> Response:
        check_model(service, model, version)
        if not service.ready:
            return _not_ready(service, {"name": name, "ready": False})
        return _json({"name": name, "ready": True})

    @app.post("/v2/models/<model>/infer")
    @app.post("/v2/models/<model>/versions/<version>/infer")
    def v2_infer(model: str, version: str | None = None) -> Response:
        return v2_answer(model, version)

    @app.post("/v2/models/<model>/explain")
    @app.post("/v2/models/<model>/versions/<version>/explain")
    def v2_explain(model: str, version: str | None = None) -> Response:
        return v2_answer(model, version, EXPLAIN)

    def v2_answer(model: str, version: str | None, extra: dict[str, str] | None = None,
                  ) -> Response:
        check_model(service, model, version)
        if service.settings.service_envelope:
            return _enveloped(predict, extra)
        if "Inference-Header-Content-Length" in request.headers:
            raise BadRequest("the binary tensor data extension is not supported; send the "
                             "tensors as JSON \"data\"")
        infer = parse_request(parse_json(request.get_data(cache=False)))
        check_output_request(infer.outputs)
        if (infer.id and "X-Request-ID" not in request.headers
                and _SAFE_ID.fullmatch(infer.id)):
            g.request_id = infer.id  # so logs and the handler's request ids match the body
        outcomes = predict(to_rows(infer), extra)
        _raise_first_error(outcomes, "row")
        outputs = build_outputs([o.value for o in outcomes], infer.outputs)
        return _json({"model_name": name, "model_version": service.model_version,
                      "id": infer.id if infer.id is not None else g.request_id,
                      "outputs": outputs})


def _enveloped(predict: Predict, extra: dict[str, str] | None) -> Response:
    """With a TorchServe envelope (MKSERVE_SERVICE_ENVELOPE), as TorchServe serves these
    routes: the whole body is one request for the handler, whose envelope unpacks it and
    shapes the answer."""
    body = parse_json(request.get_data(cache=False))
    [outcome] = predict([{"body": body}], extra)
    _raise_first_error([outcome], "request")
    return _json(outcome.value)


def _json(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status=status, mimetype=JSON)


def _instances(body: Any) -> list[Any]:
    """The V1 instances: exactly one of "instances" or "inputs", a non-empty list."""
    if not isinstance(body, dict):
        raise BadRequest("a V1 predict request is a JSON object {\"instances\": [...]}, got "
                         f"{type(body).__name__}")
    keys = [key for key in ("instances", "inputs") if key in body]
    if len(keys) != 1:
        raise BadRequest("a V1 predict request needs exactly one of \"instances\" or "
                         "\"inputs\": a non-empty list with one element per instance")
    value = body[keys[0]]
    if not isinstance(value, list) or not value:
        raise BadRequest(f"\"{keys[0]}\" must be a non-empty list with one element per "
                         "instance")
    return value


def _raise_first_error(outcomes: list[Outcome], label: str) -> None:
    """A KServe request answers as a whole: the first failing row decides its status."""
    for index, outcome in enumerate(outcomes):
        error = outcome.error
        if error is None and outcome.status >= 400:  # the handler set an error status itself
            error = ServingError(f"{outcome.value}", status=outcome.status)
        if error is None:
            continue
        if not isinstance(error, ServingError):
            error = HandlerFailed(f"handler error: {type(error).__name__}", status=500)
        if len(outcomes) == 1:
            raise error
        raise type(error)(f"{label} {index}: {error.message}", status=error.status,
                          headers=error.headers)


def _is_kserve_path(path: str) -> bool:
    return path in ("/v1", "/v2") or path.startswith(("/v1/", "/v2/"))


def _kserve_error_shape(response: Response) -> Response:
    """Errors on KServe paths take KServe's {"error": message} shape.

    Done as a rewrite of the app's {"code", "type", "message"} answers, because
    routing errors (404, 405), 413 and unexpected faults are rendered by the
    app's own handlers before any KServe view runs.
    """
    if (response.status_code < 400 or response.mimetype != JSON
            or not _is_kserve_path(request.path)):
        return response
    try:
        body = json.loads(response.get_data())
    except ValueError:
        return response
    if isinstance(body, dict) and set(body) == {"code", "type", "message"}:
        response.set_data(dumps({"error": body["message"]}))
    return response
