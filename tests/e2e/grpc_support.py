"""Test support for the gRPC tests: mkserve's generated stubs, a served handler."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from mkserve.runtime.rpc import stubs
from server import Server, free_port

STUBS = stubs.load()
TS, TS_GRPC = STUBS["torchserve_inference_pb2"], STUBS["torchserve_inference_pb2_grpc"]
V2, V2_GRPC = STUBS["open_inference_pb2"], STUBS["open_inference_pb2_grpc"]

# Doubles a JSON list (REST, V2 rows, or gRPC's bytes); {"fail": true} raises.
DOUBLE = '''
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



def grpc_server(source: Path, work: Path, *args: str) -> tuple[Server, int]:
    port = free_port()
    server = Server(source, work, args=("--grpc-port", str(port), *args)).wait_ready()
    return server, port


def call_code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as failure:
        call()
    return failure.value.code(), failure.value.details()


def predict(stub: Any, body: dict[str, Any], timeout: float = 30) -> Any:
    return stub.Predictions(TS.PredictionsRequest(
        model_name="plain", input={"body": json.dumps(body).encode()}), timeout=timeout)
