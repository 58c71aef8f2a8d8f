"""Request framing by llhttp (httptools), with mkserve's own rules on top.

llhttp is the parser of Node.js and uvicorn. In its strict default it refuses
what lets a front end and a back end count requests differently: bare CR or LF
line ends, whitespace or control bytes around chunk sizes and in chunk
extensions, malformed trailers, obs-fold, Content-Length together with
Transfer-Encoding, repeated Content-Length, lowercase or unknown methods, and
control or non-ASCII bytes in the request target. It enforces no sizes, so
`RequestParser` adds mkserve's: the target (414), the number and size of header
fields and of the whole head (431), the body decided from the head where it
can be and counted as it arrives (413), the trailer section, the number of
chunks, and what the parser may hold without finishing a piece (`Limits`). It
also refuses what llhttp lets through but mkserve does not serve: versions other
than HTTP/1.0 and 1.1 (505), CONNECT (405), Transfer-Encoding other than a
lone chunked (501) or in HTTP/1.0, an HTTP/1.1 request without exactly one
Host (RFC 9112 makes that a 400), and a body on a request
that asks for a protocol upgrade (httptools would hand that body over as
upgrade bytes).
"""
from __future__ import annotations

import time
from collections import deque
from urllib.parse import unquote_to_bytes

import httptools

from .request import HttpError, Limits, Request

VERSIONS = {"1.1": (1, 1), "1.0": (1, 0)}
# Header names as werkzeug spells them, by the bytes they arrive as (most requests
# repeat a few names: made once, not per request).
_TITLES: dict[bytes, str] = {}
_METHODS: dict[bytes, str] = {}


class RequestParser:
    """One connection's framing: `feed(bytes)` parses, complete Requests land in `done`.

    A request is complete when its body is; pipelined requests pile up in
    `done` in order. `feed` raises HttpError for a request it refuses; the
    requests completed before it stay in `done`, and the parser must not be fed
    again. `current` is the request whose body is arriving (its head is
    complete), `in_head` whether a head has begun and not ended. Called from
    the one loop thread only.
    """

    __slots__ = ("_body", "_chunks", "_fields", "_head_size", "_headers", "_parser",
                 "_progress", "_stalled", "_trailer_size", "_url", "began", "current", "done",
                 "in_head", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self.done: deque[Request] = deque()
        self.current: Request | None = None
        self.in_head = False
        self.began = 0.0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._fields = 0
        self._head_size = 0
        self._body: bytes | bytearray = b""
        self._chunks = 0
        self._trailer_size = 0
        self._stalled = 0  # bytes fed since the parser last finished a piece
        self._progress = False

    @property
    def body_size(self) -> int:
        """Bytes of the current request's body so far."""
        return len(self._body)

    def feed(self, data: bytes | memoryview) -> None:
        """Parse `data`; raise HttpError if it breaks the framing or a limit."""
        self._progress = False
        while True:
            try:
                self._parser.feed_data(data)
                break
            except httptools.HttpParserUpgrade as upgrade:
                # A request asking for Upgrade (h2c, websocket) without a body: it is
                # complete, served as HTTP/1.1 (the Upgrade header is ignored), and what
                # follows it is parsed as HTTP again.
                data = memoryview(data)[upgrade.args[0]:]
                if not data:
                    return
            except httptools.HttpParserCallbackError as error:
                own = error.__context__
                if isinstance(own, HttpError):
                    raise own from None
                raise  # a bug in a callback: the loop answers it as a 500
            except httptools.HttpParserError as error:
                raise refusal(error) from None
        if self._progress:
            self._stalled = 0
            return
        self._stalled += len(data)
        if self._stalled > self.limits.max_stall:
            if self.in_head or self.current is not None:
                raise HttpError(431, "a header or trailer field, or a chunk-size line, is "
                                     f"longer than {self.limits.max_stall} bytes")
            raise HttpError(400, "malformed request: no request line")

    # -- llhttp's callbacks (httptools calls them by name) -------------------
    def on_message_begin(self) -> None:
        self._progress = True
        self.in_head = True
        self.began = time.monotonic()
        self._url = b""
        self._headers = {}
        self._fields = 0
        self._head_size = 0
        self._body = b""
        self._chunks = 0
        self._trailer_size = 0

    def on_url(self, url: bytes) -> None:
        self._progress = True
        self._url += url
        limit = self.limits.max_line
        if limit and len(self._url) > limit:
            raise HttpError(414, f"request target is longer than {limit} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress = True
        limits = self.limits
        size = len(name) + len(value) + 4  # ": " and CRLF
        if not self.in_head:  # a trailer field of a chunked body: checked, then dropped
            self._trailer_size += size
            if self._trailer_size > limits.max_trailer:
                raise HttpError(431, f"the trailer section is larger than {limits.max_trailer}"
                                     " bytes")
            return
        self._fields += 1
        self._head_size += size
        if self._fields > limits.max_fields:
            raise HttpError(431, f"more than {limits.max_fields} header fields")
        if limits.max_field and size - 2 > limits.max_field:
            raise HttpError(431, f"a header field is longer than {limits.max_field} bytes")
        if self._head_size > limits.max_head:
            raise HttpError(431, f"the request head is larger than {limits.max_head} bytes")
        key = _TITLES.get(name)
        if key is None:
            if b"_" in name:
                return  # as gunicorn: in a WSGI environ it would pass for a dash
            key = name.decode("latin-1").title()
            if len(_TITLES) < 512:
                _TITLES[name] = key
        text = value.decode("latin-1").rstrip(" \t")
        headers = self._headers
        if key in headers:
            if key == "Host":
                raise HttpError(400, "more than one Host header")
            headers[key] = f"{headers[key]},{text}"
        else:
            headers[key] = text

    def on_headers_complete(self) -> None:
        self._progress = True
        self.in_head = False
        self.current = self._request()

    def on_body(self, body: bytes) -> None:
        self._progress = True
        have = self._body
        if len(have) + len(body) > self.limits.max_body:
            raise self.limits.too_large()
        if not have:
            self._body = body
        elif type(have) is bytes:
            self._body = bytearray(have) + body  # a body in pieces grows in one buffer
        else:
            have += body

    def on_chunk_header(self) -> None:
        self._progress = True
        self._chunks += 1
        limit = self.limits.max_chunks
        if self._chunks > limit:
            raise HttpError(413, f"the body comes in more than {limit} chunks; send larger "
                                 "chunks or a Content-Length")

    def on_message_complete(self) -> None:
        self._progress = True
        request = self.current
        if request is None:  # cannot happen: llhttp completes no message without a head
            raise HttpError(400, "malformed request")
        body = self._body
        request.body = body if type(body) is bytes else bytes(body)
        self._body = b""
        self.current = None
        self.done.append(request)

    # -- the head, once complete ---------------------------------------------
    def _request(self) -> Request:
        parser = self._parser
        version_text = parser.get_http_version()
        version = VERSIONS.get(version_text)
        if version is None:
            raise HttpError(505, f"HTTP/{version_text} is not supported; use HTTP/1.1")
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = _METHODS[raw_method] = raw_method.decode("ascii")  # llhttp knows ~40
        if method == "CONNECT":
            raise HttpError(405, "CONNECT is not served: this is not a proxy")
        target = self._url.decode("latin-1")
        path, query = split_target(self._url, method)
        headers = self._headers
        if version >= (1, 1) and "Host" not in headers:
            raise HttpError(400, "an HTTP/1.1 request must have a Host header")
        request = Request(method, target, path, query, version, headers,
                          parser.should_keep_alive(), self.began, time.monotonic())
        encoding = headers.get("Transfer-Encoding")
        if encoding is not None:
            if version < (1, 1):
                raise HttpError(400, "Transfer-Encoding is not allowed in HTTP/1.0")
            if encoding.strip().lower() != "chunked":
                raise HttpError(501, f"Transfer-Encoding {encoding!r} is not supported; "
                                     "send chunked or a Content-Length")
            request.chunked = True
        length = headers.get("Content-Length")
        if length is not None:
            request.length = int(length)  # llhttp has checked it: digits, one value
            if request.length > self.limits.max_body:
                raise self.limits.too_large()
        if parser.should_upgrade() and (request.chunked or request.length):
            raise HttpError(400, "a request asking for a protocol upgrade cannot have a body "
                                 "here; send it without the Upgrade header")
        request.expect_continue = (version >= (1, 1) and
                                   headers.get("Expect", "").lower() == "100-continue")
        return request


def split_target(url: bytes, method: str) -> tuple[str, str]:
    """PATH_INFO and QUERY_STRING of a request target (origin or absolute form, or *).

    The path is percent-decoded to latin-1 text, as WSGI servers hand it over.
    """
    if url == b"*":
        if method != "OPTIONS":
            raise HttpError(400, "the target * is only for OPTIONS")
        return "*", ""
    try:
        parts = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        raise HttpError(400, "malformed request target") from None
    raw_path = parts.path or b"/"
    if not raw_path.startswith(b"/"):
        raise HttpError(400, "malformed request target")
    path = unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path
    return path.decode("latin-1"), (parts.query or b"").decode("latin-1")


def refusal(error: httptools.HttpParserError) -> HttpError:
    """The answer to what llhttp refused, its reason in the message."""
    reason = str(error) or "malformed request"
    if isinstance(error, httptools.HttpParserInvalidMethodError):
        return HttpError(400, "unknown or malformed method (methods are case-sensitive: "
                              "POST, not post)")
    if isinstance(error, httptools.HttpParserInvalidURLError):
        return HttpError(400, f"malformed request target: {reason}")
    if "overflow" in reason:
        return HttpError(413, f"request body is too large: {reason}")
    return HttpError(400, f"malformed request: {reason}")
