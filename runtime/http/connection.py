"""One client connection: its parser, the requests waiting in it, its answer, its deadlines."""
from __future__ import annotations

import socket
import time
from typing import Any

from .parser import RequestParser
from .request import HttpError, Limits, Request

# Complete requests a connection may have waiting behind the one being answered
# (pipelining), and their bytes: past either, the server stops reading from it.
MAX_WAITING = 64
MAX_WAITING_BYTES = 1 << 20


class Conn:
    """A client connection and where its requests are.

    Bytes read go straight to the parser (`take`); complete requests wait in
    `parser.done`, in order, followed by `error` if the parser refused one.
    One request is answered at a time (`inflight`); `out` holds the answer
    bytes the socket has not taken yet. `waiting_since` is when the connection
    last began waiting on the client (at accept, or when an answer had left with
    nothing else to do): the head and body deadlines count from there, never
    while the client waits on the server.
    """

    __slots__ = (
        "addr",
        "closing",
        "continued",
        "dropped",
        "eof",
        "error",
        "events",
        "inflight",
        "last_active",
        "out",
        "parser",
        "sock",
        "stop_reading",
        "streaming",
        "waiting_since",
    )

    def __init__(self, sock: socket.socket, addr: Any, limits: Limits) -> None:
        self.sock = sock
        self.addr = addr
        self.parser = RequestParser(limits)
        self.error: HttpError | None = None  # refused after the requests waiting
        self.stop_reading = False  # a request that closes the connection has arrived
        self.continued: Request | None = None  # 100 Continue sent for this request
        self.inflight: Any = None  # (request, what answers it)
        # While a streamed answer is being sent: "chunked" (HTTP/1.1) or "raw" (HTTP/1.0,
        # ended by closing), and whether its head said keep-alive.
        self.streaming: tuple[str, bool] | None = None
        self.out = b""
        self.events = 0
        self.eof = False
        self.closing = 0.0  # answered with Connection: close: drop input until then
        self.dropped = 0  # bytes dropped since
        self.last_active = self.waiting_since = time.monotonic()

    def take(self, data: bytes) -> None:
        """Parse what was read; what follows a refused or a closing request is dropped."""
        if self.error is not None or self.stop_reading:
            return
        try:
            self.parser.feed(data)
        except HttpError as error:
            self.error = error
        waiting = self.parser.done
        if waiting and not waiting[-1].keep_alive:
            self.stop_reading = True

    def next(self) -> Request | HttpError | None:
        """The next request to answer (or the refusal to send), if one is complete."""
        waiting = self.parser.done
        if waiting:
            return waiting.popleft()
        return self.error

    def reading(self) -> bool:
        """Whether to read more from the client: not after its end, a refused or a
        closing request, nor while enough requests wait to be answered."""
        if self.eof or self.stop_reading or self.error is not None:
            return False
        waiting = self.parser.done
        return not waiting or (len(waiting) < MAX_WAITING and
                               sum(len(r.body) for r in waiting) <= MAX_WAITING_BYTES)

    def busy(self) -> bool:
        """Whether the server owes this connection something (an answer, bytes, a request)."""
        return self.inflight is not None or bool(self.out) or bool(self.parser.done)

    def begun(self) -> bool:
        """Whether a request has begun arriving (its head or its body)."""
        parser = self.parser
        return parser.in_head or parser.current is not None

    def overdue(self, now: float, head_timeout: float, min_rate: float) -> HttpError | None:
        """The 408 for a request whose head or body is arriving too slowly, if it is."""
        if self.busy() or self.error is not None:
            return None
        parser = self.parser
        if parser.in_head:
            if now - max(parser.began, self.waiting_since) > head_timeout:
                return HttpError(408, f"the request head did not arrive within {head_timeout:g}"
                                      " s (MKSERVE_HEAD_TIMEOUT)")
            return None
        request = parser.current
        if request is None or min_rate <= 0:
            return None
        since = max(request.head_done, self.waiting_since)
        if now - since > head_timeout + parser.body_size / min_rate:
            return HttpError(408, f"the request body arrives at less than {min_rate:g} bytes/s "
                                  "(MKSERVE_BODY_MIN_RATE)")
        return None
