"""The bytes of an HTTP/1 answer: status line, mkserve's headers, the app's headers, the body."""
from __future__ import annotations

import time
from email.utils import formatdate

from werkzeug.http import HTTP_STATUS_CODES

from .. import __version__
from ..errors import ServingError

SERVER = f"mkserve/{__version__}"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
JSON_HEADERS = [("Content-Type", "application/json")]

_date_cache: tuple[int, str] = (0, "")
_status_lines: dict[int, str] = {}


def status_line(code: int) -> str:
    """The WSGI status werkzeug makes of an integer code ("200 OK", "299 UNKNOWN")."""
    line = _status_lines.get(code)
    if line is None:
        reason = HTTP_STATUS_CODES.get(code)
        line = _status_lines[code] = f"{code} {reason.upper() if reason else 'UNKNOWN'}"
    return line


def http_date() -> str:
    """The Date header value, formatted once per second (RFC 9110 IMF-fixdate)."""
    global _date_cache
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        cached = _date_cache = (now, formatdate(now, usegmt=True))
    return cached[1]


def response_bytes(version: tuple[int, int], status: str, headers: list[tuple[str, str]],
                   body: bytes, keep_alive: bool, head_only: bool = False) -> bytes:
    """An HTTP/1 response; Content-Length is added where the app set none."""
    connection = "keep-alive" if keep_alive else "close"
    lines = [(f"HTTP/{version[0]}.{version[1]} {status}\r\nServer: {SERVER}\r\n"
              f"Date: {http_date()}\r\nConnection: {connection}\r\n")]
    has_length = False
    for name, value in headers:
        if name.lower() == "content-length":
            has_length = True
        lines.append(f"{name}: {value}\r\n")
    code = status[:3]
    if not (has_length or head_only or code[0] == "1" or code in ("204", "304")):
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("latin-1")
    return head if head_only else head + body


def error_bytes(error: ServingError, version: tuple[int, int] = (1, 1),
                keep_alive: bool = False) -> bytes:
    """An error in the serving shape ({"code", "type", "message"})."""
    headers = JSON_HEADERS + list(error.headers.items())
    return response_bytes(version, status_line(error.status), headers, error.to_json(),
                          keep_alive)
