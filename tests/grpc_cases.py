"""gRPC calls to TorchServe's InferenceAPIsService, sent to a real TorchServe 0.12 once to
record its answers (tests/recorded/record_torchserve_grpc.py ->
tests/recorded/torchserve-grpc-answers.json) and to mkserve in the tests, which compare.

`client(pb, pb_grpc, port)` sends every call of a case with whichever generated stubs it
is given: the recorder generates them from TorchServe's own inference.proto (out of its
jar), the tests use mkserve's, so the comparison also shows the two are one wire format.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FEATURES = json.dumps({"features": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}).encode()


@dataclass(frozen=True)
class GrpcCall:
    rpc: str  # Ping, Predictions or StreamPredictions
    model: str = "{name}"
    input: dict[str, bytes] = field(default_factory=dict)
    version: str = ""


@dataclass(frozen=True)
class GrpcCase:
    name: str
    archive: str  # "classifier:VARIANT" (archives.make_archive) or a ts_handlers case name
    calls: tuple[GrpcCall, ...]


def build_archive(case: GrpcCase, work: Path) -> tuple[Path, str]:
    """The case's archive and its model name."""
    from archives import VARIANTS, make_archive
    from ts_handlers import CASES, archive_case

    if case.archive.startswith("classifier:"):
        variant = case.archive.split(":", 1)[1]
        return make_archive("classifier", work, variant=variant), \
            VARIANTS[("classifier", variant)].model_name
    handler_case = next(c for c in CASES if c.name == case.archive)
    return archive_case(handler_case, work / handler_case.name), handler_case.name


GRPC_CASES = (
    GrpcCase("classifier", "classifier:custom", (
        GrpcCall("Ping"),
        GrpcCall("Predictions", input={"data": FEATURES}),
        GrpcCall("Predictions", input={"body": FEATURES}),
        GrpcCall("Predictions", version="1.0", input={"body": FEATURES}),
        GrpcCall("Predictions", model="nope", input={"data": FEATURES}),
        GrpcCall("Predictions", version="9.9", input={"data": FEATURES}),
        GrpcCall("Predictions", input={"body": b'{"features": "x"}'}),
    )),
    GrpcCase("batch", "classifier:batch8", (
        GrpcCall("Predictions", input={"body": FEATURES}),
        GrpcCall("StreamPredictions", input={"body": FEATURES}),
        GrpcCall("Predictions", input={"body": FEATURES, "extra": b"1"}),
    )),
    GrpcCase("streaming", "streaming", (
        GrpcCall("StreamPredictions", input={"data": b'"hi"'}),
        GrpcCall("Predictions", input={"data": b'"hi"'}),
    )),
)


def send(pb: Any, pb_grpc: Any, port: int, name: str, call: GrpcCall) -> dict[str, Any]:
    """One call's answer: its status code name, details and the responses' bytes as text."""
    import grpc
    from google.protobuf import empty_pb2

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.InferenceAPIsServiceStub(channel)
        request = pb.PredictionsRequest(model_name=call.model.format(name=name),
                                        model_version=call.version, input=call.input)
        responses: list[str] = []
        try:
            if call.rpc == "Ping":
                responses.append(stub.Ping(empty_pb2.Empty(), timeout=30).health)
            elif call.rpc == "Predictions":
                answer = stub.Predictions(request, timeout=30)
                responses.append(answer.prediction.decode(errors="replace"))
            else:
                for answer in stub.StreamPredictions(request, timeout=30):
                    responses.append(answer.prediction.decode(errors="replace"))
        except grpc.RpcError as error:
            return {"code": error.code().name, "details": error.details(),
                    "responses": responses}
    return {"code": "OK", "details": "", "responses": responses}
