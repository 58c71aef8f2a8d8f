"""gRPC on MKSERVE_GRPC_PORT, against real `mkserve serve` process trees.

TorchServe's InferenceAPIsService is compared with answers recorded from a real
TorchServe 0.12 (tests/recorded/torchserve-grpc-answers.json, made by
tests/recorded/record_torchserve_grpc.py with stubs from TorchServe's own
inference.proto); KServe's GRPCInferenceService with mkserve's own REST V2 route.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import signal
import struct
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_cases import GRPC_CASES, GrpcCase, build_archive, send
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mkserve.runtime.rpc import stubs
from server import Server, free_port, plain_model

pytestmark = pytest.mark.slow

RECORDED = json.loads((Path(__file__).parent.parent / "recorded" /
                       "torchserve-grpc-answers.json").read_text())
STUBS = stubs.load()
TS, TS_GRPC = STUBS["torchserve_inference_pb2"], STUBS["torchserve_inference_pb2_grpc"]
V2, V2_GRPC = STUBS["open_inference_pb2"], STUBS["open_inference_pb2_grpc"]

# Where mkserve answers with another status than TorchServe 0.12 (README, "What differs"),
# by the first line of TorchServe's details: the statuses the gRPC issue specifies.
OTHER_STATUS = {
    "Model not found": {"NOT_FOUND"},  # TorchServe: INTERNAL
    "Model version": {"NOT_FOUND"},  # TorchServe: INTERNAL
    "Prediction failed": {"INVALID_ARGUMENT", "INTERNAL"},  # TorchServe: UNAVAILABLE
}


def grpc_server(source: Path, work: Path, *args: str) -> tuple[Server, int]:
    port = free_port()
    server = Server(source, work, args=("--grpc-port", str(port), *args)).wait_ready()
    return server, port


def same(ours: str, theirs: str) -> bool:
    try:
        return bool(json.loads(ours) == json.loads(theirs))
    except ValueError:
        return ours == theirs


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    started: dict[str, tuple[Server, int, str]] = {}
    work = tmp_path_factory.mktemp("grpc-answers")

    def serve(case: GrpcCase) -> tuple[Server, int, str]:
        if case.name not in started:
            archive, model = build_archive(case, work / case.name)
            server, port = grpc_server(archive, work, "--workers", "1")
            started[case.name] = (server, port, model)
        return started[case.name]

    yield serve
    for server, _, _ in started.values():
        server.terminate()


@pytest.mark.parametrize("case", GRPC_CASES, ids=[c.name for c in GRPC_CASES])
def test_torchserve_grpc_clients_get_torchserve_answers(case: GrpcCase, served: Any) -> None:
    server, port, model = served(case)
    for call, theirs in zip(case.calls, RECORDED[case.name], strict=True):
        ours = send(TS, TS_GRPC, port, model, call)
        assert len(ours["responses"]) == len(theirs["responses"]), (call, ours, theirs)
        for mine, recorded in zip(ours["responses"], theirs["responses"], strict=True):
            assert same(mine, recorded), (call, mine, recorded)
        first_line = theirs["details"].split("\n", 1)[0]
        if theirs["code"] == "OK" or first_line == "Worker died.":
            # TorchServe ends a stream from a non-streaming handler with INTERNAL after the
            # answer; mkserve ends it cleanly.
            assert ours["code"] == "OK", (call, ours, server.log()[-2000:])
            continue
        kind = next(k for k in OTHER_STATUS if first_line.startswith(k))
        assert ours["code"] in OTHER_STATUS[kind], (call, ours, theirs)
        assert first_line in ours["details"], (call, ours, theirs)


def test_streamed_parts_arrive_as_they_are_made(served: Any) -> None:
    case = next(c for c in GRPC_CASES if c.name == "streaming")
    _, port, model = served(case)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = TS_GRPC.InferenceAPIsServiceStub(channel)
        times = []
        for _ in stub.StreamPredictions(TS.PredictionsRequest(
                model_name=model, input={"data": b'"hi"'}), timeout=30):
            times.append(time.monotonic())
    assert len(times) == 4
    assert all(later - earlier > 0.25 for earlier, later in itertools.pairwise(times))


DOUBLE = '''
import itertools
import json


def handle(data, context):
    if data is None:
        return None
    out = []
    for row in data:
        body = row.get("body")
        if isinstance(body, (bytes, bytearray)):  # over gRPC's Predictions
            body = json.loads(body)
        if isinstance(body, dict) and body.get("fail"):
            raise RuntimeError("the handler gave up at /secret/path")
        out.append([v * 2 for v in body] if isinstance(body, list) else body)
    return out
'''


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


def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as failure:
        call()
    return failure.value.code(), failure.value.details()


def test_errors_are_grpc_statuses_without_tracebacks(doubling: Any) -> None:
    server, port = doubling
    channel, stub = _v2(port)
    with channel:
        tensor = V2.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2])
        code, details = _code(lambda: stub.ModelInfer(V2.ModelInferRequest(
            model_name="plain", inputs=[tensor], raw_input_contents=[b"\0" * 7])))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "7 raw bytes" in details
        code, _ = _code(lambda: stub.ModelInfer(V2.ModelInferRequest(
            model_name="other", inputs=[tensor], raw_input_contents=[b"\0" * 8])))
        assert code == grpc.StatusCode.NOT_FOUND
        ts = TS_GRPC.InferenceAPIsServiceStub(channel)
        code, details = _code(lambda: ts.Predictions(TS.PredictionsRequest(
            model_name="plain", input={"body": b'{"fail": true}'})))
        assert code == grpc.StatusCode.INTERNAL
        assert details.startswith("Prediction failed")
        assert "/secret/path" not in details and "Traceback" not in details
        code, _ = _code(lambda: ts.Predictions(TS.PredictionsRequest(model_name="plain")))
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


SLOW = '''
import itertools
import json
import os
import time


def handle(data, context):
    if data is None:
        return None
    out = []
    for row in data:
        body = json.loads(row.get("body"))
        with open(os.environ["RAN_FILE"], "a") as ran:
            ran.write(f"{body.get('id')}\\n")
        time.sleep(body.get("sleep", 0))
        out.append({"id": body.get("id")})
    return out
'''


@pytest.fixture()
def slow(tmp_path: Path) -> Any:
    ran = tmp_path / "ran.txt"
    ran.write_text("")
    port = free_port()
    server = Server(plain_model(tmp_path / "model", SLOW), tmp_path,
                    env={"RAN_FILE": str(ran), "MKSERVE_GRACEFUL_TIMEOUT": "10"},
                    args=("--grpc-port", str(port), "--workers", "1", "--batch-size", "1",
                          "--queue-size", "2")).wait_ready()
    yield server, port, ran
    server.terminate()


def _predict(stub: Any, body: dict[str, Any], timeout: float = 30) -> Any:
    return stub.Predictions(TS.PredictionsRequest(
        model_name="plain", input={"body": json.dumps(body).encode()}), timeout=timeout)


def test_a_deadline_shorter_than_the_wait_is_deadline_exceeded_and_never_runs(slow: Any,
                                                                              ) -> None:
    _, port, ran = slow
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = TS_GRPC.InferenceAPIsServiceStub(channel)
        busy = stub.Predictions.future(TS.PredictionsRequest(
            model_name="plain", input={"body": b'{"id": "busy", "sleep": 1.0}'}), timeout=30)
        time.sleep(0.3)  # the model is busy with "busy" now
        code, _ = _code(lambda: _predict(stub, {"id": "late"}, timeout=0.2))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert json.loads(busy.result().prediction) == {"id": "busy"}
        _predict(stub, {"id": "after"})
    assert ran.read_text().split() == ["busy", "after"]  # "late" never ran


def test_a_full_queue_is_unavailable(slow: Any) -> None:
    _, port, _ = slow
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = TS_GRPC.InferenceAPIsServiceStub(channel)
        calls = [stub.Predictions.future(TS.PredictionsRequest(
            model_name="plain", input={"body": json.dumps({"id": i, "sleep": 0.5}).encode()}),
            timeout=30) for i in range(5)]
        codes = []
        for call in calls:
            try:
                call.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())
    assert grpc.StatusCode.UNAVAILABLE in codes and grpc.StatusCode.OK in codes


def test_sigterm_under_grpc_load_loses_no_accepted_call(slow: Any) -> None:
    server, port, ran = slow
    results: list[Any] = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = TS_GRPC.InferenceAPIsServiceStub(channel)
        calls = [stub.Predictions.future(TS.PredictionsRequest(
            model_name="plain", input={"body": json.dumps({"id": i, "sleep": 0.4}).encode()}),
            timeout=30) for i in range(3)]
        time.sleep(0.2)
        os.kill(server.proc.pid, signal.SIGTERM)
        for call in calls:
            try:
                results.append(json.loads(call.result().prediction)["id"])
            except grpc.RpcError as error:
                results.append(error.code())
    # Each call was queued (the queue holds 2 behind the running one) before SIGTERM:
    # every one is answered, none dropped.
    assert results == [0, 1, 2], (results, server.log()[-3000:])
    assert server.proc.wait(20) == 0
    assert sorted(ran.read_text().split()) == ["0", "1", "2"]


def test_with_the_setting_off_no_grpc_is_loaded(tmp_path: Path) -> None:
    with Server(plain_model(tmp_path / "model", DOUBLE), tmp_path,
                args=("--workers", "1")) as server:
        server.wait_ready()
        pids = [server.proc.pid, *_children(server.proc.pid)]
        for pid in pids:
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "cygrpc" not in maps, pid  # grpcio's core library was never loaded
        listening = _listening_ports(pids)
        assert listening == {server.port}, listening
        server.terminate()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found += [child, *_children(child)]
    return found


def _listening_ports(pids: list[int]) -> set[int]:
    """TCP ports in LISTEN state whose socket belongs to one of the processes."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            match = re.fullmatch(r"socket:\[(\d+)\]", target)
            if match:
                inodes.add(match.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports



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


def test_grpc_first_serves_grpc_on_port_and_http_beside_it(tmp_path: Path) -> None:
    """MKSERVE_PROTOCOL=grpc (Knative's and Cloud Run's h2c port): PORT is gRPC's,
    the HTTP APIs, probes and /metrics answer on MKSERVE_HTTP_PORT."""
    http_port = free_port()
    with Server(plain_model(tmp_path / "model", DOUBLE), tmp_path,
                env={"MKSERVE_HTTP_PORT": str(http_port)},
                args=("--protocol", "grpc", "--workers", "1")) as server:
        server.url = f"http://127.0.0.1:{http_port}"
        server.wait_ready()
        assert server.post("/predictions/plain", json=[2]).json() == [4]
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            answer = TS_GRPC.InferenceAPIsServiceStub(channel).Predictions(
                TS.PredictionsRequest(model_name="plain", input={"body": b"[3]"}), timeout=10)
            assert json.loads(answer.prediction) == [6]
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        server.terminate()


SLOW_LOAD = '''
import time

time.sleep(4)  # a model that takes a while to load


def handle(data, context):
    return None if data is None else [1 for _ in data]
'''


def test_while_loading_calls_are_unavailable_and_health_not_serving(tmp_path: Path) -> None:
    port = free_port()
    with Server(plain_model(tmp_path / "model", SLOW_LOAD), tmp_path,
                args=("--grpc-port", str(port), "--workers", "1")) as server:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert server.get("/readyz").status_code == 503
            code, details = _code(lambda: _predict(
                TS_GRPC.InferenceAPIsServiceStub(channel), {"id": 1}, timeout=5))
            assert code == grpc.StatusCode.UNAVAILABLE and "loading" in details
        server.wait_ready()
        server.terminate()
