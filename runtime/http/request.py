"""A parsed HTTP request, the limits a request is held to, and the error that refuses one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import PayloadTooLarge, ServingError


class HttpError(ServingError):
    """A request the HTTP layer refuses: answered, then the connection is closed."""

    TYPES: ClassVar[dict[int, str]] = {
        400: "BadRequestException", 405: "MethodNotAllowedException",
        408: "RequestTimeoutException", 413: PayloadTooLarge.type_name,
        414: "URITooLongException", 431: "RequestHeaderFieldsTooLargeException",
        501: "NotImplementedException", 505: "HTTPVersionNotSupportedException"}

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)
        self.type_name = self.TYPES[status]


@dataclass(frozen=True)
class Limits:
    """What one request may be. Sizes in bytes; 0 for a size means no limit.

    `max_stall` bounds what the parser may take in without finishing a piece
    (a header field, a chunk-size line, a trailer field): llhttp keeps a field
    it has not finished in memory, so without it one endless field would grow
    without end. It is one field's size: a legal field never comes near it.
    """

    max_line: int = 4094  # request target (gunicorn's limit_request_line)
    max_fields: int = 100  # header fields (limit_request_fields)
    max_field: int = 8190  # one header field, name and value (limit_request_field_size)
    max_head: int = 65536  # the whole head
    max_body: int = 6553500  # MKSERVE_MAX_REQUEST_SIZE
    max_trailer: int = 8192  # the trailer section of a chunked body
    max_chunks: int = 4096  # chunks in one chunked body (framing overhead)

    @property
    def max_stall(self) -> int:
        return (self.max_field or 8190) + 4

    def too_large(self) -> HttpError:
        return HttpError(413, f"request body is larger than the limit of {self.max_body} "
                              "bytes (MKSERVE_MAX_REQUEST_SIZE)")


class Request:
    """One request: its head, as parsed, and once complete its body.

    `headers` holds the names as werkzeug spells them in a WSGI environ
    (Title-Case), repeated fields joined with ",", names with "_" dropped.
    `began` and `head_done` are time.monotonic() readings: the first byte of
    the request, the end of its head.
    """

    __slots__ = ("began", "body", "chunked", "content_type", "expect_continue", "head_done",
                 "headers", "keep_alive", "length", "method", "path", "query", "target",
                 "version")

    def __init__(self, method: str, target: str, path: str, query: str,
                 version: tuple[int, int], headers: dict[str, str], keep_alive: bool,
                 began: float, head_done: float) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_type = headers.get("Content-Type", "")
        self.body = b""
        self.chunked = False
        self.length: int | None = None
        self.expect_continue = False
        self.began = began
        self.head_done = head_done
