"""A trivial endpoint under mkserve's own gunicorn configuration: the HTTP stack's ceiling.

`python -m mkserve.builder.bench.trivial` with the same environment as the runtime
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

from mkserve.runtime.logs import logging_config
from mkserve.runtime.server import Runtime, _owned_tempdir, prepare

ANSWER = {"predicted_class": 1, "confidence": 0.357329398393631,
          "probabilities": [0.32086181640625, 0.357329398393631, 0.321808785200119],
          "class_name": "dog"}


def trivial_app(model_name: str):
    from flask import Flask, Response, request
    from mkserve.runtime.app import FastPath, request_ids

    app = Flask("trivial")
    answer = json.dumps(ANSWER).encode()

    @app.post("/predictions/<model>")
    def predictions(model: str) -> Response:
        json.loads(request.get_data(cache=False))
        return Response(answer, mimetype="application/json")

    @app.get("/ping")
    def ping() -> Response:
        return Response('{"status": "Healthy"}', mimetype="application/json")

    path = f"/predictions/{model_name}"

    def matches(method: str, target: str, query: str, content_type: str,
                length: int | None) -> bool:
        return method == "POST" and target == path and length is not None

    def begin(path: str, raw: bytes, content_type: str, headers: dict[str, str],
              request_id: str, started: float, on_done: object):
        json.loads(raw)
        return 200, [("Content-Type", "application/json"), ("Content-Length", str(len(answer))),
                     ("X-Request-ID", request_id)], answer

    def unused(*args: object) -> None:
        raise AssertionError("the trivial endpoint answers at once")

    if os.environ.get("MKSERVE_BENCH_TRIVIAL", "flask") == "fast":
        app.extensions["mkserve.fast_path"] = FastPath(matches, begin, unused, unused,
                                                       request_ids())
    return app


class TrivialRuntime(Runtime):
    def load(self):
        return trivial_app(self.settings.model_name or self.source.name)


def main() -> int:
    logging.config.dictConfig(logging_config(os.environ.get("MKSERVE_LOG_FORMAT", "json"),
                                             os.environ.get("MKSERVE_LOG_LEVEL", "info")))
    settings, source, plan = prepare()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _owned_tempdir("mkserve-trivial-metrics-")
    import flask  # noqa: F401  (as the runtime's master does)

    TrivialRuntime(settings, source, plan).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
