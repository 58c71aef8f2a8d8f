"""The Flask app: health probes, the TorchServe inference API, errors in TorchServe's shape."""
from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from . import routes
from .batcher import Outcome
from .codec import decode_body, dumps
from .errors import (
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    ServingError,
)
from .fastpath import (
    FORM_TYPES,
    FastPath,
    Pending,
    RequestLog,
    answer,
    environ_headers,
    error_response,
    outcome_status,
    request_ids,
    status_line,
)
from .kserve import register_kserve
from .seams import MetricsSink
from .service import ModelService
from .ts_routes import (
    AnswerPredictions,
    Predict,
    check_served,
    predictions_headers,
    register_torchserve_routes,
)

__all__ = ["Pending", "ServingApp", "create_app", "environ_headers", "status_line"]

log = logging.getLogger("mkserve.app")
JSON = "application/json"
_WERKZEUG_ERRORS: dict[int, type[ServingError]] = {
    400: BadRequest, 404: RouteNotFound, 405: MethodNotAllowed, 413: PayloadTooLarge}


class ServingApp(Flask):
    """The Flask app of one model, with what the HTTP server takes from it besides WSGI:
    the service (readiness, its settings) and the predictions fast path."""

    service: ModelService | None = None
    fast_path: FastPath | None = None
    # The Flask app under the fast path: the reference the fast path must answer like.
    flask_wsgi_app: Any = None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status=status, headers=headers, mimetype=JSON)


def create_app(service: ModelService, metrics: MetricsSink | None = None,
               access_log: bool = True) -> ServingApp:
    """Build the app around one ModelService (already created in this worker)."""
    app = ServingApp(__name__)
    # A doubled slash is an unknown path (a JSON 404), not an HTML 308 to another route.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = service.settings.max_request_bytes
    app.service = service
    _health_routes(app, service)
    predict, answer_predictions = _prediction_routes(app, service, metrics)
    register_kserve(app, service, predict)
    register_torchserve_routes(app, service, predict, answer_predictions)

    new_request_id = request_ids()
    requests = RequestLog(metrics, access_log, service.model_name)

    @app.before_request
    def _begin() -> None:
        g.started = time.perf_counter()
        g.request_id = request.environ.get("HTTP_X_REQUEST_ID") or new_request_id()

    @app.after_request
    def _finish(response: Response) -> Response:
        requests.finish(response, request.method, request.path, str(request.endpoint),
                        g.request_id, g.started)
        return response

    app.flask_wsgi_app = app.wsgi_app
    app.fast_path = FastPath(service, metrics, requests, new_request_id, app.flask_wsgi_app)
    app.wsgi_app = app.fast_path.wsgi_app  # type: ignore[method-assign]
    _error_handlers(app, service)
    return app


def _health_routes(app: ServingApp, service: ModelService) -> None:
    def health(ok: bool) -> Response:
        if ok:
            return json_response({"status": "Healthy"})
        return json_response({"status": "Unhealthy", "reason": service.reason}, 503)

    @app.get(routes.PING)
    def ping() -> Response:
        return health(service.ready)

    @app.get(routes.LIVENESS)
    def livez() -> Response:
        return json_response({"status": "alive"})

    @app.get(routes.READINESS)
    def readyz() -> Response:
        if service.ready:
            return json_response({"status": "ready", "model": service.model_name})
        return json_response({"status": service.state, "reason": service.reason}, 503)


def _prediction_routes(app: ServingApp, service: ModelService, metrics: MetricsSink | None,
                       ) -> tuple[Predict, AnswerPredictions]:
    """TorchServe's /predictions routes; returns the predict call the KServe routes share
    and the answer of a predictions-style request, which TorchServe's other inference
    routes (explanations, SageMaker's, the legacy ones) give too."""

    @app.post(routes.PREDICTIONS + "/<model>")
    @app.post(routes.PREDICTIONS + "/<model>/<version>")
    @app.post(routes.PREDICTIONS + "/<model>/<version>/<path:url_path>")
    def predictions(model: str, version: str | None = None, url_path: str = "") -> Response:
        check_served(service, model, version)
        return _answer(predictions_headers(url_path))

    def _answer(extra_headers: dict[str, str] | None = None, query_fields: bool = False,
                ) -> Response:
        # A form's fields are parsed from the body after it is read: keep it for that.
        values, is_batch = decode_body(request.get_data(cache=request.mimetype in FORM_TYPES),
                                       request.content_type or "",
                                       service.settings.list_body == "rows")
        rows = [_row(value, query_fields) for value in values]
        status, body, content_type, headers = answer(_predict(rows, extra_headers), is_batch)
        return Response(body, status=status, headers=headers, content_type=content_type)

    def _row(value: Any, query_fields: bool) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if query_fields and request.args:
            # TorchServe's legacy routes pass query parameters as fields; /predictions not.
            row.update(request.args.to_dict())
        if value is None:  # a form: one key per field, files as bytes
            row.update(request.form.to_dict())
            for key, upload in request.files.items():
                row[key] = upload.read()
        else:
            row["body"] = value
        return row

    def _predict(rows: list[dict[str, Any]], extra_headers: dict[str, str] | None = None,
                 ) -> list[Outcome]:
        if metrics is not None:
            metrics.request_started()
        status = 500
        headers = environ_headers(request.environ)
        if extra_headers:  # what TorchServe's frontend adds: "explain", "url_path", "describe"
            headers = {**headers, **extra_headers}
        try:
            outcomes = service.predict(rows, headers, g.request_id)
            status = outcome_status(outcomes)
            return outcomes
        except ServingError as exc:
            status = exc.status
            raise
        finally:
            if metrics is not None:
                metrics.request_finished(status, (time.perf_counter() - g.started) * 1000.0)

    return _predict, _answer


def _error_handlers(app: ServingApp, service: ModelService) -> None:
    """Every error as a JSON body with the right status, never an HTML page or a traceback."""
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
