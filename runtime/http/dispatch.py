"""Who answers a request, and the bytes of its answer once it is ready.

Predictions on the hot route (`FastRoute.matches`) are decoded and queued for
the model thread right in the loop (`FastRoute.begin`); the model thread answers
a whole batch, each request's group calls back from that thread, and the
dispatcher wakes the loop. Every other request runs the whole WSGI app in a pool
of threads (wsgi.py). Either way the connection lands in `done` when its
answer is ready, and the loop turns it into bytes (`answers`, `render`).
"""
from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from ..errors import ServingError
from .connection import Conn
from .request import Request
from .response import error_bytes, response_bytes
from .wsgi import call_app, environ


class FastRoute(Protocol):
    """A route the loop answers itself, without a thread (mkserve.runtime.fastpath.FastPath).

    `begin` returns a pending result (`is_pending`) the model answers later,
    calling `on_done` from its thread, or an answer at once; `answer` turns
    either, once settled, into the WSGI status, headers and body.
    """

    def matches(self, method: str, path: str, query: str, content_type: str,
                length: int | None) -> bool: ...

    def new_request_id(self) -> str: ...

    def begin(self, path: str, raw: bytes, content_type: str, headers: dict[str, str],
              request_id: str, started: float,
              on_done: Callable[[Any], None] | None) -> Any: ...

    def is_pending(self, result: Any) -> bool: ...

    def settled(self, pending: Any) -> bool: ...

    def complete(self, pending: Any) -> Any: ...

    def expire(self, jobs: Any) -> None: ...

    def on_part(self, pending: Any, callback: Callable[[], None]) -> None: ...

    def take_parts(self, pending: Any) -> tuple[list[bytes], str | None]: ...

    def request_id_of(self, pending: Any) -> str: ...

    def answer(self, result: Any, environ: Callable[[], dict[str, Any]],
               ) -> tuple[str, list[tuple[str, str]], bytes]: ...


class Dispatcher:
    """Hands requests to the fast route or the thread pool; collects what is answered.

    `wake` is called from any thread when an answer is ready; everything else
    runs in the loop thread.
    """

    def __init__(self, app: Callable[..., Any], fast: FastRoute | None, threads: int,
                 server_address: tuple[Any, Any], multiprocess: bool,
                 wake: Callable[[], None], log: logging.Logger | Any) -> None:
        self.app = app
        self.fast = fast
        self.server_address = server_address
        self.multiprocess = multiprocess
        self.wake = wake
        self.log = log
        self.done: collections.deque[Conn] = collections.deque()  # answers to send
        self.streams: collections.deque[Conn] = collections.deque()  # parts to send
        self.next_deadline = float("inf")  # when a fast-path request may be overdue
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads),
                                       thread_name_prefix="mkserve-request")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def environ(self, request: Request, conn: Conn) -> dict[str, Any]:
        return environ(request, self.server_address, conn.addr, self.multiprocess)

    def dispatch(self, conn: Conn, request: Request) -> None:
        fast = self.fast
        if (fast is not None and not request.chunked
                and fast.matches(request.method, request.path, request.query,
                                 request.content_type, request.length)):
            started = time.perf_counter()
            headers = request.headers
            request_id = headers.get("X-Request-Id") or fast.new_request_id()
            done = self.done
            wake = self.wake

            def on_done(_group: Any) -> None:
                done.append(conn)
                wake()

            result = fast.begin(request.path, request.body, request.content_type, headers,
                                request_id, started, on_done)
            conn.inflight = (request, result)
            if fast.is_pending(result):
                self.next_deadline = min(self.next_deadline, result.deadline)
                streams = self.streams

                def on_part() -> None:
                    streams.append(conn)
                    wake()

                fast.on_part(result, on_part)
            else:
                done.append(conn)  # answered at once (an error)
            return
        future = self.pool.submit(call_app, self.app, self.environ(request, conn))
        conn.inflight = (request, future)
        def finished(_future: Future[Any]) -> None:
            self.done.append(conn)
            self.wake()

        future.add_done_callback(finished)

    def answers(self, open_conns: set[Conn]) -> Iterator[tuple[Conn, Request, Any]]:
        """The connections whose answer is ready, with their request and result.

        An answer for a client that has left is counted and logged, not yielded.
        """
        done = self.done
        fast = self.fast
        while done:
            conn = done.popleft()
            inflight = conn.inflight
            if inflight is None:
                continue
            request, result = inflight
            pending = fast is not None and fast.is_pending(result)
            if pending and not fast.settled(result):  # type: ignore[union-attr]
                continue  # not answered yet (a wake-up for an earlier request)
            conn.inflight = None
            if conn not in open_conns:
                if pending:
                    fast.complete(result)  # type: ignore[union-attr]
                continue
            yield conn, request, result

    def stream_parts(self, open_conns: set[Conn], keep_alive: Callable[[Request], bool],
                     ) -> Iterator[tuple[Conn, bytes]]:
        """The bytes of the streamed parts that are ready: a head before the first, then
        each part as an HTTP/1.1 chunk (as it is, on HTTP/1.0)."""
        streams, fast = self.streams, self.fast
        while streams:
            conn = streams.popleft()
            inflight = conn.inflight
            if fast is None or inflight is None or conn not in open_conns \
                    or not fast.is_pending(inflight[1]):
                continue
            request, pending = inflight
            chunks, content_type = fast.take_parts(pending)
            if not chunks:
                continue
            head = b""
            if conn.streaming is None:
                mode = "chunked" if request.version >= (1, 1) else "raw"
                conn.streaming = (mode, keep_alive(request) and mode == "chunked")
                headers = [("Content-Type", content_type or "application/octet-stream"),
                           ("X-Request-Id", fast.request_id_of(pending))]
                if mode == "chunked":
                    headers.append(("Transfer-Encoding", "chunked"))
                head = response_bytes(request.version, "200 OK", headers, b"",
                                      conn.streaming[1], head_only=True)
            yield conn, head + self._encode_as(conn.streaming[0], chunks)

    def finish_stream(self, conn: Conn, result: Any, environ: Callable[[], dict[str, Any]],
                      ) -> tuple[bytes, bool]:
        """The end of a streamed answer: the parts still waiting, the handler's return
        value, the last chunk. If the handler failed after parts were sent, the status
        cannot change any more: the connection closes without the last chunk, which
        tells the client that the answer is incomplete."""
        assert self.fast is not None and conn.streaming is not None
        mode, keep_alive = conn.streaming
        conn.streaming = None
        chunks, _ = self.fast.take_parts(result)
        status, _headers, body = self.fast.answer(result, environ)
        if not status.startswith("2"):
            self.log.warning("a streamed answer failed after its first part (%s): closing the "
                             "connection without the last chunk", status)
            return self._encode_as(mode, chunks), False
        data = self._encode_as(mode, [*chunks, body])
        return (data + b"0\r\n\r\n", keep_alive) if mode == "chunked" else (data, False)

    @staticmethod
    def _encode_as(mode: str, chunks: list[bytes]) -> bytes:
        """Parts as HTTP/1.1 chunks (an empty one would end the answer: skipped), or raw."""
        if mode == "raw":
            return b"".join(chunks)
        return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c)

    def render(self, conn: Conn, request: Request, result: Any,
               keep_alive: bool) -> tuple[bytes, bool]:
        """The bytes of an answer and whether the connection stays open; a 500 and a
        closed connection if making the answer fails."""
        try:
            if conn.streaming is not None:
                data, still_open = self.finish_stream(conn, result,
                                                      lambda: self.environ(request, conn))
                return data, still_open and keep_alive
            if isinstance(result, Future):
                status, headers, body = result.result()
            else:
                status, headers, body = self.fast.answer(  # type: ignore[union-attr]
                    result, lambda: self.environ(request, conn))
            return response_bytes(request.version, status, headers, body, keep_alive,
                                  head_only=request.method == "HEAD"), keep_alive
        except Exception:  # a bug here must not take the loop down
            self.log.exception("error answering %s %s", request.method, request.path)
            return error_bytes(ServingError("internal error"), request.version), False

    def expire_overdue(self, conns: set[Conn]) -> None:
        """Answer fast-path requests past their deadline with a 504."""
        fast = self.fast
        soonest = float("inf")
        if fast is not None:
            now = time.monotonic()
            for conn in conns:
                inflight = conn.inflight
                if inflight is None or not fast.is_pending(inflight[1]) or conn.streaming:
                    continue  # a streamed answer has begun: it runs to its end
                pending = inflight[1]
                if pending.deadline <= now:
                    fast.expire(pending.jobs)
                else:
                    soonest = min(soonest, pending.deadline)
        self.next_deadline = soonest
