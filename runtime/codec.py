"""Request decoding and response encoding, as TorchServe handlers expect them."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import BadRequest

JSON_TYPES = ("application/json",)


def _json_default(value: Any) -> Any:
    # Tensors and numpy arrays/scalars both offer tolist(); bytes go out as text.
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, separators=(",", ":")).encode()


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not UTF-8 text: {exc}") from None
    except ValueError as exc:
        raise BadRequest(f"malformed JSON in request body: {exc}") from None


def is_client_batch(value: Any) -> bool:
    """A top-level JSON array of objects is a client batch: one row per element."""
    return isinstance(value, list) and len(value) > 0 and all(isinstance(v, dict) for v in value)


def decode_body(raw: bytes, content_type: str, form: Mapping[str, Any] | None = None,
                files: Mapping[str, Any] | None = None) -> tuple[list[Any], bool]:
    """Turn a request body into handler values; returns (values, is_client_batch).

    application/json → parsed object; text/* → str; forms → one key per field;
    anything else → bytes. Form-encoded bodies that are really JSON (what a
    bare `curl -d '{...}'` sends) are read as JSON.
    """
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in JSON_TYPES or mime.endswith("+json") or (
            mime == "application/x-www-form-urlencoded" and raw[:1] in (b"{", b"[")):
        value = parse_json(raw)
        if is_client_batch(value):
            return value, True
        return [value], False
    if mime.startswith("text/"):
        charset = "utf-8"
        for param in content_type.split(";")[1:]:
            key, _, val = param.strip().partition("=")
            if key.lower() == "charset" and val:
                charset = val.strip('"')
        try:
            return [raw.decode(charset)], False
        except (LookupError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not {charset} text: {exc}") from None
    if mime in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return [None], False  # the fields are added to the row by the caller
    return [raw], False


def encode_value(value: Any, content_type: str | None) -> tuple[bytes, str]:
    """One handler result as a response body: bytes raw, str as text, else JSON."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), content_type or "application/octet-stream"
    if isinstance(value, str):
        return value.encode(), content_type or "text/plain; charset=utf-8"
    return dumps(value), content_type or "application/json"
