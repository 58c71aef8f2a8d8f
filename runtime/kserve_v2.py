"""Open Inference Protocol (KServe V2) tensors: check requests, map them to handler rows and back.

Mapping:
- Every input's first dimension is the batch dimension N, and all inputs must
  agree on it; row i gets the i-th slice of each input as a nested list (a
  plain value when the input is 1-D).
- One input: the row body is that slice, so the built-in base_handler stacks
  the rows into an [N, ...] tensor. Several inputs: the body is
  {input name: slice, ...}, in request order.
- Request "parameters" reach the handler as row["parameters"]; per-input
  parameters as row["input_parameters"] = {input name: parameters}.
- Results: a dict per row becomes one output per key; anything else is one
  output named "output-0" (or the one requested name). Numbers become INT64,
  FP32 or BOOL, strings BYTES, with shape [N, *row shape]. Rows whose results
  are not one rectangular shape of one kind become a BYTES output of shape
  [N] holding each row's result as JSON text, rather than a 500.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from typing import Any

from .codec import dumps
from .errors import BadRequest

INT_RANGES: dict[str, tuple[int, int]] = {
    "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1), "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1), "INT8": (-(2**7), 2**7 - 1), "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1)}
FLOAT_TYPES = ("FP16", "FP32", "FP64")
DATATYPES = ("BOOL", *INT_RANGES, *FLOAT_TYPES, "BYTES")
MAX_DIMS = 64  # torch's limit; also keeps nesting (and our loops) shallow
DEFAULT_OUTPUT = "output-0"


@dataclass(frozen=True)
class Tensor:
    """One validated request input: flat data in row-major order."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class InferRequest:
    """A validated V2 inference request."""

    id: str | None
    parameters: dict[str, Any] | None
    inputs: list[Tensor]
    outputs: list[str] | None  # requested output names, None for "all"


def parse_request(body: Any) -> InferRequest:
    """Check an inference request object; BadRequest names the first problem found."""
    if not isinstance(body, dict):
        raise BadRequest(f"the inference request must be a JSON object, got {_kind(body)}")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"\"id\" must be a string, got {_kind(request_id)}")
    parameters = _parameters(body.get("parameters"), "\"parameters\"")
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("\"inputs\" must be a non-empty list of tensors "
                         "({\"name\", \"shape\", \"datatype\", \"data\"})")
    inputs = [_tensor(raw, index) for index, raw in enumerate(raw_inputs)]
    duplicates = sorted(n for n, count in Counter(t.name for t in inputs).items() if count > 1)
    if duplicates:
        raise BadRequest(f"input names must be unique; repeated: {_some(duplicates)}")
    if len({t.shape[0] for t in inputs}) > 1:
        sizes = _some([f"{t.name} {t.shape[0]}" for t in inputs])
        raise BadRequest("every input's first dimension is the batch size and they must agree; "
                         f"got {sizes}")
    return InferRequest(request_id, parameters, inputs, _requested_outputs(body.get("outputs")))


def _some(items: list[str], limit: int = 8) -> str:
    """A list for an error message, cut short: requests may hold thousands of inputs."""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _parameters(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object of key/value pairs, got {_kind(value)}")
    return value


def _requested_outputs(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) and o["name"] for o in value):
        raise BadRequest("\"outputs\" must be a list of objects with a \"name\" string")
    return [o["name"] for o in value] or None


def _tensor(raw: Any, index: int) -> Tensor:
    if not isinstance(raw, dict):
        raise BadRequest(f"inputs[{index}] must be an object, got {_kind(raw)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{index}] needs a non-empty \"name\" string")
    where = f"input {_short(name)}"
    datatype = raw.get("datatype")
    if datatype not in DATATYPES:
        raise BadRequest(f"{where}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    shape = raw.get("shape")
    if (not isinstance(shape, list) or not shape or len(shape) > MAX_DIMS
            or not all(type(d) is int and d > 0 for d in shape)):
        raise BadRequest(f"{where}: \"shape\" must be a list of 1 to {MAX_DIMS} positive integers "
                         f"whose first is the batch size, got {_short(shape)}")
    if "data" not in raw:
        raise BadRequest(f"{where}: \"data\" is missing")
    data = flatten(raw["data"])
    expected = math.prod(shape)
    if len(data) != expected:
        raise BadRequest(f"{where}: shape {shape} holds {expected} elements but \"data\" has "
                         f"{len(data)}")
    data = _check_elements(data, datatype, where)
    parameters = _parameters(raw.get("parameters"), f"{where}: \"parameters\"")
    return Tensor(name, tuple(shape), datatype, data, parameters)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def flatten(value: Any) -> list[Any]:
    """Nested lists in row-major order, without recursion (nesting depth cannot hurt)."""
    if not isinstance(value, list):
        return [value]
    level = value
    while True:  # whole levels at C speed while every item is a list
        kinds = set(map(type, level))
        if list not in kinds:
            return level if level is not value else list(value)
        if kinds != {list}:
            break
        level = list(chain.from_iterable(level))
    out: list[Any] = []  # mixed nesting: walk it in order
    stack = [iter(level)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _check_elements(data: list[Any], datatype: str, where: str) -> list[Any]:
    """The data if every element fits the datatype (floats for FP types), else BadRequest."""
    kinds = set(map(type, data))  # JSON gives exact types: bool, int, float, str, ...
    if datatype == "BOOL":
        fits, wanted = kinds <= {bool}, "true/false"
    elif datatype == "BYTES":
        fits, wanted = kinds <= {str}, "strings"
    elif datatype in FLOAT_TYPES:
        fits, wanted = kinds <= {int, float}, "numbers"
    else:
        low, high = INT_RANGES[datatype]
        fits = kinds <= {int} and (not data or low <= min(data) and max(data) <= high)
        wanted = f"integers from {low} to {high}"
    if not fits:
        position = next(i for i, x in enumerate(data) if not _fits(x, datatype))
        raise BadRequest(f"{where}: datatype {datatype} needs {wanted}; element {position} is "
                         f"{_short(data[position])}")
    if datatype in FLOAT_TYPES and int in kinds:
        # JSON writes 1.0 as 1; the handler should still see floats for a float tensor.
        try:
            return [float(x) for x in data]
        except OverflowError:
            raise BadRequest(f"{where}: datatype {datatype} holds a number too large for "
                             "a float") from None
    return data


def _fits(x: Any, datatype: str) -> bool:
    if datatype == "BOOL":
        return type(x) is bool
    if datatype == "BYTES":
        return type(x) is str
    if datatype in FLOAT_TYPES:
        return type(x) in (int, float)
    low, high = INT_RANGES[datatype]
    return type(x) is int and low <= x <= high


def to_rows(request: InferRequest) -> list[dict[str, Any]]:
    """One handler row per batch index (see the module docstring for the shape of a row)."""
    count = request.inputs[0].shape[0]
    slices = [_slices(t) for t in request.inputs]
    single = len(request.inputs) == 1
    input_parameters = {t.name: t.parameters for t in request.inputs if t.parameters}
    rows: list[dict[str, Any]] = []
    for i in range(count):
        body = slices[0][i] if single else {
            t.name: per_row[i] for t, per_row in zip(request.inputs, slices, strict=False)}
        row: dict[str, Any] = {"body": body}
        if request.parameters:
            row["parameters"] = request.parameters
        if input_parameters:
            row["input_parameters"] = input_parameters
        rows.append(row)
    return rows


def _slices(tensor: Tensor) -> list[Any]:
    """The tensor cut along its first dimension, each piece nested to shape[1:]."""
    dims = tensor.shape[1:]
    if not dims:
        return list(tensor.data)
    size = math.prod(dims)
    pieces = []
    for start in range(0, len(tensor.data), size):
        value: list[Any] = tensor.data[start:start + size]
        for dim in reversed(dims[1:]):  # group innermost first; dims are positive
            value = [value[j:j + dim] for j in range(0, len(value), dim)]
        pieces.append(value)
    return pieces


def check_output_request(requested: list[str] | None) -> None:
    """Reject what no result could satisfy before running the model."""
    if requested and len(set(requested)) != len(requested):
        raise BadRequest("\"outputs\" names the same output twice")


def build_outputs(results: list[Any], requested: list[str] | None) -> list[dict[str, Any]]:
    """Response output tensors from one result per row."""
    results = [_plain(r) for r in results]
    keys = _common_keys(results)
    if keys is None:
        if requested and len(requested) > 1:
            raise BadRequest(f"the model gives one output per request; \"outputs\" asks for "
                             f"{len(requested)} ({_some(requested)})")
        name = requested[0] if requested else DEFAULT_OUTPUT
        return [output_tensor(name, results)]
    if requested:
        known = set(keys)
        missing = [n for n in requested if n not in known]
        if missing:
            raise BadRequest(f"the model has no output {_some([repr(n) for n in missing])}; "
                             f"its outputs are {_some(keys)}")
        keys = requested
    return [output_tensor(key, [r[key] for r in results]) for key in keys]


def _plain(value: Any) -> Any:
    # Tensors and numpy values become lists and scalars; bytes become text.
    tolist = getattr(value, "tolist", None)
    if tolist is not None and not isinstance(value, (list, tuple, dict, str, bytes)):
        return tolist()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _common_keys(results: list[Any]) -> list[str] | None:
    """The output names when every row's result is a dict with the same keys."""
    if not results or not all(isinstance(r, dict) and r for r in results):
        return None
    keys = list(results[0])
    wanted = set(keys)
    if any(set(r) != wanted for r in results[1:]):
        return None
    return keys


def output_tensor(name: str, rows: list[Any]) -> dict[str, Any]:
    """Stack per-row values into one tensor, or fall back to BYTES of JSON text per row."""
    row_shape = _shape_of(rows[0]) if rows else []
    flat = _flatten_exact(rows, [len(rows), *row_shape]) if row_shape is not None else None
    datatype = _datatype(flat) if flat is not None else None
    if flat is not None and datatype == "FP32" and set(map(type, flat)) != {float}:
        try:
            flat = [float(x) for x in flat]
        except OverflowError:  # an integer beyond float range: keep it exact as JSON text
            datatype = None
    if flat is None or datatype is None:
        return {"name": name, "shape": [len(rows)], "datatype": "BYTES",
                "data": [dumps(row).decode() for row in rows]}
    shape = [len(rows), *(row_shape or [])]  # flat is only set when row_shape is
    return {"name": name, "shape": shape, "datatype": datatype, "data": flat}


def _shape_of(value: Any) -> list[int] | None:
    dims: list[int] = []
    while isinstance(value, (list, tuple)):
        dims.append(len(value))
        if not value or len(dims) > MAX_DIMS:
            return dims if not value else None
        value = value[0]
    return dims


def _flatten_exact(value: Any, dims: list[int]) -> list[Any] | None:
    """Leaves of `value` if it is rectangular with exactly `dims`, else None (level by level)."""
    level = [value]
    for dim in dims:
        if not set(map(type, level)) <= {list, tuple} or set(map(len, level)) - {dim}:
            return None
        level = list(chain.from_iterable(level))
    if set(map(type, level)) & {list, tuple, dict}:
        return None
    return level


def _datatype(flat: list[Any]) -> str | None:
    kinds = set(map(type, flat))
    if not kinds:
        return "FP32"
    if kinds <= {bool}:
        return "BOOL"
    if all(issubclass(k, str) for k in kinds):
        return "BYTES"
    if not all(issubclass(k, (int, float)) and not issubclass(k, bool) for k in kinds):
        return None
    if all(issubclass(k, int) for k in kinds):
        low, high = INT_RANGES["INT64"]
        return "INT64" if low <= min(flat) and max(flat) <= high else None
    return "FP32"
