"""Request decoding and response encoding, as TorchServe handlers expect them."""
from __future__ import annotations

import itertools
import json
import operator
from typing import Any

from .errors import BadRequest

JSON_TYPES = ("application/json",)
# Far below the interpreter's recursion limit, so that whatever parses can also be encoded
# again (json recurses in both directions); no tensor needs more than 64 levels.
MAX_JSON_DEPTH = 256
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN_AS_2 = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


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


def json_too_deep(raw: bytes) -> bool:
    """True if the JSON text nests deeper than MAX_JSON_DEPTH (linear, no recursion)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False  # the usual case: two C-speed scans
    if b"\x00" in raw[:4]:  # UTF-16 or UTF-32, which json.loads also accepts
        try:
            raw = raw.decode(json.detect_encoding(raw)).encode()
        except UnicodeError:
            return False  # json.loads rejects it
    # Brackets outside strings only: drop escaped backslashes and quotes, split on quotes.
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    if b'"' in raw:
        raw = b"".join(raw.split(b'"')[::2])
    brackets = raw.translate(None, _NOT_BRACKETS)
    # A closer right before an opener leaves the depth where it was, so dropping the pair
    # keeps the maximum; a few passes shrink row-per-row tensors to almost nothing.
    for _ in range(8):
        shorter = brackets.replace(b"][", b"").replace(b"}{", b"").replace(b"]{", b"")
        shorter = shorter.replace(b"}[", b"")
        if len(shorter) == len(brackets):
            break
        brackets = shorter
    # An opener counts 2 and a closer 0, so depth after k brackets is their sum minus k.
    steps = brackets.translate(_OPEN_AS_2)
    depths = map(operator.sub, itertools.accumulate(steps), itertools.count(1))
    return max(depths, default=0) > MAX_JSON_DEPTH


def parse_json(raw: bytes) -> Any:
    if json_too_deep(raw):
        raise BadRequest(f"JSON in request body is nested more than {MAX_JSON_DEPTH} levels "
                         "deep")
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not UTF-8 text: {exc}") from None
    except ValueError as exc:
        raise BadRequest(f"malformed JSON in request body: {exc}") from None
    except RecursionError:
        raise BadRequest("JSON in request body is nested too deeply") from None


def is_client_batch(value: Any) -> bool:
    """A top-level JSON array of objects is a client batch: one row per element."""
    return isinstance(value, list) and len(value) > 0 and all(isinstance(v, dict) for v in value)


def decode_body(raw: bytes, content_type: str, split_lists: bool = True,
                ) -> tuple[list[Any], bool]:
    """Turn a request body into handler values; returns (values, is_client_batch).

    application/json → parsed object (a JSON array of objects is a client batch of
    rows unless `split_lists` is false: MKSERVE_LIST_BODY=whole); text/* → str; forms
    → one key per field; anything else → bytes. Form-encoded bodies that are really
    JSON (what a bare `curl -d '{...}'` sends) are read as JSON.
    """
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in JSON_TYPES or mime.endswith("+json") or (
            mime == "application/x-www-form-urlencoded" and raw[:1] in (b"{", b"[")):
        value = parse_json(raw)
        if split_lists and is_client_batch(value):
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
        except (LookupError, UnicodeError) as exc:  # idna, punycode: UnicodeError only
            raise BadRequest(f"request body is not {charset} text: {exc}") from None
    if mime in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return [None], False  # the fields are added to the row by the caller
    return [raw], False


def encode_parts(parts: list[tuple[Any, str | None]], final: Any, content_type: str | None,
                 ) -> tuple[bytes, str]:
    """A streamed answer whole (parts, then the handler's return value), for a client
    that gets it in one piece; the first part's content type is the answer's."""
    encoded = [encode_value(value, ctype) for value, ctype in parts]
    last, last_type = encode_value(final, content_type) if final is not None else (b"", None)
    body = b"".join(chunk for chunk, _ in encoded) + last
    return body, encoded[0][1] if encoded else (last_type or "application/octet-stream")


def encode_value(value: Any, content_type: str | None) -> tuple[bytes, str]:
    """One handler result as a response body: bytes raw, str as text, else JSON."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), content_type or "application/octet-stream"
    if isinstance(value, str):
        # Lone surrogates (from JSON "\ud800" or escape codecs) have no UTF-8 form.
        return value.encode(errors="replace"), content_type or "text/plain; charset=utf-8"
    return dumps(value), content_type or "application/json"
