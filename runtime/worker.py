"""gunicorn's gthread worker, keeping a busy keep-alive connection on its thread.

In gthread every request on a kept-alive connection makes a round trip through
the worker's main loop: the request thread hands the connection back (a future
callback, a pipe write to wake the poller), the main thread registers it with
epoll, waits for it to become readable, unregisters it and submits it to the
pool again. For a client that sends its next request as soon as it has the
answer (a load balancer, a benchmark, a batch job), that is about a third of
the per-request CPU on a small model and two more context switches.

`KeepAliveThreadWorker` lets the request thread wait briefly for the next
request on the same connection and serve it straight away. It waits only while
every connection of the worker can have a thread of its own and none is
queued (another connection is never kept waiting for a thread by a lingering
one: with more connections than threads this is exactly gthread), and only
briefly (an idle connection goes back to the poller, as in gthread, so idle
clients tie up no thread).
Everything else (accepting, keep-alive timeouts, graceful stop, max_requests,
HTTP/2) is gthread's.

Connections are also spread across workers. All workers wait on the one
listening socket and the kernel wakes whichever it likes: measured here, one
of two workers took 48 to 63 of wrk's 64 connections, so it queued requests
for threads while the other idled (throughput -40 %, and the collapse to a
third of it with fewer threads than connections). A worker whose connections
already fill its threads stops accepting for `ACCEPT_PAUSE_S`, which leaves
new connections to a worker with a free thread; a full server still accepts
(each worker one connection per pause), so nothing waits longer than that.

Its HTTP/1 responses (`OneSendResponse`) also put the status line and headers
on the wire together with the first body bytes, so a small answer is one
send(2) instead of two, and format the Date header once per second instead of
once per response.

Relies on gthread internals of gunicorn 27 (pinned in pyproject.toml):
tests/e2e/test_keepalive.py and every other e2e test run through this worker.
"""
from __future__ import annotations

import select
import threading
import time
from email.utils import formatdate

from gunicorn.http import wsgi
from gunicorn.workers.gthread import ThreadWorker

# How long a request thread waits for the next request on its connection.
LINGER_S = 0.002
# How long a worker whose connections fill its threads leaves new ones to the others.
ACCEPT_PAUSE_S = 0.02


def _nothing() -> None:
    pass


class KeepAliveThreadWorker(ThreadWorker):
    linger_s = LINGER_S
    accept_pause_s = ACCEPT_PAUSE_S
    _accept_paused_until = 0.0
    _accept_timer: threading.Timer | None = None

    # gthread's loop accepts while nr_conns < worker_connections: during a pause the
    # limit reads as 0, so the loop takes the listening socket off its poller.
    @property
    def worker_connections(self) -> int:
        if self._accept_paused_until and time.monotonic() < self._accept_paused_until:
            return 0
        return self._max_connections

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._max_connections = value

    def accept(self, listener):  # type: ignore[no-untyped-def]
        super().accept(listener)
        if self.nr_conns >= self.cfg.threads:
            self._pause_accepting()

    def _pause_accepting(self) -> None:
        self._accept_paused_until = time.monotonic() + self.accept_pause_s
        timer = self._accept_timer
        if timer is None or not timer.is_alive():
            # Wakes the loop when the pause ends, so accepting resumes even when idle.
            timer = self._accept_timer = threading.Timer(
                self.accept_pause_s, self.method_queue.defer, args=(_nothing,))
            timer.daemon = True
            timer.start()

    def handle(self, conn):  # type: ignore[no-untyped-def]
        keepalive = super().handle(conn)
        while keepalive is True and self.alive and not conn.is_http2 and self._next_request_ready(conn):
            keepalive = super().handle(conn)
        return keepalive

    def _next_request_ready(self, conn) -> bool:  # type: ignore[no-untyped-def]
        if conn.parser.unreader.buf.getvalue():
            return True  # already read ahead
        if self.nr_conns > self.cfg.threads or self.tpool._work_queue.qsize():
            return False  # another connection may be waiting for this thread
        poller = getattr(conn, "_mkserve_poll", None)
        if poller is None:
            poller = conn._mkserve_poll = select.poll()
            poller.register(conn.sock, select.POLLIN)
        try:
            return bool(poller.poll(self.linger_s * 1000))
        except OSError:
            return False

    def init_process(self) -> None:
        # gunicorn's wsgi.create() makes its HTTP/1 responses from this module global;
        # set in the worker process only, after fork.
        wsgi.Response = OneSendResponse
        super().init_process()


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header value, formatted once per second (RFC 9110 IMF-fixdate)."""
    global _date_cache
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        cached = _date_cache = (now, formatdate(now, usegmt=True))
    return cached[1]


class OneSendResponse(wsgi.Response):
    """A gunicorn HTTP/1 response whose headers leave with the first body bytes."""

    _held = b""

    def default_headers(self) -> list[str]:
        if self.upgrade:
            connection = "upgrade"
        else:
            connection = "close" if self.should_close() else "keep-alive"
        major, minor = self.req.version
        lines = [f"HTTP/{major}.{minor} {self.status}\r\n", f"Server: {self.version}\r\n",
                 f"Date: {http_date()}\r\n", f"Connection: {connection}\r\n"]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked\r\n")
        return lines

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        lines.append("\r\n")
        self._held = "".join(lines).encode("latin-1")
        self.headers_sent = True

    def flush_headers(self) -> None:
        held, self._held = self._held, b""
        if held:
            self.sock.sendall(held)

    def _emit_body(self, data: bytes) -> None:
        if self._held and not self.chunked:
            held, self._held = self._held, b""
            self.sock.sendall(held + data)
            return
        self.flush_headers()
        super()._emit_body(data)

    def sendfile(self, respiter):  # type: ignore[no-untyped-def]
        self.send_headers()
        self.flush_headers()
        return super().sendfile(respiter)

    def close(self) -> None:
        self.send_headers()
        self.flush_headers()
        super().close()
