"""The predictions fast path: POST /predictions/{model} answered without Flask's machinery.

Flask's request context, URL matching and hooks cost about as much CPU per
request as the HTTP server itself, which on a small model is most of the
serving cost. Plain requests to the one hot route (`matches`) are answered with
the same code as the Flask route (decode_body, the service, `answer`,
error_response, `RequestLog.finish`), and the common answer is handed to the
server as the status and header list that werkzeug's Response would have made
(plain_wsgi_headers). Anything else, including every error Flask itself would
raise (413, 404, 405), goes through Flask, which stays the reference:
tests/runtime/test_fastpath.py sends every kind of request through both and
compares the answers.

Two ways in: the event-loop server (http/server.py) calls `begin` from its loop
and `answer` once the model thread has called back, never blocking a thread;
`wsgi_app` does the same for any WSGI server, waiting in its thread.
"""
from __future__ import annotations

import io
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Response

from . import routes
from .batcher import Group, Job, Outcome
from .codec import decode_body, dumps, encode_value
from .errors import ServingError
from .http.response import status_line
from .seams import MetricsSink
from .service import ModelService, with_parts

log = logging.getLogger("mkserve.app")
access = logging.getLogger("mkserve.access")
JSON = "application/json"
# Bodies the predictions fast path leaves to Flask (request.form decodes them).
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# Paths whose requests are not counted in flask_http_* (prometheus-flask-exporter's
# excluded_paths, which match at the start of the path).
UNTRACKED = (routes.METRICS, routes.PING, routes.LIVENESS, routes.READINESS, "/v2/health")
# Headers werkzeug's Response sets or rewrites itself; a handler setting one of them gets
# a real Response (the rare case).
_OWN_HEADERS = frozenset(("content-type", "content-length", "x-request-id", "location",
                          "content-location"))

# An answer: werkzeug's Response where one is needed (errors, unusual headers), else
# the status, the WSGI header list and the body.
Answer = Response | tuple[int, list[tuple[str, str]], bytes]


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


def outcome_status(outcomes: list[Outcome]) -> int:
    """The status a prediction is counted with: its first failing row's, else the first row's."""
    first_error = next((o.error for o in outcomes if o.error is not None), None)
    return first_error.status if first_error is not None else outcomes[0].status


def answer(outcomes: list[Outcome], is_batch: bool,
           ) -> tuple[int, bytes, str, dict[str, str] | None]:
    """Status, body, content type and headers of a prediction; raises its error.

    One row: the handler's value as it set it up. A client batch: a JSON array of
    the values, or the first failing row's error.
    """
    if not is_batch:
        outcome = outcomes[0]
        if outcome.error is not None:
            raise outcome.error
        body, content_type = encode_value(outcome.value, outcome.content_type)
        return outcome.status, body, content_type, outcome.headers
    for index, outcome in enumerate(outcomes):
        error = outcome.error
        if error is None and outcome.status >= 400:
            error = ServingError(f"{outcome.value}", status=outcome.status)
        if error is not None:
            raise type(error)(f"row {index}: {error}", status=error.status,
                              headers=getattr(error, "headers", None))
    return 200, dumps([o.value for o in outcomes]), JSON, None


def error_response(error: ServingError) -> Response:
    return Response(error.to_json(), status=error.status, headers=error.headers, mimetype=JSON)


class RequestLog:
    """What every answer gets: its request id, the exporter's series, an access line."""

    def __init__(self, metrics: MetricsSink | None, access_log: bool, model_name: str) -> None:
        self.metrics = metrics
        self.access_log = access_log
        self.model_name = model_name
        # The server's background writer takes lines without a LogRecord per request.
        self.write_line = next((h.line for h in access.handlers if hasattr(h, "line")), None)

    def finish(self, response: Response, method: str, path: str, endpoint: str,
               request_id: str, started: float) -> None:
        response.headers["X-Request-ID"] = request_id
        status = response.status_code
        if self.metrics is not None and not path.startswith(UNTRACKED):
            self.metrics.http_request(method, endpoint, status, time.perf_counter() - started)
        if self.access_log:
            self.line(method, path, status, request_id, started)

    def finish_plain(self, status: int, path: str, request_id: str, started: float) -> None:
        """finish() for a prediction answered without a Response (its headers are done)."""
        if self.metrics is not None:
            self.metrics.http_request("POST", "predictions", status,
                                      time.perf_counter() - started)
        if self.access_log:
            self.line("POST", path, status, request_id, started)

    def line(self, method: str, path: str, status: int, request_id: str,
             started: float) -> None:
        extra = {"request_id": request_id, "model": self.model_name, "status": status,
                 "duration_ms": round((time.perf_counter() - started) * 1e3, 3)}
        if self.write_line is None:
            access.info("%s %s %d", method, path, status, extra=extra)
        elif access.isEnabledFor(logging.INFO):
            self.write_line("%s %s %d", (method, path, status), extra)


@dataclass(slots=True, eq=False)  # identity, as before: rows are tracked, not compared
class Pending:
    """A fast-path prediction queued for the model (see FastPath.begin)."""

    path: str
    request_id: str
    started: float
    is_batch: bool
    group: Group
    jobs: list[Job]
    deadline: float  # time.monotonic() by which to call `expire(jobs)`


class FastPath:
    """The hot route of one app: match, queue, answer (see the module doc).

    `begin` runs in the server's thread and never waits; the model thread
    calls the `on_done` it was given once every row has an outcome; `answer`
    then makes the response in the server's thread.
    """

    def __init__(self, service: ModelService, metrics: MetricsSink | None, requests: RequestLog,
                 new_request_id: Callable[[], str], flask_wsgi_app: Callable[..., Any]) -> None:
        self.service = service
        self.metrics = metrics
        self.requests = requests
        self.new_request_id = new_request_id
        self.flask_wsgi_app = flask_wsgi_app  # the reference, and everything else
        name, version = service.model_name, service.model_version
        self.paths = {routes.predictions(name), f"{routes.predictions(name)}/{version}"}
        self.limit = service.settings.max_request_bytes
        self.split_lists = service.settings.list_body == "rows"

    def matches(self, method: str, path: str, query: str, content_type: str,
                length: int | None) -> bool:
        """A POST to the one hot route, no query string, a Content-Length within the
        limit (`length`, None without one), not a form."""
        return (path in self.paths and method == "POST" and not query and length is not None
                and length <= self.limit
                and content_type.split(";", 1)[0].strip().lower() not in FORM_TYPES)

    def begin(self, path: str, raw: bytes, content_type: str, headers: dict[str, str],
              request_id: str, started: float,
              on_done: Callable[[Any], None] | None) -> Pending | Answer:
        """Decode a request and queue its rows: its Pending, or the answer now."""
        metrics = self.metrics
        try:
            values, is_batch = decode_body(raw, content_type, self.split_lists)
            # As the Flask route: no query parameters here, no form fields (JSON null).
            rows = [{"body": value} if value is not None else {} for value in values]
            # What TorchServe adds to a /predictions request (ts_routes.predictions_headers);
            # `headers` is this request's own dict.
            headers["explain"] = "False"
            headers["url_path"] = ""
            if metrics is not None:
                metrics.request_started()
            try:
                group, jobs, deadline = self.service.submit(rows, headers, request_id, on_done)
            except ServingError as exc:
                if metrics is not None:
                    metrics.request_finished(exc.status, (time.perf_counter() - started) * 1e3)
                raise
            return Pending(path, request_id, started, is_batch, group, jobs, deadline)
        except Exception as error:  # noqa: BLE001 - failed() answers it as Flask would
            return self.failed(error, path, request_id, started)

    @staticmethod
    def is_pending(result: Any) -> bool:
        return type(result) is Pending

    @staticmethod
    def settled(pending: Pending) -> bool:
        return not pending.group.remaining

    def expire(self, jobs: list[Job]) -> None:
        self.service.expire(jobs)

    # -- streaming (send_intermediate_predict_response) ---------------------
    @staticmethod
    def on_part(pending: Pending, callback: Callable[[], None]) -> None:
        """Call `callback` (from the model thread) whenever the handler streams a part of
        this request's answer. A client batch is answered whole: no parts are sent."""
        if pending.is_batch:
            return
        group = pending.group
        group.on_part = lambda _group: callback()
        if group.parts:  # streamed before the callback was set
            callback()

    @staticmethod
    def take_parts(pending: Pending) -> tuple[list[bytes], str | None]:
        """The parts streamed since the last call, encoded, and the first one's type."""
        encoded = [encode_value(value, ctype) for value, ctype in pending.group.take_parts()]
        return [body for body, _ in encoded], (encoded[0][1] if encoded else None)

    @staticmethod
    def request_id_of(pending: Pending) -> str:
        return pending.request_id

    def complete(self, pending: Pending) -> Answer:
        """The answer of a Pending whose rows all have outcomes."""
        outcomes = with_parts(pending.group)  # parts not streamed yet lead the answer
        path, request_id, started = pending.path, pending.request_id, pending.started
        if self.metrics is not None:
            self.metrics.request_finished(outcome_status(outcomes),
                                          (time.perf_counter() - started) * 1e3)
        try:
            status, body, body_type, headers = answer(outcomes, pending.is_batch)
            wsgi_headers = plain_wsgi_headers(status, body, body_type, headers, request_id)
            if wsgi_headers is not None:  # what werkzeug's Response would send, made directly
                self.requests.finish_plain(status, path, request_id, started)
                return status, wsgi_headers, body
            response = Response(body, status=status, headers=headers, content_type=body_type)
        except Exception as error:  # noqa: BLE001 - failed() answers it as Flask would
            return self.failed(error, path, request_id, started)
        self.requests.finish(response, "POST", path, "predictions", request_id, started)
        return response

    def answer(self, result: Pending | Answer, environ: Callable[[], dict[str, Any]],
               ) -> tuple[str, list[tuple[str, str]], bytes]:
        """The WSGI status, headers and body of a settled Pending or of an answer."""
        if isinstance(result, Pending):
            result = self.complete(result)
        if isinstance(result, tuple):
            code, headers, body = result
            return status_line(code), headers, body
        app_iter, status, headers = result.get_wsgi_response(environ())
        return status, headers, b"".join(app_iter)

    def failed(self, error: Exception, path: str, request_id: str, started: float) -> Response:
        """The finished error answer of a prediction (as Flask's handlers make it)."""
        if not isinstance(error, ServingError):  # the same answer as the app's _unexpected
            log.exception("unexpected error answering POST %s", path, exc_info=error)
            error = ServingError(f"internal error: {type(error).__name__}")
        response = error_response(error)
        self.requests.finish(response, "POST", path, "predictions", request_id, started)
        return response

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """The app's WSGI entry: the hot route here, waiting in the caller's thread;
        the rest (and a client gone mid-body) through Flask."""
        path = environ.get("PATH_INFO") or ""
        length = environ.get("CONTENT_LENGTH") or ""
        content_type = environ.get("CONTENT_TYPE") or ""
        size = int(length) if length.isascii() and length.isdigit() else None
        if "HTTP_TRANSFER_ENCODING" in environ or not self.matches(
                environ.get("REQUEST_METHOD", ""), path, environ.get("QUERY_STRING", ""),
                content_type, size):
            return self.flask_wsgi_app(environ, start_response)
        started = time.perf_counter()
        raw = environ["wsgi.input"].read(size)
        if len(raw) != size:  # the client went away: let werkzeug say so
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.flask_wsgi_app(environ, start_response)
        request_id = environ.get("HTTP_X_REQUEST_ID") or self.new_request_id()
        result = self.begin(path, raw, content_type, environ_headers(environ), request_id,
                            started, None)
        if isinstance(result, Pending):
            if not result.group.wait(result.deadline - time.monotonic()):
                self.service.expire(result.jobs)
            result = self.complete(result)
        if isinstance(result, Response):
            return result(environ, start_response)
        status, headers, body = result
        start_response(status_line(status), headers)
        return [body]
