"""A trivial endpoint under mkserve's own gunicorn configuration: the HTTP stack's ceiling.

`python -m mkserve.bench.trivial` with the same environment as the runtime
(MKSERVE_MODEL, PORT, ...): the master resolves settings and the worker plan
exactly as `python -m mkserve.runtime` does and runs gunicorn through the same
`Runtime` class (same workers, worker class, keep-alive, hooks), but each worker
answers predictions by parsing the JSON body and returning a fixed JSON object
instead of running a model, in one of two ways (MKSERVE_BENCH_TRIVIAL):

- `flask` (the default): a Flask route, as performance.md's reference figure was
  measured ("a trivial Flask endpoint under gunicorn"); in mkserve's worker it
  runs in the request thread pool, like every route but the predictions.
- `fast`: through the worker's predictions fast path (`FastPath`), answered at
  once instead of queued for a model: the ceiling of mkserve's HTTP stack itself.
"""
from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
from typing import TYPE_CHECKING

from mkserve.runtime import routes
from mkserve.runtime.logs import logging_config
from mkserve.runtime.server import Runtime, _owned_tempdir, prepare
from mkserve.runtime.settings import BENCH_TRIVIAL_VARIABLE
from mkserve.runtime.settings import read as read_setting

if TYPE_CHECKING:
    from mkserve.runtime.app import ServingApp

ANSWER = {"predicted_class": 1, "confidence": 0.357329398393631,
          "probabilities": [0.32086181640625, 0.357329398393631, 0.321808785200119],
          "class_name": "dog"}


class TrivialRoute:
    """The server's fast route (mkserve.runtime.http.server.FastRoute), answered at once."""

    def __init__(self, model_name: str, answer: bytes) -> None:
        from mkserve.runtime.fastpath import request_ids

        self.path = routes.predictions(model_name)
        self.body = answer
        self.new_request_id = request_ids()

    def matches(self, method: str, path: str, query: str, content_type: str,
                length: int | None) -> bool:
        return method == "POST" and path == self.path and length is not None

    def begin(self, path: str, raw: bytes, content_type: str, headers: dict[str, str],
              request_id: str, started: float, on_done: object) -> tuple:
        json.loads(raw)
        return ("200 OK", [("Content-Type", "application/json"),
                           ("Content-Length", str(len(self.body))),
                           ("X-Request-ID", request_id)], self.body)

    def is_pending(self, result: object) -> bool:
        return False

    def answer(self, result: tuple, environ: object) -> tuple:
        return result

    def settled(self, pending: object) -> bool:
        raise AssertionError("the trivial endpoint answers at once")

    complete = expire = settled


def trivial_app(model_name: str) -> ServingApp:
    from flask import Response, request
    from mkserve.runtime.app import ServingApp

    app = ServingApp("trivial")
    answer = json.dumps(ANSWER).encode()

    @app.post(routes.PREDICTIONS + "/<model>")
    def predictions(model: str) -> Response:
        json.loads(request.get_data(cache=False))
        return Response(answer, mimetype="application/json")

    @app.get(routes.PING)
    def ping() -> Response:
        return Response('{"status": "Healthy"}', mimetype="application/json")

    if os.environ.get(BENCH_TRIVIAL_VARIABLE, "flask") == "fast":
        app.fast_path = TrivialRoute(model_name, answer)  # type: ignore[assignment]
    return app


class TrivialRuntime(Runtime):
    def load(self) -> ServingApp:
        return trivial_app(self.settings.model_name or self.source.name)


def main() -> int:
    logging.config.dictConfig(logging_config(read_setting("log_format"),
                                             read_setting("log_level")))
    settings, source, plan = prepare()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _owned_tempdir("mkserve-trivial-metrics-")
    import flask  # noqa: F401  (as the runtime's master does)

    TrivialRuntime(settings, source, plan).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
