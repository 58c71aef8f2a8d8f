"""`KServev2Envelope`: the Open Inference Protocol (KServe V2). The handler gets the
request's `inputs`, each a named tensor whose `data` is nested to its `shape` (BYTES
inputs: their first element); the answer has one output per entry of the handler's
result, named after the input at the same position."""
from __future__ import annotations

from typing import Any

import numpy as np
from mkserve.runtime.ts.torch_handler.request_envelope.base import BaseEnvelope, body_of

DATATYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
             "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32",
             "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64",
             "BYTES": "byte"}
_BY_DTYPE = {v: k for k, v in DATATYPES.items()} | {"object": "BYTES", "U": "BYTES"}


def datatype_of(dtype: np.dtype) -> str:
    return _BY_DTYPE.get(str(dtype)) or _BY_DTYPE[dtype.kind]


class KServev2Envelope(BaseEnvelope):
    def __init__(self, handle_fn: Any) -> None:
        super().__init__(handle_fn)
        self._names: list[str] = []
        self._request_id: str | None = None

    def parse_input(self, data: list[Any]) -> list[dict[str, Any]]:
        body = body_of(data[0])
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise ValueError(  # noqa: TRY004 - a bad request body, answered 400
                'a KServe V2 request is a JSON object {"inputs": [...]}')
        inputs = []
        for tensor in body["inputs"]:
            tensor = dict(tensor)
            if tensor.get("datatype") == "BYTES":
                tensor["data"] = tensor["data"][0]
            else:
                tensor["data"] = np.array(tensor["data"]).reshape(
                    tuple(tensor["shape"])).tolist()
            inputs.append(tensor)
        self._names = [str(t.get("name", f"input-{i}")) for i, t in enumerate(inputs)]
        request_id = body.get("id")
        self._request_id = request_id if isinstance(request_id, str) and request_id.strip() \
            else None
        return inputs

    def format_output(self, data: Any) -> list[dict[str, Any]]:
        model = ((self.context.manifest or {}).get("model") or {})
        outputs = []
        for index, item in enumerate(data):
            flat = np.array(item).flatten()
            name = self._names[index] if index < len(self._names) else f"output-{index}"
            outputs.append({"name": name, "datatype": datatype_of(flat.dtype),
                            "data": flat.tolist(), "shape": list(flat.shape)})
        return [{"id": self._request_id or self.context.get_request_id(0),
                 "model_name": model.get("modelName"), "model_version": model.get("modelVersion"),
                 "outputs": outputs}]
