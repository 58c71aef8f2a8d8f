"""A trivial Flask endpoint under mkserve's own gunicorn configuration: the HTTP stack's ceiling.

`python -m mkserve.builder.bench.trivial` with the same environment as the runtime
(MKSERVE_MODEL, PORT, ...): the master resolves settings and the worker plan
exactly as `python -m mkserve.runtime` does and runs gunicorn through the same
`Runtime` class (same workers, threads, keep-alive, hooks), but each worker
serves a Flask app that parses the JSON body and answers a fixed JSON object
instead of loading the model.
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

    app = Flask("trivial")

    @app.post("/predictions/<model>")
    def predictions(model: str) -> Response:
        json.loads(request.get_data(cache=False))
        return Response(json.dumps(ANSWER), mimetype="application/json")

    @app.get("/ping")
    def ping() -> Response:
        return Response('{"status": "Healthy"}', mimetype="application/json")

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
