"""`JSONEnvelope`: TensorFlow Serving-style `{"instances": [...]}` requests; every request's
instances join one batch, and each request is answered `{"predictions": [...]}`."""
from __future__ import annotations

import base64
import json
from typing import Any

from mkserve.runtime.ts.torch_handler.request_envelope.base import BaseEnvelope


def _decode_b64(value: Any) -> Any:
    if isinstance(value, dict) and list(value) == ["b64"]:
        return base64.b64decode(value["b64"])
    return value


class JSONEnvelope(BaseEnvelope):
    def __init__(self, handle_fn: Any) -> None:
        super().__init__(handle_fn)
        self._lengths: list[int] = []

    def parse_input(self, data: list[Any]) -> list[Any]:
        batches = [self._from_json(row) for row in data]
        self._lengths = [len(b) for b in batches]
        return [instance for batch in batches for instance in batch]

    def _from_json(self, row: Any) -> list[Any]:
        body = row.get("data") or row.get("body") or row if isinstance(row, dict) else row
        if isinstance(body, (bytes, bytearray)):
            body = json.loads(body.decode("utf-8"))
        instances = list(body["instances"])
        for i, instance in enumerate(instances):
            if isinstance(instance, dict) and list(instance) == ["b64"]:
                instances[i] = _decode_b64(instance)
            elif isinstance(instance, dict):
                instances[i] = {k: _decode_b64(v) for k, v in instance.items()}
        return instances

    def format_output(self, data: Any) -> list[str]:
        outputs, cursor = [], 0
        for length in self._lengths:
            outputs.append(json.dumps({"predictions": list(data[cursor:cursor + length])}))
            cursor += length
        return outputs
