"""Turn a batch of JSON request rows (numbers or arrays) into one batch tensor."""
from __future__ import annotations

import json
from typing import Any

import torch

# Where JSON clients put the model input (KServe v1, TF serving, sklearn-style, ad hoc).
INPUT_KEYS = ("data", "inputs", "instances", "input", "features", "x")


def row_payload(row: Any) -> Any:
    """The request body of one row, as the built-in handlers read it."""
    if isinstance(row, dict):
        for key in ("data", "body"):
            if row.get(key) is not None:
                return row[key]
    return row


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _decode(value: Any, idx: int) -> Any:
    # A few rounds at most: bytes -> text -> JSON object -> value under its key -> ...
    for _ in range(4):
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"row {idx}: expected JSON numbers or arrays, "
                                 f"got {len(value)} bytes that are not UTF-8 text") from None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(f"row {idx}: expected JSON numbers or arrays, "
                                 f"got text that is not JSON: {_describe(value)}") from None
            if isinstance(value, str):
                # Bad request content, not a programming error: ValueError becomes a 400.
                raise ValueError(  # noqa: TRY004
                    f"row {idx}: expected numbers, got str {_describe(value)}")
            continue
        if isinstance(value, dict):
            value = _unwrap(value, idx)
            continue
        return value
    return value


def _unwrap(obj: dict[str, Any], idx: int) -> Any:
    for key in INPUT_KEYS:
        if key in obj:
            return obj[key]
    if len(obj) == 1:
        return next(iter(obj.values()))
    keys = ", ".join(sorted(map(str, obj))[:8])
    raise ValueError(f"row {idx}: expected numbers or an object with one of the keys "
                     f"{', '.join(INPUT_KEYS)}; got an object with keys {keys}")


def _first_non_number(value: Any, path: str = "") -> tuple[str, Any] | None:
    if isinstance(value, (list, tuple)):
        for pos, item in enumerate(value):
            found = _first_non_number(item, f"{path}[{pos}]")
            if found:
                return found
        return None
    if isinstance(value, (bool, int, float, torch.Tensor)):
        return None
    if hasattr(value, "dtype") and hasattr(value, "shape"):  # numpy arrays and scalars
        return None
    return path, value


def row_to_tensor(row: Any, idx: int) -> torch.Tensor:
    """One request row as a tensor; float64 becomes float32."""
    value = _decode(row_payload(row), idx)
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        found = _first_non_number(value)
        if found is not None:
            path, bad = found
            where = f" at {path}" if path else ""
            raise ValueError(f"row {idx}: expected numbers, got {type(bad).__name__}"
                             f"{where} ({_describe(bad)})") from None
        raise ValueError(f"row {idx}: nested arrays must be rectangular ({exc})") from None
    if tensor.dtype == torch.float64:
        tensor = tensor.to(torch.float32)
    return tensor


def rows_to_batch(data: list[Any]) -> torch.Tensor:
    """Stack one tensor per request row into a [N, ...] batch.

    Raises ValueError naming the row when a row is not numeric or its shape
    differs from row 0's.
    """
    if not isinstance(data, (list, tuple)) or not data:
        raise ValueError("expected a non-empty list of request rows")
    tensors = [row_to_tensor(row, idx) for idx, row in enumerate(data)]
    shape = tensors[0].shape
    dtype = tensors[0].dtype
    for idx, tensor in enumerate(tensors[1:], start=1):
        if tensor.shape != shape:
            raise ValueError(f"row {idx}: shape {list(tensor.shape)} differs from row 0's "
                             f"shape {list(shape)}; requests batched together must have "
                             f"the same shape")
        dtype = torch.promote_types(dtype, tensor.dtype)
    return torch.stack([tensor.to(dtype) for tensor in tensors])
