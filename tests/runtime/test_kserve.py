"""KServe V1 and V2 (Open Inference Protocol) routes in-process, against real ModelServices."""
from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from mkserve.runtime import __version__
from mkserve.runtime.app import create_app
from mkserve.runtime.handlers import split_handler
from mkserve.runtime.kserve_v2 import build_outputs, flatten, output_tensor
from mkserve.runtime.metrics import Metrics
from mkserve.runtime.service import ModelService
from mkserve.runtime.settings import resolve
from mkserve.runtime.source import open_source
from prometheus_client import CollectorRegistry
from tiny_models import Linear3

# Records every row it is given and answers each with its body; "boom" is bad input (400),
# "crash" a handler bug (500).
RECORDER = """
ROWS = []
BATCHES = []

class Recorder:
    def initialize(self, context):
        self.context = context

    def handle(self, data, context):
        BATCHES.append(len(data))
        ROWS.extend(data)
        out = []
        for row in data:
            body = row.get("body")
            if body == "boom":
                raise ValueError("boom requested")
            if body == "crash":
                raise ZeroDivisionError("division by zero")
            out.append(body)
        return out
"""

# Each row answers with a list as long as its number: results of different shapes.
RAGGED = """
def handle(data, context):
    if data is None:
        return None
    return [[1] * row["body"] for row in data]
"""


def seen(served: Any) -> Any:
    """The handler module of a served model (to read what it recorded)."""
    return sys.modules[split_handler(served.service.source.handler)[0]]


def error(response: Any, status: int) -> str:
    """The message of a KServe error answer, after checking its status and shape."""
    assert response.status_code == status, (response.status_code, response.data[:300])
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    assert not {"code", "type", "message"} & set(body), body
    return body["error"]


def v2(name: str, shape: list[int], datatype: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data, **extra}


# -- V1 ---------------------------------------------------------------------

def test_v1_ten_instances_are_ten_rows_and_ten_predictions_in_order(serve_handler):
    served = serve_handler(RECORDER, env={"MKSERVE_BATCH_SIZE": "4"})
    instances = [{"i": i, "x": [i, i + 1]} for i in range(10)]
    r = served.client.post("/v1/models/m:predict", json={"instances": instances})
    assert r.status_code == 200, r.data
    assert r.get_json() == {"predictions": instances}
    module = seen(served)
    assert sorted((row["body"] for row in module.ROWS), key=lambda b: b["i"]) == instances
    assert all(set(row) == {"body"} for row in module.ROWS)
    assert sum(module.BATCHES) == 10 and max(module.BATCHES) <= 4  # split by batch size


def test_v1_inputs_key_and_scalar_instances(serve_handler):
    served = serve_handler(RECORDER)
    r = served.client.post("/v1/models/m:predict", json={"inputs": [1.5, "text", [1, 2]]})
    assert r.get_json() == {"predictions": [1.5, "text", [1, 2]]}


def test_v1_list_models_and_model_ready(serve_handler):
    c = serve_handler(RECORDER).client
    assert c.get("/v1/models").get_json() == {"models": ["m"]}
    r = c.get("/v1/models/m")
    assert r.status_code == 200 and r.get_json() == {"name": "m", "ready": True}
    assert "other" in error(c.get("/v1/models/other"), 404)
    assert "other" in error(c.post("/v1/models/other:predict", json={"instances": [1]}), 404)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"data": "{nope", "content_type": "application/json"}, "malformed JSON"),
    ({"data": b"\xff\xfe\x00garbage"}, "request body"),
    ({"json": {}}, "exactly one of \"instances\" or \"inputs\""),
    ({"json": {"instances": []}}, "non-empty list"),
    ({"json": {"instances": {"a": 1}}}, "non-empty list"),
    ({"json": {"instances": [1], "inputs": [1]}}, "exactly one of"),
    ({"json": [1, 2]}, "JSON object"),
    ({"json": "instances"}, "JSON object"),
])
def test_v1_malformed_requests_are_400(serve_handler, kwargs, fragment):
    served = serve_handler(RECORDER)
    assert fragment in error(served.client.post("/v1/models/m:predict", **kwargs), 400)
    assert seen(served).ROWS == []


def test_v1_one_failing_instance_fails_the_request_naming_it(serve_handler):
    served = serve_handler(RECORDER)
    r = served.client.post("/v1/models/m:predict", json={"instances": [1, "boom", 3]})
    assert "instance 1" in error(r, 400) and "boom requested" in error(r, 400)
    r = served.client.post("/v1/models/m:predict", json={"instances": ["crash"]})
    assert "ZeroDivisionError" in error(r, 500)
    assert served.client.get("/readyz").status_code == 200


def test_v1_too_many_instances_is_413(serve_handler):
    served = serve_handler(RECORDER, env={"MKSERVE_QUEUE_SIZE": "4"})
    r = served.client.post("/v1/models/m:predict", json={"instances": list(range(5))})
    assert "larger than the queue" in error(r, 413)


# -- V2: every endpoint -------------------------------------------------------

def test_v2_every_rest_endpoint(serve_handler):
    """Conformance: each Open Inference Protocol REST endpoint, with and without a version."""
    c = serve_handler(RECORDER).client
    r = c.get("/v2")
    assert r.status_code == 200
    assert r.get_json() == {"name": "mkserve", "version": __version__, "extensions": []}
    assert c.get("/v2/").get_json()["name"] == "mkserve"
    assert c.get("/v2/health/live").get_json() == {"live": True}
    assert c.get("/v2/health/ready").get_json() == {"ready": True}
    metadata = {"name": "m", "versions": ["1.0"], "platform": "pytorch", "inputs": [],
                "outputs": []}
    for prefix in ("/v2/models/m", "/v2/models/m/versions/1.0"):
        r = c.get(prefix)
        assert r.status_code == 200 and r.get_json() == metadata
        r = c.get(f"{prefix}/ready")
        assert r.status_code == 200 and r.get_json() == {"name": "m", "ready": True}
        r = c.post(f"{prefix}/infer", json={"id": "req-7", "inputs": [
            v2("x", [2, 3], "FP32", [1, 2, 3, 4, 5, 6])]})
        assert r.status_code == 200, r.data
        assert r.get_json() == {"model_name": "m", "model_version": "1.0", "id": "req-7",
                                "outputs": [{"name": "output-0", "shape": [2, 3],
                                             "datatype": "FP32",
                                             "data": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}]}
    for path in ("/v2/models/m/versions/9", "/v2/models/m/versions/9/ready"):
        assert "version '9'" in error(c.get(path), 404)
    r = c.post("/v2/models/m/versions/9/infer", json={"inputs": [v2("x", [1], "FP32", [1])]})
    assert "version '9'" in error(r, 404)
    for path in ("/v2/models/other", "/v2/models/other/ready"):
        assert "'other'" in error(c.get(path), 404)
    r = c.post("/v2/models/other/infer", json={"inputs": [v2("x", [1], "FP32", [1])]})
    assert "'other'" in error(r, 404)
    assert error(c.get("/v2/models/m/infer"), 405)
    assert error(c.get("/v2/nowhere"), 404)


def test_v2_one_input_rows_are_slices_along_the_batch_dimension(serve_handler):
    served = serve_handler(RECORDER)
    r = served.client.post("/v2/models/m/infer", json={"inputs": [
        v2("x", [2, 2, 2], "INT32", [[[1, 2], [3, 4]], [[5, 6], [7, 8]]])]})
    assert r.status_code == 200, r.data
    assert [row["body"] for row in seen(served).ROWS] == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    out = r.get_json()["outputs"]
    assert out == [{"name": "output-0", "shape": [2, 2, 2], "datatype": "INT64",
                    "data": [1, 2, 3, 4, 5, 6, 7, 8]}]


def test_v2_two_inputs_of_different_datatypes(serve_handler):
    served = serve_handler(RECORDER)
    r = served.client.post("/v2/models/m/infer", json={"inputs": [
        v2("features", [2, 3], "FP32", [0.5, 1, 2, 3, 4, 5.5]),
        v2("ids", [2, 1], "INT64", [7, 8])]})
    assert r.status_code == 200, r.data
    bodies = [row["body"] for row in seen(served).ROWS]
    assert bodies == [{"features": [0.5, 1.0, 2.0], "ids": [7]},
                      {"features": [3.0, 4.0, 5.5], "ids": [8]}]
    assert isinstance(bodies[0]["features"][1], float)  # FP32 data written as 1 is a float
    body = r.get_json()
    assert body["model_name"] == "m" and body["id"] == r.headers["X-Request-ID"]
    assert body["outputs"] == [
        {"name": "features", "shape": [2, 3], "datatype": "FP32",
         "data": [0.5, 1.0, 2.0, 3.0, 4.0, 5.5]},
        {"name": "ids", "shape": [2, 1], "datatype": "INT64", "data": [7, 8]}]


def test_v2_bool_and_bytes_inputs_round_trip(serve_handler):
    served = serve_handler(RECORDER)
    r = served.client.post("/v2/models/m/infer", json={"inputs": [
        v2("flags", [3], "BOOL", [True, False, True]), v2("text", [3], "BYTES", ["a", "b", "c"])]})
    outputs = {o["name"]: o for o in r.get_json()["outputs"]}
    assert outputs["flags"]["datatype"] == "BOOL" and outputs["flags"]["shape"] == [3]
    assert outputs["text"] == {"name": "text", "shape": [3], "datatype": "BYTES",
                               "data": ["a", "b", "c"]}


def test_v2_requested_outputs_select_and_rename(serve_handler):
    c = serve_handler(RECORDER).client
    two = [v2("a", [1, 2], "FP32", [1, 2]), v2("b", [1], "INT8", [3])]
    r = c.post("/v2/models/m/infer", json={"inputs": two, "outputs": [{"name": "b"}]})
    assert [o["name"] for o in r.get_json()["outputs"]] == ["b"]
    r = c.post("/v2/models/m/infer", json={"inputs": two, "outputs": [{"name": "zz"}]})
    assert "no output 'zz'" in error(r, 400)
    one = [v2("a", [1, 2], "FP32", [1, 2])]
    r = c.post("/v2/models/m/infer", json={"inputs": one, "outputs": [{"name": "scores"}]})
    assert r.get_json()["outputs"][0]["name"] == "scores"
    r = c.post("/v2/models/m/infer", json={"inputs": one,
                                           "outputs": [{"name": "p"}, {"name": "q"}]})
    assert "one output per request" in error(r, 400)


def test_v2_parameters_reach_the_handler(serve_handler):
    served = serve_handler(RECORDER)
    r = served.client.post("/v2/models/m/infer", json={
        "parameters": {"temperature": 0.5},
        "inputs": [v2("x", [1, 1], "FP64", [1.5], parameters={"unit": "cm"})]})
    assert r.status_code == 200
    row = seen(served).ROWS[0]
    assert row == {"body": [1.5], "parameters": {"temperature": 0.5},
                   "input_parameters": {"x": {"unit": "cm"}}}


def test_v2_request_id_echoed_or_taken_from_the_header(serve_handler):
    c = serve_handler(RECORDER).client
    request = {"inputs": [v2("x", [1], "FP32", [1])]}
    r = c.post("/v2/models/m/infer", json={"id": "abc-42", **request})
    assert r.get_json()["id"] == "abc-42" and r.headers["X-Request-ID"] == "abc-42"
    r = c.post("/v2/models/m/infer", json=request, headers={"X-Request-ID": "hdr-1"})
    assert r.get_json()["id"] == "hdr-1"
    r = c.post("/v2/models/m/infer", json={"id": "body-id", **request},
               headers={"X-Request-ID": "hdr-2"})
    assert r.get_json()["id"] == "body-id" and r.headers["X-Request-ID"] == "hdr-2"
    r = c.post("/v2/models/m/infer", json=request)
    assert r.get_json()["id"] == r.headers["X-Request-ID"] and len(r.get_json()["id"]) >= 16
    r = c.post("/v2/models/m/infer", json={"id": "line\nbreak", **request})
    assert r.status_code == 200 and r.get_json()["id"] == "line\nbreak"


@pytest.mark.parametrize(("body", "fragment"), [
    ({}, "\"inputs\" must be a non-empty list"),
    ({"inputs": []}, "\"inputs\" must be a non-empty list"),
    ({"inputs": {"x": 1}}, "\"inputs\" must be a non-empty list"),
    ([{"name": "x"}], "must be a JSON object"),
    ({"inputs": [v2("x", [2], "FP99", [1, 2])]}, "datatype 'FP99' is not one of"),
    ({"inputs": [v2("x", [2], None, [1, 2])]}, "datatype None"),
    ({"inputs": [v2("x", [2, 3], "FP32", [1, 2, 3, 4, 5])]}, "holds 6 elements but"),
    ({"inputs": [v2("x", [2], "FP32", [[1, 2], [3]])]}, "holds 2 elements but \"data\" has 3"),
    ({"inputs": [v2("x", [2], "FP32", [1, "a"])]}, "needs numbers; element 1 is 'a'"),
    ({"inputs": [v2("x", [1], "FP32", [10**400])]}, "too large"),
    ({"inputs": [v2("x", [2], "INT8", [1, 300])]}, "integers from -128 to 127"),
    ({"inputs": [v2("x", [1], "UINT8", [-1])]}, "integers from 0 to 255"),
    ({"inputs": [v2("x", [1], "INT32", [1.5])]}, "integers"),
    ({"inputs": [v2("x", [1], "INT64", [True])]}, "integers"),
    ({"inputs": [v2("x", [2], "BOOL", [1, 0])]}, "true/false"),
    ({"inputs": [v2("x", [1], "BYTES", [1])]}, "strings"),
    ({"inputs": [v2("x", [], "FP32", 1)]}, "positive integers"),
    ({"inputs": [v2("x", [0], "FP32", [])]}, "positive integers"),
    ({"inputs": [v2("x", [-1], "FP32", [1])]}, "positive integers"),
    ({"inputs": [v2("x", [1.0], "FP32", [1])]}, "positive integers"),
    ({"inputs": [v2("x", "2", "FP32", [1, 2])]}, "positive integers"),
    ({"inputs": [v2("x", [1] * 65, "FP32", [1])]}, "positive integers"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}, "\"data\" is missing"),
    ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, "\"name\""),
    ({"inputs": ["x"]}, "inputs[0] must be an object"),
    ({"inputs": [v2("x", [1], "FP32", [1]), v2("x", [1], "FP32", [1])]}, "repeated: x"),
    ({"inputs": [v2("a", [2], "FP32", [1, 2]), v2("b", [3], "FP32", [1, 2, 3])]},
     "must agree; got a 2, b 3"),
    ({"id": 7, "inputs": [v2("x", [1], "FP32", [1])]}, "\"id\" must be a string"),
    ({"parameters": [1], "inputs": [v2("x", [1], "FP32", [1])]}, "\"parameters\" must be"),
    ({"inputs": [v2("x", [1], "FP32", [1], parameters=3)]}, "\"parameters\" must be"),
    ({"inputs": [v2("x", [1], "FP32", [1])], "outputs": ["y"]}, "\"outputs\" must be"),
    ({"inputs": [v2("x", [1], "FP32", [1])], "outputs": [{"name": "y"}, {"name": "y"}]},
     "same output twice"),
])
def test_v2_malformed_requests_are_400_with_a_clear_error(serve_handler, body, fragment):
    served = serve_handler(RECORDER)
    assert fragment in error(served.client.post("/v2/models/m/infer", json=body), 400)
    assert seen(served).ROWS == []  # rejected before the model


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"data": "not json", "content_type": "application/json"}, "malformed JSON"),
    ({"data": b"\xff\xff\xff"}, "request body"),
    ({"data": b""}, "malformed JSON"),
    ({"json": {"inputs": [v2("x", [1], "FP32", [1])]},
      "headers": {"Inference-Header-Content-Length": "10"}}, "binary tensor data"),
])
def test_v2_unreadable_bodies_are_400(serve_handler, kwargs, fragment):
    served = serve_handler(RECORDER)
    assert fragment in error(served.client.post("/v2/models/m/infer", **kwargs), 400)


def test_v2_handler_faults_keep_the_error_shape(serve_handler):
    c = serve_handler(RECORDER).client
    r = c.post("/v2/models/m/infer", json={"inputs": [v2("t", [2], "BYTES", ["ok", "boom"])]})
    assert "row 1" in error(r, 400) and "boom requested" in error(r, 400)
    r = c.post("/v2/models/m/infer", json={"inputs": [v2("t", [1], "BYTES", ["crash"])]})
    assert "ZeroDivisionError" in error(r, 500)
    assert c.get("/v2/health/ready").status_code == 200


def test_v2_results_of_different_shapes_come_back_as_json_text(serve_handler):
    c = serve_handler(RAGGED).client
    r = c.post("/v2/models/m/infer", json={"inputs": [v2("n", [3], "INT64", [1, 2, 3])]})
    assert r.get_json()["outputs"] == [{"name": "output-0", "shape": [3], "datatype": "BYTES",
                                        "data": ["[1]", "[1,1]", "[1,1,1]"]}]


def test_v2_too_large_body_keeps_the_v2_error_shape(serve_handler):
    c = serve_handler(RECORDER, env={"MKSERVE_MAX_REQUEST_SIZE": "100"}).client
    r = c.post("/v2/models/m/infer", json={"inputs": [v2("x", [50], "FP32", [1.0] * 50)]})
    assert "MKSERVE_MAX_REQUEST_SIZE" in error(r, 413)


def test_not_ready_answers_503_on_every_kserve_probe_and_infer(serve_handler):
    code = ("class H:\n    def initialize(self, ctx):\n"
            "        raise RuntimeError('weights corrupt')\n"
            "    def handle(self, d, c):\n        return d\n")
    served = serve_handler(code, wait=False)
    deadline = time.monotonic() + 5
    while not served.failures and time.monotonic() < deadline:
        time.sleep(0.01)
    c = served.client
    r = c.get("/v1/models/m")
    assert "weights corrupt" in error(r, 503) and r.get_json()["ready"] is False
    assert error(c.get("/v2/health/ready"), 503)
    r = c.get("/v2/models/m/ready")
    assert error(r, 503) and r.get_json() == {"name": "m", "ready": False,
                                              "error": r.get_json()["error"]}
    assert c.get("/v2/health/live").status_code == 200
    assert c.get("/v2/models/m").status_code == 200  # metadata needs no loaded model
    assert error(c.post("/v1/models/m:predict", json={"instances": [1]}), 503)
    r = c.post("/v2/models/m/infer", json={"inputs": [v2("x", [1], "FP32", [1])]})
    assert error(r, 503) and r.headers["Retry-After"] == "1"


def test_kserve_requests_are_counted_in_metrics(serve_handler):
    served = serve_handler(RECORDER)
    served.client.post("/v1/models/m:predict", json={"instances": [1, 2, 3]})
    served.client.post("/v2/models/m/infer", json={"inputs": [v2("x", [2], "FP32", [1, 2])]})
    labels = {"model_name": "m", "model_version": "1.0"}
    assert served.registry.get_sample_value("ts_inference_requests_total", labels) == 2


# -- the built-in base_handler behind V2 ---------------------------------------

class _Served:
    def __init__(self, service: ModelService, metrics: Metrics) -> None:
        self.service = service
        self.client = create_app(service, metrics, access_log=False).test_client()


@pytest.fixture
def base_handler_model(tmp_path: Path) -> Iterator[tuple[_Served, torch.nn.Module]]:
    """A plain folder: a TorchScript model.pt served by the built-in base_handler."""
    model = Linear3().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchServe archives are scripted
        torch.jit.script(model).save(str(tmp_path / "model.pt"))
    (tmp_path / "mkserve.yaml").write_text("modelName: tiny\nhandler: base_handler\n"
                                           "serializedFile: model.pt\n")
    source = open_source(tmp_path)
    metrics = Metrics(source.name, source.version, registry=CollectorRegistry())
    service = ModelService(source, resolve({"MKSERVE_BATCH_SIZE": "8"}, source.model_config),
                           None, metrics)
    served = _Served(service, metrics)
    service.start()
    deadline = time.monotonic() + 30
    while not service.ready:
        assert time.monotonic() < deadline and service.state != "failed", service.reason
        time.sleep(0.01)
    yield served, model
    service.stop(1)


def test_base_handler_with_torchscript_model_behind_v2(base_handler_model):
    served, model = base_handler_model
    x = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [-1.0, 0.0, 0.5]]
    with torch.no_grad():
        wanted = model(torch.tensor(x))
    r = served.client.post("/v2/models/tiny/infer", json={"id": "t1", "inputs": [
        v2("input-0", [3, 3], "FP32", flatten(x))]})
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert body["id"] == "t1" and body["model_name"] == "tiny"
    (out,) = body["outputs"]
    assert out["shape"] == [3, 2] and out["datatype"] == "FP32"
    torch.testing.assert_close(torch.tensor(out["data"]).reshape(3, 2), wanted)
    r = served.client.post("/v1/models/tiny:predict", json={"instances": x})
    torch.testing.assert_close(torch.tensor(r.get_json()["predictions"]), wanted)
    r = served.client.post("/v2/models/tiny/infer", json={"inputs": [
        v2("input-0", [1, 2], "FP32", [1, 2])]})
    assert "shape" in error(r, 400)  # the model's own shape error is the input's fault


# -- the tensor mapping as pure functions -------------------------------------

def test_output_tensor_infers_datatype_and_shape():
    assert output_tensor("o", [1, 2]) == {"name": "o", "shape": [2], "datatype": "INT64",
                                          "data": [1, 2]}
    assert output_tensor("o", [[True], [False]])["datatype"] == "BOOL"
    assert output_tensor("o", [1, 2.5])["data"] == [1.0, 2.5]
    assert output_tensor("o", [[], []]) == {"name": "o", "shape": [2, 0], "datatype": "FP32",
                                            "data": []}
    ragged = output_tensor("o", [[[1, 2], [3]], [[1, 2], [3, 4]]])
    assert ragged["datatype"] == "BYTES" and ragged["data"][0] == "[[1,2],[3]]"
    assert output_tensor("o", [None, 1])["data"] == ["null", "1"]
    assert output_tensor("o", [2**70])["datatype"] == "BYTES"
    assert output_tensor("o", [2**2000, 0.5])["datatype"] == "BYTES"  # beyond float range


def test_build_outputs_from_dicts_and_tensors():
    results = [{"label": "cat", "p": torch.tensor([0.25, 0.75])},
               {"p": torch.tensor([0.5, 0.5]), "label": "dog"}]
    outputs = build_outputs(results, None)
    assert outputs == [{"name": "label", "shape": [2], "datatype": "BYTES",
                        "data": ["cat", "dog"]},
                       {"name": "p", "shape": [2, 2], "datatype": "FP32",
                        "data": [0.25, 0.75, 0.5, 0.5]}]
    mixed = build_outputs([{"a": 1}, {"b": 2}], None)  # different keys: one JSON output
    assert mixed[0]["datatype"] == "BYTES" and mixed[0]["data"] == ['{"a":1}', '{"b":2}']


def test_flatten_keeps_row_major_order_and_survives_deep_nesting():
    assert flatten([[1, 2], [3, 4]]) == [1, 2, 3, 4]
    assert flatten([1, [2, [3, 4]], [], 5]) == [1, 2, 3, 4, 5]  # mixed nesting
    assert flatten(7) == [7]
    deep: Any = [1]
    for _ in range(100_000):
        deep = [deep]
    assert flatten(deep) == [1]


EXPLAINER = """
class Explainer:
    def initialize(self, context):
        self.context = context

    def handle(self, data, context):
        flag = context.get_request_header(0, "explain")
        return [{"explain": flag, "body": row.get("body")} for row in data]
"""


def test_explain_routes_reach_the_handler_with_the_explain_header(serve_handler):
    served = serve_handler(EXPLAINER)
    c = served.client
    v1 = c.post("/v1/models/m:explain", json={"instances": [1, 2]})
    assert v1.status_code == 200
    assert v1.get_json() == {"explanations": [{"explain": "True", "body": 1},
                                              {"explain": "True", "body": 2}]}
    predicted = c.post("/v1/models/m:predict", json={"instances": [3]}).get_json()
    assert predicted == {"predictions": [{"explain": None, "body": 3}]}
    v2_answer = c.post("/v2/models/m/explain", json={"inputs": [v2("x", [1], "FP32", [1.5])]})
    assert v2_answer.status_code == 200, v2_answer.data
    assert "True" in json.dumps(v2_answer.get_json()["outputs"])
    assert error(c.post("/v1/models/other:explain", json={"instances": [1]}), 404)
