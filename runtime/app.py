"""The Flask app: health probes, the TorchServe inference API, errors in TorchServe's shape."""
from __future__ import annotations

import io
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from .batcher import Group, Job, Outcome
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


# Paths whose requests are not counted in flask_http_* (prometheus-flask-exporter's
# excluded_paths, which match at the start of the path).
UNTRACKED = ("/metrics", "/ping", "/livez", "/readyz", "/v2/health")
# Bodies the predictions fast path leaves to Flask (request.form decodes them).
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def environ_headers(environ: dict[str, Any]) -> dict[str, str]:
    """`dict(request.headers)` straight from the WSGI environ, in werkzeug's order."""
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            if key != "HTTP_CONTENT_TYPE" and key != "HTTP_CONTENT_LENGTH":
                headers[key[5:].replace("_", "-").title()] = value
        elif (key == "CONTENT_TYPE" or key == "CONTENT_LENGTH") and value:
            headers[key.replace("_", "-").title()] = value
    return headers


def request_ids() -> Callable[[], str]:
    """Request ids for this worker: 32 hex digits, a random prefix and a counter.

    Unique like uuid4().hex, without a getrandom(2) and a UUID object per request.
    """
    prefix = os.urandom(8).hex()
    counter = itertools.count(int.from_bytes(os.urandom(4), "big"))
    return lambda: f"{prefix}{next(counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_STATUS_LINES: dict[int, str] = {}
# Headers werkzeug's Response sets or rewrites itself; a handler setting one of them gets
# a real Response (the rare case).
_OWN_HEADERS = frozenset(("content-type", "content-length", "x-request-id", "location",
                          "content-location"))


def status_line(code: int) -> str:
    """The WSGI status werkzeug makes of an integer code ("200 OK", "299 UNKNOWN")."""
    line = _STATUS_LINES.get(code)
    if line is None:
        reason = HTTP_STATUS_CODES.get(code)
        line = _STATUS_LINES[code] = f"{code} {reason.upper() if reason else 'UNKNOWN'}"
    return line


def plain_wsgi_headers(status: int, body: bytes, content_type: str,
                       headers: dict[str, str] | None, request_id: str,
                       ) -> list[tuple[str, str]] | None:
    """The headers `Response(body, status, headers, content_type=...)` plus X-Request-ID
    would send, in its order; None when werkzeug would do more than list them (1xx, 204
    and 304 statuses, headers it manages, values it would reject) and must be used.
    """
    if not 200 <= status <= 599 or status == 204 or status == 304:
        return None
    out: list[tuple[str, str]] = []
    if headers:
        for key, value in headers.items():
            if (not isinstance(key, str) or not isinstance(value, str)
                    or key.lower() in _OWN_HEADERS or "\n" in value or "\r" in value):
                return None
            out.append((key, value))
    out.append(("Content-Type", content_type))
    out.append(("Content-Length", str(len(body))))
    out.append(("X-Request-ID", request_id))
    return out


# A fast-path answer: werkzeug's Response where one is needed (errors, unusual headers),
# else the status, the WSGI header list and the body.
Answer = Response | tuple[int, list[tuple[str, str]], bytes]


class Pending:
    """A fast-path prediction queued for the model (see create_app's `begin`)."""

    __slots__ = ("deadline", "group", "is_batch", "jobs", "path", "request_id", "started")

    def __init__(self, path: str, request_id: str, started: float, is_batch: bool,
                 group: Group, jobs: list[Job], deadline: float) -> None:
        self.path = path
        self.request_id = request_id
        self.started = started
        self.is_batch = is_batch
        self.group = group
        self.jobs = jobs
        self.deadline = deadline  # time.monotonic() by which to call `expire(jobs)`


class FastPath(NamedTuple):
    """The predictions fast path, for a server that answers it without a thread per request."""

    matches: Callable[[str, str, str, str, int | None], bool]
    begin: Callable[..., Pending | Answer]
    complete: Callable[[Pending], Answer]
    expire: Callable[[list[Job]], None]
    new_request_id: Callable[[], str]


def outcome_status(outcomes: list[Outcome]) -> int:
    """The status a prediction is counted with: its first failing row's, else the first row's."""
    first_error = next((o.error for o in outcomes if o.error is not None), None)
    return first_error.status if first_error is not None else outcomes[0].status


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
        # A form's fields are parsed from the body after it is read: keep it for that.
        values, is_batch = decode_body(request.get_data(cache=request.mimetype in FORM_TYPES),
                                       request.content_type or "")
        rows = [_row(value) for value in values]
        status, body, content_type, headers = answer(_predict(rows), is_batch)
        return Response(body, status=status, headers=headers, content_type=content_type)

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
        return predict(rows, environ_headers(request.environ), g.request_id, g.started)

    def predict(rows: list[dict[str, Any]], headers: dict[str, str], request_id: str,
                started: float) -> list[Outcome]:
        metrics_on = metrics is not None
        if metrics_on:
            metrics.request_started()
        status = 500
        try:
            outcomes = service.predict(rows, headers, request_id)
            status = outcome_status(outcomes)
            return outcomes
        except ServingError as exc:
            status = exc.status
            raise
        finally:
            if metrics_on:
                metrics.request_finished(status, (time.perf_counter() - started) * 1000.0)

    def answer(outcomes: list[Outcome], is_batch: bool,
               ) -> tuple[int, bytes, str, dict[str, str] | None]:
        """Status, body, content type and headers of a prediction; raises its error.

        One row: the handler's value as it set it up. A client batch: a JSON array
        of the values, or the first failing row's error.
        """
        if not is_batch:
            outcome = outcomes[0]
            if outcome.error is not None:
                raise outcome.error  # type: ignore[misc]
            body, content_type = encode_value(outcome.value, outcome.content_type)
            return outcome.status, body, content_type, outcome.headers
        for index, outcome in enumerate(outcomes):
            error = outcome.error
            if error is None and outcome.status >= 400:
                error = ServingError(f"{outcome.value}", status=outcome.status)
            if error is not None:
                failed = type(error)(f"row {index}: {error}", status=error.status,  # type: ignore
                                     headers=getattr(error, "headers", None))
                raise failed
        return 200, dumps([o.value for o in outcomes]), JSON, None

    register_kserve(app, service, _predict)

    new_request_id = request_ids()

    @app.before_request
    def _begin() -> None:
        g.started = time.perf_counter()
        g.request_id = request.environ.get("HTTP_X_REQUEST_ID") or new_request_id()

    def finish(response: Response, method: str, path: str, endpoint: str, request_id: str,
               started: float) -> None:
        """What every answer gets: its request id, the exporter's series, an access line."""
        response.headers["X-Request-ID"] = request_id
        status = response.status_code
        if metrics is not None and not path.startswith(UNTRACKED):
            metrics.http_request(method, endpoint, status, time.perf_counter() - started)
        if access_log:
            log_access(method, path, status, request_id, started)

    # The server's background writer takes access lines without a LogRecord per request.
    write_line = next((h.line for h in access.handlers if hasattr(h, "line")), None)

    def log_access(method: str, path: str, status: int, request_id: str, started: float) -> None:
        extra = {"request_id": request_id, "model": model_name, "status": status,
                 "duration_ms": round((time.perf_counter() - started) * 1e3, 3)}
        if write_line is None:
            access.info("%s %s %d", method, path, status, extra=extra)
        elif access.isEnabledFor(logging.INFO):
            write_line("%s %s %d", (method, path, status), extra)

    @app.after_request
    def _finish(response: Response) -> Response:
        finish(response, request.method, request.path, str(request.endpoint), g.request_id,
               g.started)
        return response

    flask_wsgi_app = app.wsgi_app
    paths = {f"/predictions/{model_name}", f"/predictions/{model_name}/{service.model_version}"}
    limit = service.settings.max_request_bytes

    def matches(method: str, path: str, query: str, content_type: str,
                length: int | None) -> bool:
        """Whether a request takes the fast path: a POST to the one hot route, no query
        string, a Content-Length within the limit (`length`, None without one), not a form."""
        return (path in paths and method == "POST" and not query and length is not None
                and length <= limit
                and content_type.split(";", 1)[0].strip().lower() not in FORM_TYPES)

    def begin(path: str, raw: bytes, content_type: str, headers: dict[str, str],
              request_id: str, started: float,
              on_done: Callable[[Any], None] | None) -> Pending | Answer:
        """Decode a fast-path request and queue its rows; its Pending, or the answer now."""
        try:
            values, is_batch = decode_body(raw, content_type)
            # As _row: no query parameters here, and no form fields (a JSON null has none).
            rows = [{"body": value} if value is not None else {} for value in values]
            if metrics is not None:
                metrics.request_started()
            try:
                group, jobs, deadline = service.submit(rows, headers, request_id, on_done)
            except ServingError as exc:
                if metrics is not None:
                    metrics.request_finished(exc.status, (time.perf_counter() - started) * 1e3)
                raise
            return Pending(path, request_id, started, is_batch, group, jobs, deadline)
        except Exception as error:  # noqa: BLE001 - failed() answers it as Flask would
            return failed(error, path, request_id, started)

    def complete(pending: Pending) -> Answer:
        """The answer of a Pending whose rows all have outcomes."""
        outcomes: list[Outcome] = pending.group.outcomes  # type: ignore[assignment]
        path, request_id, started = pending.path, pending.request_id, pending.started
        if metrics is not None:
            metrics.request_finished(outcome_status(outcomes),
                                     (time.perf_counter() - started) * 1e3)
        try:
            status, body, body_type, headers = answer(outcomes, pending.is_batch)
            wsgi_headers = plain_wsgi_headers(status, body, body_type, headers, request_id)
            if wsgi_headers is not None:  # what werkzeug's Response would send, made directly
                finish_plain(status, path, request_id, started)
                return status, wsgi_headers, body
            response = Response(body, status=status, headers=headers, content_type=body_type)
        except Exception as error:  # noqa: BLE001 - failed() answers it as Flask would
            return failed(error, path, request_id, started)
        finish(response, "POST", path, "predictions", request_id, started)
        return response

    def failed(error: Exception, path: str, request_id: str, started: float) -> Response:
        """The finished error answer of a fast-path prediction (as Flask's handlers make it)."""
        if not isinstance(error, ServingError):  # the same answer as _unexpected below
            log.exception("unexpected error answering POST %s", path, exc_info=error)
            error = ServingError(f"internal error: {type(error).__name__}")
        response = error_response(error)
        finish(response, "POST", path, "predictions", request_id, started)
        return response

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """POST /predictions/{model}[/{version}] without Flask's per-request machinery.

        Flask's request context, URL matching and hooks cost about as much CPU per
        request as the HTTP server itself, which on a small model is most of the
        serving cost. Plain requests to the one hot route (`matches`) are answered
        with the same code as the Flask route (decode_body, predict, answer,
        error_response, finish), and the common answer is handed to the server as
        the status and header list that werkzeug's Response would have made
        (plain_wsgi_headers). Anything else, including every error Flask itself
        would raise (413, 404, 405), goes through Flask, which stays the reference:
        tests/runtime/test_fastpath.py sends every kind of request through both and
        compares the answers. The event-loop worker (worker.py) calls `begin` and
        `complete` itself, without blocking a thread per request.
        """
        path = environ.get("PATH_INFO") or ""
        length = environ.get("CONTENT_LENGTH") or ""
        content_type = environ.get("CONTENT_TYPE") or ""
        size = int(length) if length.isascii() and length.isdigit() else None
        if "HTTP_TRANSFER_ENCODING" in environ or not matches(
                environ.get("REQUEST_METHOD", ""), path, environ.get("QUERY_STRING", ""),
                content_type, size):
            return flask_wsgi_app(environ, start_response)
        started = time.perf_counter()
        raw = environ["wsgi.input"].read(size)
        if len(raw) != size:  # the client went away: let werkzeug say so
            environ["wsgi.input"] = io.BytesIO(raw)
            return flask_wsgi_app(environ, start_response)
        request_id = environ.get("HTTP_X_REQUEST_ID") or new_request_id()
        result = begin(path, raw, content_type, environ_headers(environ), request_id, started,
                       None)
        if isinstance(result, Pending):
            if not result.group.wait(result.deadline - time.monotonic()):
                service.expire(result.jobs)
            result = complete(result)
        if isinstance(result, Response):
            return result(environ, start_response)
        status, headers, body = result
        start_response(status_line(status), headers)
        return [body]

    def finish_plain(status: int, path: str, request_id: str, started: float) -> None:
        """finish() for an answer sent without a Response object (its headers are done)."""
        if metrics is not None:
            metrics.http_request("POST", "predictions", status, time.perf_counter() - started)
        if access_log:
            log_access("POST", path, status, request_id, started)

    app.wsgi_app = wsgi_app  # type: ignore[method-assign]
    app.extensions["mkserve.flask_wsgi_app"] = flask_wsgi_app  # the reference, for tests
    app.extensions["mkserve.fast_path"] = FastPath(
        matches, begin, complete, lambda jobs: service.expire(jobs), new_request_id)

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
