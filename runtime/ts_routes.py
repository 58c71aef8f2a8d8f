"""TorchServe's other inference routes, on the serving port, over the same predictions path.

- POST /explanations/{m}[/{v}[/...]] the request reaches the handler with the `explain`
                                     header "True" (BaseHandler then calls get_insights)
                                     and `url_path`, as /predictions has "False" and it
- POST /invocations[?model_name=m]   SageMaker's route; another model_name is a 404
- POST /models/{m}/invoke            SageMaker's multi-model spelling
- POST /{m}/predict, /{m}/{v}/predict  TorchServe's legacy routes (query parameters
                                     reach the handler as fields of the row, as there)
- GET  /models/{m}[/{v}]             TorchServe's describe JSON for this model, read-only;
                                     `?customized=true` adds the handler's describe_handle()
                                     as "customizedMetadata" (the request reaches the handler
                                     with the `describe` header "True")

Every POST answers exactly as POST /predictions/{m} would. Nothing here loads,
registers, scales or unloads a model: that is the orchestrator's job.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from . import routes
from .batcher import Outcome
from .codec import dumps
from .errors import NotFound
from .service import ModelService

Predict = Callable[..., list[Outcome]]  # (rows, extra_headers=None) -> one Outcome per row
AnswerPredictions = Callable[..., Response]  # (extra_headers=None, query_fields=False)
DESCRIBE = {"describe": "True"}
_STARTED = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def register_torchserve_routes(app: Flask, service: ModelService, predict: Predict,
                               answer: AnswerPredictions) -> None:
    name = service.model_name

    def check(model: str, version: str | None = None) -> None:
        check_served(service, model, version)

    @app.post("/explanations/<model>")
    @app.post("/explanations/<model>/<version>")
    @app.post("/explanations/<model>/<version>/<path:url_path>")
    def explanations(model: str, version: str | None = None, url_path: str = "") -> Response:
        check(model, version)
        return answer({"explain": "True", "url_path": url_path})

    @app.post("/invocations")
    def invocations() -> Response:
        check(request.args.get("model_name") or name)
        return answer()

    @app.post("/models/<model>/invoke")
    def invoke(model: str) -> Response:
        check(model)
        return answer()

    @app.post("/<model>/predict")
    @app.post("/<model>/<version>/predict")
    def legacy_predict(model: str, version: str | None = None) -> Response:
        check(model, version)
        return answer(query_fields=True)

    @app.get("/models/<model>")
    @app.get("/models/<model>/<version>")
    def describe(model: str, version: str | None = None) -> Response:
        check(model, version)
        entry = describe_model(service)
        if request.args.get("customized", "").lower() == "true":
            [outcome] = predict([{}], DESCRIBE)
            if outcome.error is not None:
                raise outcome.error
            entry["customizedMetadata"] = outcome.value
        return Response(dumps([entry]), mimetype="application/json")


def check_served(service: ModelService, model: str, version: str | None = None) -> None:
    """A 404 for another model or version, TorchServe's words first (clients match them)."""
    name = service.model_name
    if model != name:
        raise NotFound(f"Model not found: {model}; this server serves {name!r} "
                       f"at {routes.predictions(name)}")
    if version is not None and version != service.model_version:
        raise NotFound(f"Model version: {version} does not exist for model: {model}; "
                       f"this server serves version {service.model_version}")


def predictions_headers(url_path: str = "") -> dict[str, str]:
    """The headers TorchServe's frontend adds to a /predictions request: `explain`
    "False", and `url_path`, the (decoded) path after the model's version."""
    return {"explain": "False", "url_path": url_path}


def describe_model(service: ModelService) -> dict[str, Any]:
    """TorchServe's describe entry, with what this replica is. "workers" lists the worker
    that answered (each worker of a replica answers for itself)."""
    s = service.settings
    depth = service.batcher.depth
    workers = service.replica_workers
    return {
        "modelName": service.model_name, "modelVersion": service.model_version,
        "modelUrl": os.path.basename(service.source.origin.rstrip("/")), "runtime": "python",
        "minWorkers": workers, "maxWorkers": workers, "batchSize": s.batch_size,
        "maxBatchDelay": round(s.max_batch_delay_ms),
        "responseTimeout": round(s.response_timeout_s),
        "startupTimeout": round(s.startup_timeout_s), "maxRetryTimeoutInSec": 0,
        "clientTimeoutInMills": 0, "parallelType": "", "parallelLevel": 0,
        "deviceType": "gpu" if service.gpu_id is not None else "cpu",
        "continuousBatching": False, "useJobTicket": False, "useVenv": False,
        "stateful": False, "sequenceMaxIdleMSec": 0, "sequenceTimeoutMSec": 0,
        "maxNumSequence": 0, "maxSequenceJobQueueSize": 0, "loadedAtStartup": True,
        "workers": [{"id": str(os.getpid()), "startTime": _STARTED,
                     "status": service.state.upper(), "memoryUsage": _rss_bytes(),
                     "pid": os.getpid(), "gpu": service.gpu_id is not None,
                     "gpuUsage": "N/A"}],
        "jobQueueStatus": {"remainingCapacity": max(0, s.queue_size - depth),
                           "pendingRequests": depth},
    }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
