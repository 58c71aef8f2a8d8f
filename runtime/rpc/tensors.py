"""Open Inference Protocol tensors between protobuf and the V2 JSON shape.

ModelInfer requests become the dict that POST /v2/models/{m}/infer would have
parsed (so kserve_v2 validates and splits them the same way), and the answer's
output tensors go back as typed contents or, when the request sent raw binary
tensors, as `raw_output_contents` (little-endian, row-major; BYTES elements each
with a 4-byte length in front), as the protocol lays them out.
"""
from __future__ import annotations

import math
import struct
from typing import Any

from ..errors import BadRequest

# struct codes of the fixed-size datatypes, little-endian.
CODES = {"BOOL": "?", "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q", "UINT8": "B",
         "UINT16": "H", "UINT32": "I", "UINT64": "Q", "FP16": "e", "FP32": "f", "FP64": "d"}
# The InferTensorContents field of each datatype (FP16 has none: raw only).
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents",
            "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
            "BYTES": "bytes_contents"}


def parameters(proto_map: Any) -> dict[str, Any] | None:
    """An InferParameter map as plain values (None when empty)."""
    out = {}
    for key, parameter in proto_map.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            out[key] = getattr(parameter, choice)
    return out or None


def set_parameters(proto_map: Any, values: dict[str, Any] | None) -> None:
    for key, value in (values or {}).items():
        if isinstance(value, bool):
            proto_map[key].bool_param = value
        elif isinstance(value, int):
            proto_map[key].int64_param = value
        else:
            proto_map[key].string_param = str(value)


def request_body(request: Any) -> dict[str, Any]:
    """A ModelInferRequest as the V2 JSON body kserve_v2.parse_request reads."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for "
                         f"{len(request.inputs)} inputs; send one per input or none")
    inputs = []
    for index, tensor in enumerate(request.inputs):
        datatype = tensor.datatype
        shape = list(tensor.shape)
        if raw:
            data = decode_raw(raw[index], datatype, shape, tensor.name)
        elif datatype in CONTENTS:
            data = list(getattr(tensor.contents, CONTENTS[datatype]))
        else:
            raise BadRequest(f"input {tensor.name!r}: datatype {datatype!r} has no typed "
                             "contents; send it in raw_input_contents")
        if datatype == "BYTES":
            data = [_text(item, tensor.name) for item in data]
        entry: dict[str, Any] = {"name": tensor.name, "shape": shape, "datatype": datatype,
                                 "data": data}
        if tensor.parameters:
            entry["parameters"] = parameters(tensor.parameters)
        inputs.append(entry)
    body: dict[str, Any] = {"inputs": inputs}
    if request.id:
        body["id"] = request.id
    if request.parameters:
        body["parameters"] = parameters(request.parameters)
    if request.outputs:
        body["outputs"] = [{"name": o.name} for o in request.outputs]
    return body


def _text(item: bytes, name: str) -> str:
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"input {name!r}: a BYTES element is not UTF-8 text") from None


def decode_raw(raw: bytes, datatype: str, shape: list[int], name: str) -> list[Any]:
    """One raw_input_contents entry as a flat list of elements."""
    if any(d < 0 for d in shape):
        raise BadRequest(f"input {name!r}: shape {shape} has a negative dimension")
    count = math.prod(shape)
    if datatype == "BYTES":
        return _decode_bytes(raw, count, name)
    code = CODES.get(datatype)
    if code is None:
        raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}")
    size = struct.calcsize(code)
    if len(raw) != count * size:
        raise BadRequest(f"input {name!r}: {len(raw)} raw bytes for shape {shape} of "
                         f"{datatype} ({count * size} expected)")
    return list(struct.unpack(f"<{count}{code}", raw))


def _decode_bytes(raw: bytes, count: int, name: str) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise BadRequest(f"input {name!r}: a BYTES element's length is cut short")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise BadRequest(f"input {name!r}: a BYTES element runs past the raw contents")
        items.append(raw[offset:offset + length])
        offset += length
    if len(items) != count:
        raise BadRequest(f"input {name!r}: {len(items)} BYTES elements for {count} expected")
    return items


def encode_raw(data: list[Any], datatype: str) -> bytes:
    """A flat list of elements as one raw_output_contents entry."""
    if datatype == "BYTES":
        chunks = []
        for item in data:
            value = item if isinstance(item, bytes) else str(item).encode()
            chunks.append(struct.pack("<I", len(value)) + value)
        return b"".join(chunks)
    return struct.pack(f"<{len(data)}{CODES[datatype]}", *data)


def fill_response(response: Any, outputs: list[dict[str, Any]], raw: bool) -> None:
    """The V2 JSON output tensors into a ModelInferResponse."""
    for output in outputs:
        tensor = response.outputs.add()
        tensor.name = output["name"]
        datatype = output["datatype"]
        tensor.datatype = datatype
        tensor.shape.extend(output["shape"])
        data = output["data"]
        if raw or datatype not in CONTENTS:
            response.raw_output_contents.append(encode_raw(data, datatype))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                item if isinstance(item, bytes) else str(item).encode() for item in data)
        else:
            getattr(tensor.contents, CONTENTS[datatype]).extend(data)
