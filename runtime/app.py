"""The Flask app: health probes, the TorchServe inference API, errors in TorchServe's shape."""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from .batcher import Outcome
from .codec import decode_body, dumps, encode_value
from .errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RouteNotFound,
    ServingError,
)
from .kserve import register_kserve
from .service import ModelService

log = logging.getLogger("mkserve.app")
access = logging.getLogger("mkserve.access")
JSON = "application/json"
_WERKZEUG_ERRORS: dict[int, type[ServingError]] = {
    400: BadRequest, 404: RouteNotFound, 405: MethodNotAllowed, 413: PayloadTooLarge}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status=status, headers=headers, mimetype=JSON)


def error_response(error: ServingError) -> Response:
    return Response(error.to_json(), status=error.status, headers=error.headers, mimetype=JSON)


def create_app(service: ModelService, metrics: Any = None, access_log: bool = True) -> Flask:
    """Build the app around one ModelService (already created in this worker)."""
    app = Flask(__name__)
    # A doubled slash is an unknown path (a JSON 404), not an HTML 308 to another route.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = service.settings.max_request_bytes
    app.extensions["mkserve.service"] = service
    model_name = service.model_name

    def health(ok: bool) -> Response:
        if ok:
            return json_response({"status": "Healthy"})
        return json_response({"status": "Unhealthy", "reason": service.reason}, 503)

    @app.get("/ping")
    def ping() -> Response:
        return health(service.ready)

    @app.get("/livez")
    def livez() -> Response:
        return json_response({"status": "alive"})

    @app.get("/readyz")
    def readyz() -> Response:
        if service.ready:
            return json_response({"status": "ready", "model": model_name})
        return json_response({"status": service.state, "reason": service.reason}, 503)

    @app.post("/predictions/<model>")
    @app.post("/predictions/<model>/<version>")
    def predictions(model: str, version: str | None = None) -> Response:
        if model != model_name:
            raise NotFound(f"model {model!r} is not served here; this server serves "
                           f"{model_name!r} at /predictions/{model_name}")
        if version is not None and version != service.model_version:
            raise NotFound(f"version {version!r} of {model_name} is not served here; "
                           f"this server serves version {service.model_version}")
        values, is_batch = decode_body(request.get_data(cache=False), request.content_type or "")
        rows = [_row(value) for value in values]
        outcomes = _predict(rows)
        return _single(outcomes[0]) if not is_batch else _batch(outcomes)

    def _row(value: Any) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if request.args:
            row.update(request.args.to_dict())  # TorchServe passes query parameters as fields
        if value is None:  # a form: one key per field, files as bytes
            row.update(request.form.to_dict())
            for key, upload in request.files.items():
                row[key] = upload.read()
        else:
            row["body"] = value
        return row

    def _predict(rows: list[dict[str, Any]]) -> list[Outcome]:
        metrics_on = metrics is not None
        if metrics_on:
            metrics.request_started()
        status = 500
        try:
            outcomes = service.predict(rows, dict(request.headers), g.request_id)
            first_error = next((o.error for o in outcomes if o.error is not None), None)
            status = first_error.status if first_error is not None else outcomes[0].status
            return outcomes
        except ServingError as exc:
            status = exc.status
            raise
        finally:
            if metrics_on:
                metrics.request_finished(status, (time.perf_counter() - g.started) * 1000.0)

    def _single(outcome: Outcome) -> Response:
        if outcome.error is not None:
            raise outcome.error  # type: ignore[misc]
        body, content_type = encode_value(outcome.value, outcome.content_type)
        return Response(body, status=outcome.status, headers=outcome.headers,
                        content_type=content_type)

    def _batch(outcomes: list[Outcome]) -> Response:
        for index, outcome in enumerate(outcomes):
            error = outcome.error
            if error is None and outcome.status >= 400:
                error = ServingError(f"{outcome.value}", status=outcome.status)
            if error is not None:
                failed = type(error)(f"row {index}: {error}", status=error.status,  # type: ignore
                                     headers=getattr(error, "headers", None))
                raise failed
        return json_response([o.value for o in outcomes])

    register_kserve(app, service, _predict)

    @app.before_request
    def _begin() -> None:
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.request_id
        if access_log:
            access.info("%s %s %d", request.method, request.path, response.status_code,
                        extra={"request_id": g.request_id, "model": model_name,
                               "status": response.status_code,
                               "duration_ms": round((time.perf_counter() - g.started) * 1e3, 3)})
        return response

    @app.errorhandler(ServingError)
    def _serving_error(error: ServingError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = error.code or 500
        kind = _WERKZEUG_ERRORS.get(code, ServingError)
        message = {404: f"no such endpoint: {request.method} {request.path}",
                   405: f"{request.method} is not allowed on {request.path}",
                   413: f"request body is larger than the limit of "
                        f"{service.settings.max_request_bytes} bytes (MKSERVE_MAX_REQUEST_SIZE)",
                   }.get(code, error.description or error.name)
        err = kind(message, status=code)
        response = error_response(err)
        if code == 405 and error.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(ServingError(f"internal error: {type(error).__name__}"))

    return app
