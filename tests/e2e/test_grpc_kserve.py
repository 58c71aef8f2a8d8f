"""KServe's inference.GRPCInferenceService on MKSERVE_GRPC_PORT, against a real `mkserve
serve`, compared with mkserve's own REST V2 route; statuses, health, access lines and
metrics of gRPC calls."""
from __future__ import annotations

import json
import struct
import time
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_support import DOUBLE, TS, TS_GRPC, V2, V2_GRPC, call_code, grpc_server
from server import plain_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def doubling(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("grpc-v2")
    server, port = grpc_server(plain_model(work / "model", DOUBLE), work, "--workers", "1")
    yield server, port
    server.terminate()


def _v2(port: int) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return channel, V2_GRPC.GRPCInferenceServiceStub(channel)


def test_every_open_inference_rpc_answers(doubling: Any) -> None:
    server, port = doubling
    channel, stub = _v2(port)
    with channel:
        assert stub.ServerLive(V2.ServerLiveRequest()).live is True
        assert stub.ServerReady(V2.ServerReadyRequest()).ready is True
        assert stub.ModelReady(V2.ModelReadyRequest(name="plain")).ready is True
        metadata = stub.ServerMetadata(V2.ServerMetadataRequest())
        assert metadata.name == server.get("/v2").json()["name"]
        model = stub.ModelMetadata(V2.ModelMetadataRequest(name="plain"))
        rest = server.get("/v2/models/plain").json()
        assert (model.name, list(model.versions), model.platform) == \
            (rest["name"], rest["versions"], rest["platform"])
        with pytest.raises(grpc.RpcError) as missing:
            stub.ModelReady(V2.ModelReadyRequest(name="other"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("datatype", "code", "values"), [
    ("FP32", "f", [0.5, 1.5, -2.0, 4.0, 8.25, 3.0]),
    ("INT64", "q", [1, -2, 3, 2**40, 5, 6]),
])
def test_model_infer_with_raw_tensors_answers_as_the_rest_route(
        doubling: Any, datatype: str, code: str, values: list[Any]) -> None:
    server, port = doubling
    rest = server.post("/v2/models/plain/infer", json={"id": "r1", "inputs": [
        {"name": "x", "shape": [2, 3], "datatype": datatype, "data": values}]}).json()
    channel, stub = _v2(port)
    with channel:
        raw = stub.ModelInfer(V2.ModelInferRequest(
            model_name="plain", id="r1",
            inputs=[V2.ModelInferRequest.InferInputTensor(name="x", datatype=datatype,
                                                          shape=[2, 3])],
            raw_input_contents=[struct.pack(f"<6{code}", *values)]), timeout=10)
    assert raw.id == "r1" and raw.model_name == "plain"
    [tensor] = raw.outputs
    [expected] = rest["outputs"]
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == \
        (expected["name"], expected["datatype"], expected["shape"])
    count = len(expected["data"])
    decoded = list(struct.unpack(f"<{count}{code}", raw.raw_output_contents[0]))
    assert decoded == expected["data"] == [v * 2 for v in values]


def test_model_infer_with_typed_contents(doubling: Any) -> None:
    _, port = doubling
    channel, stub = _v2(port)
    with channel:
        answer = stub.ModelInfer(V2.ModelInferRequest(model_name="plain", inputs=[
            V2.ModelInferRequest.InferInputTensor(
                name="x", datatype="INT32", shape=[1, 2],
                contents=V2.InferTensorContents(int_contents=[3, 4]))]), timeout=10)
    assert not answer.raw_output_contents
    assert list(answer.outputs[0].contents.int64_contents) == [6, 8]


def test_errors_are_grpc_statuses_without_tracebacks(doubling: Any) -> None:
    server, port = doubling
    channel, stub = _v2(port)
    with channel:
        tensor = V2.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2])
        code, details = call_code(lambda: stub.ModelInfer(V2.ModelInferRequest(
            model_name="plain", inputs=[tensor], raw_input_contents=[b"\0" * 7])))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "7 raw bytes" in details
        code, _ = call_code(lambda: stub.ModelInfer(V2.ModelInferRequest(
            model_name="other", inputs=[tensor], raw_input_contents=[b"\0" * 8])))
        assert code == grpc.StatusCode.NOT_FOUND
        ts = TS_GRPC.InferenceAPIsServiceStub(channel)
        code, details = call_code(lambda: ts.Predictions(TS.PredictionsRequest(
            model_name="plain", input={"body": b'{"fail": true}'})))
        assert code == grpc.StatusCode.INTERNAL
        assert details.startswith("Prediction failed")
        assert "/secret/path" not in details and "Traceback" not in details
        code, _ = call_code(lambda: ts.Predictions(TS.PredictionsRequest(model_name="plain")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert server.post("/predictions/plain", json=[1]).status_code == 200  # still serving


def test_health_follows_readiness(doubling: Any) -> None:
    _, port = doubling
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService",
                        "org.pytorch.serve.grpc.inference.InferenceAPIsService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        ping = TS_GRPC.InferenceAPIsServiceStub(channel).Ping(empty_pb2.Empty(), timeout=5)
        assert json.loads(ping.health) == {"status": "Healthy"}


def test_grpc_calls_are_logged_and_counted_with_their_protocol(doubling: Any) -> None:
    server, port = doubling
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = TS_GRPC.InferenceAPIsServiceStub(channel)
        stub.Predictions(TS.PredictionsRequest(model_name="plain", input={"body": b"[1]"}),
                         metadata=(("x-request-id", "grpc-call-1"),), timeout=10)
    metrics = server.get("/metrics").text
    counted = [line for line in metrics.splitlines()
               if line.startswith("mkserve_responses_total{") and 'protocol="grpc"' in line]
    assert counted and 'status="200"' in counted[0], metrics
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in server.log().splitlines()
                 if line.startswith("{") and "grpc-call-1" in line]
        if lines:
            break
        time.sleep(0.1)
    [line] = lines
    assert line["message"] == \
        "GRPC /org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions OK"
    assert line["status"] == "OK" and line["duration_ms"] >= 0


def test_the_benchmarks_grpc_load_drives_a_server(doubling: Any) -> None:
    from mkserve.bench.grpcload import run_grpc

    _, port = doubling
    result = run_grpc(port, "plain", b"[1, 2]", connections=3, duration=1.0)
    assert result.requests > 0 and result.non_2xx == 0
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
