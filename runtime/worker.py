"""mkserve's gunicorn worker: one event loop per process, no thread per prediction.

gunicorn's gthread worker hands every request to a thread that parses it, waits
on the model and writes the answer. On a small model that is most of the cost
of a prediction: gunicorn's HTTP parser and WSGI environ in Python, a thread
wake-up per request, and eight or more GIL hand-offs while threads take turns.
Measured here, a trivial Flask endpoint under gthread served fewer requests per
second than TorchServe with its model.

`EventLoopWorker` serves HTTP/1.1 from one selector loop (epoll) per worker:

- The loop accepts, reads, and parses requests itself (`parse_head`, strict:
  one request line, CRLF header lines, Content-Length or chunked bodies,
  gunicorn's size limits, anything else a 4xx in the serving error shape).
- Predictions on the hot route (`FastPath.matches`: a POST to
  /predictions/{model}[/{version}] with a body, no query, not a form) are
  decoded and queued for the model thread right there (`FastPath.begin`). The
  model thread answers a whole batch, each request's Group calls back, and one
  byte on a pipe wakes the loop, which encodes and sends the answers
  (`FastPath.complete`). The loop answers a request whose deadline passes first
  with a 504 (`FastPath.expire`), as a waiting thread would.
- Every other request (probes, metrics, KServe, forms, queries) runs the whole
  Flask app in a pool of `threads` threads with a WSGI environ as gunicorn
  would make it; the loop sends what the app returned.

A connection has one request in flight at a time (pipelined requests wait in
its buffer, answered in order), idles up to `keepalive` seconds between
requests, and is closed when a request it started (or an answer it is
reading) makes no progress for `timeout` seconds.
Connections are spread across workers: all of them wait on the one listening
socket and the kernel wakes whichever it likes (measured here: one of two
workers took 48 to 63 of 64 connections while the other idled, leaving a core
unused). Each worker publishes how many connections it holds in a table the
master shares with all workers (`Runtime.connection_counts`, one slot per
worker, "not ready" while its model loads or it drains); a worker holding more
than the least loaded ready worker stops accepting for ACCEPT_PAUSE_S, which
leaves the new connection to that one. It then accepts one anyway, so a busy
or stuck peer never keeps a connection waiting longer than that. A worker
whose model is still loading (a replacement, or the slower of two at start)
accepts nothing while another worker is ready: it could only answer 503.

On SIGTERM (gunicorn's graceful stop) the worker stops accepting, answers what
is in flight and what arrives on open connections within STOP_LINGER_S (with
"Connection: close"), and exits once every connection is done or
`graceful_timeout` has passed. `max_requests` restarts a worker as in gunicorn.
"""
from __future__ import annotations

import collections
import errno
import io
import os
import re
import selectors
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from email.utils import formatdate
from typing import Any, ClassVar
from urllib.parse import unquote_to_bytes

from gunicorn.workers import base

from . import __version__
from .app import Pending, status_line
from .errors import PayloadTooLarge, ServingError
from .server import NOT_READY

# How long a worker whose connections fill its threads leaves new ones to the others.
ACCEPT_PAUSE_S = 0.002
# On a graceful stop, how long an idle connection may still bring a request.
STOP_LINGER_S = 2.0
# After answering with "Connection: close", how long to read and drop what the client
# still sends (an unread body), so that closing does not reset the answer away.
CLOSE_LINGER_S = 1.0
READ_SIZE = 65536
# Unanswered requests a connection may have waiting in its buffer (pipelining).
MAX_BUFFERED = 1 << 20
SERVER = f"mkserve/{__version__}"

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
VERSIONS = {"HTTP/1.1": (1, 1), "HTTP/1.0": (1, 0)}
BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


class HttpError(ServingError):
    """A request the HTTP layer refuses; the connection closes after the answer."""

    TYPES: ClassVar[dict[int, str]] = {400: "BadRequestException", 413: PayloadTooLarge.type_name,
             414: "URITooLongException", 431: "RequestHeaderFieldsTooLargeException",
             501: "NotImplementedException", 505: "HTTPVersionNotSupportedException"}

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)
        self.type_name = self.TYPES[status]


class Request:
    """One parsed request head and, once read, its body."""

    __slots__ = ("body", "chunked", "content_type", "headers", "keep_alive", "length",
                 "method", "path", "query", "target", "version")

    def __init__(self, method: str, target: str, path: str, query: str,
                 version: tuple[int, int], headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers  # Title-Cased names as werkzeug spells them, repeats joined
        self.content_type = headers.get("Content-Type", "")
        self.body = b""
        self.chunked = False
        self.length: int | None = None
        connection = headers.get("Connection", "").lower()
        if version >= (1, 1):
            self.keep_alive = "close" not in connection
        else:
            self.keep_alive = "keep-alive" in connection


def parse_head(head: str, max_line: int, max_fields: int, max_field: int) -> Request:
    """The request in `head` (the bytes before the blank line, as latin-1 text)."""
    lines = head.split("\r\n")
    line = lines[0]
    if max_line and len(line) > max_line:
        raise HttpError(414, f"request line is longer than {max_line} bytes")
    parts = line.split(" ")
    if len(parts) != 3 or not TOKEN.match(parts[0]):
        raise HttpError(400, "malformed request line")
    method, target, version_text = parts
    version = VERSIONS.get(version_text)
    if version is None:
        if re.fullmatch(r"HTTP/\d\.\d", version_text):
            raise HttpError(505, f"{version_text} is not supported; use HTTP/1.1")
        raise HttpError(400, "malformed request line")
    if len(lines) - 1 > max_fields:
        raise HttpError(431, f"more than {max_fields} header fields")
    headers: dict[str, str] = {}
    for field in lines[1:]:
        if max_field and len(field) > max_field:
            raise HttpError(431, f"a header field is longer than {max_field} bytes")
        name, colon, value = field.partition(":")
        if not colon or not TOKEN.match(name):
            raise HttpError(400, f"malformed header field {field[:64]!r}")
        value = value.strip(" \t")
        if BAD_VALUE.search(value):
            raise HttpError(400, f"invalid character in header {name}")
        if "_" in name:
            continue  # as gunicorn: it would be confused with a dash in the WSGI environ
        key = name.title()
        if key in headers:
            if key in ("Content-Length", "Host") and headers[key] != value:
                raise HttpError(400, f"conflicting {key} headers")
            if key != "Content-Length":
                headers[key] = f"{headers[key]},{value}"
        else:
            headers[key] = value
    if target.startswith(("http://", "https://")):  # absolute form: keep the path
        slash = target.find("/", target.find("//") + 2)
        target = target[slash:] if slash > 0 else "/"
    if not target.startswith("/") and not (target == "*" and method == "OPTIONS"):
        raise HttpError(400, "malformed request target")
    path, _, query = target.partition("?")
    path, _, _ = path.partition("#")
    if "%" in path:
        path = unquote_to_bytes(path).decode("latin-1")
    request = Request(method, target, path, query, version, headers)
    encoding = headers.get("Transfer-Encoding")
    length = headers.get("Content-Length")
    if encoding is not None:
        if length is not None:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        if encoding.lower() != "chunked" or version < (1, 1):
            raise HttpError(501, f"Transfer-Encoding {encoding!r} is not supported; "
                             "send chunked or a Content-Length")
        request.chunked = True
    elif length is not None:
        if not (length.isascii() and length.isdigit()):
            raise HttpError(400, "malformed Content-Length")
        request.length = int(length)
    return request


class Conn:
    """A client connection and where its current request is."""

    __slots__ = ("addr", "buf", "chunk_at", "chunked_size", "chunks", "closing", "continued",
                 "eof", "events", "inflight", "last_active", "out", "request", "scanned", "sock")

    def __init__(self, sock: socket.socket, addr: Any) -> None:
        self.sock = sock
        self.addr = addr
        self.buf = bytearray()
        self.scanned = 0  # where to resume looking for the end of a head
        self.request: Request | None = None  # head parsed, body still arriving
        self.chunk_at = 0  # chunked body: where the next chunk starts in buf
        self.chunks: list[bytes] = []
        self.chunked_size = 0
        self.continued = False  # 100 Continue sent
        self.inflight: Any = None  # the request being answered (Pending, Future or True)
        self.out = b""  # answer bytes the socket did not take yet
        self.events = 0
        self.eof = False
        self.closing = 0.0  # answered with Connection: close: drop input until then
        self.last_active = time.monotonic()


_date_cache: tuple[int, str] = (0, "")


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
    """An HTTP/1 response: status line, our headers, the app's headers, the body."""
    connection = "keep-alive" if keep_alive else "close"
    lines = [f"HTTP/{version[0]}.{version[1]} {status}\r\nServer: {SERVER}\r\n"
             + f"Date: {http_date()}\r\nConnection: {connection}\r\n"]
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


class EventLoopWorker(base.Worker):
    """A gunicorn worker serving HTTP/1.1 from one selector loop (see the module doc)."""

    accept_pause_s = ACCEPT_PAUSE_S
    stop_linger_s = STOP_LINGER_S

    def init_process(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.conns: set[Conn] = set()
        self.done: collections.deque[Conn] = collections.deque()  # answers to send
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.wake_sent = False
        self.pool: ThreadPoolExecutor | None = None
        self.accepting = False
        self.accept_paused_until = 0.0
        self.next_deadline_check = float("inf")
        self.requests = 0
        super().init_process()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.alive = False
        self.wake()

    # -- set-up -----------------------------------------------------------
    def run(self) -> None:
        app = self.wsgi
        extensions = getattr(app, "extensions", {})
        self.fast = extensions.get("mkserve.fast_path")
        service = extensions.get("mkserve.service")
        self.max_body = service.settings.max_request_bytes if service is not None else 6553500
        self.new_request_id = (self.fast.new_request_id if self.fast is not None
                               else lambda: os.urandom(16).hex())
        cfg = self.cfg
        self.keepalive = float(cfg.keepalive)
        self.max_line = cfg.limit_request_line
        self.max_fields = cfg.limit_request_fields
        self.max_field = cfg.limit_request_field_size
        self.max_head = ((self.max_line or 8190) + self.max_fields * ((self.max_field or 8190) + 2)
                         + 4)
        self.service = service
        counts = getattr(self.app, "connection_counts", None)
        slot = getattr(self, "mkserve_slot", None)
        self.counts = counts if cfg.workers > 1 and slot is not None else None
        self.slot = slot or 0
        self.forced_accept = False
        self.published_ready = False
        if service is not None:
            service.on_ready = self.wake  # the loop publishes "ready" at once (see poll)
        address = self.sockets[0].getsockname() if self.sockets else ("", "")
        self.server_address = address if isinstance(address, tuple) else (address, "")
        self.pool = ThreadPoolExecutor(max_workers=max(1, cfg.threads),
                                       thread_name_prefix="mkserve-request")
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        for listener in self.sockets:
            listener.setblocking(False)
        self.set_accepting(True)
        try:
            self.serve()
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
            for conn in list(self.conns):
                self.close(conn)
            self.selector.close()

    def set_accepting(self, on: bool) -> None:
        if on == self.accepting:
            return
        for listener in self.sockets:
            if on:
                self.selector.register(listener, selectors.EVENT_READ, listener)
            else:
                self.selector.unregister(listener)
        self.accepting = on

    # -- the loop ---------------------------------------------------------
    def serve(self) -> None:
        notified = 0.0
        swept = time.monotonic()
        while self.alive:
            now = time.monotonic()
            if now - notified >= 1.0:
                self.notify()
                notified = now
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
            if now - swept >= 1.0:
                self.sweep(now)
                self.publish()  # readiness may have changed
                swept = now
            if self.accept_paused_until and now >= self.accept_paused_until:
                self.accept_paused_until = 0.0
                self.forced_accept = True  # one connection, even if still the busiest
                self.set_accepting(True)
            self.poll(self.timeout_for(now, 1.0))
        self.stop()

    def stop(self) -> None:
        """Graceful stop: no new connections; finish what is in flight or arrives soon."""
        self.set_accepting(False)
        self.accept_paused_until = 0.0
        self.publish()  # NOT_READY: the others stop leaving connections to this one
        now = time.monotonic()
        until = now + self.cfg.graceful_timeout
        linger_until = now + self.stop_linger_s
        while self.conns and time.monotonic() < until:
            now = time.monotonic()
            self.notify()
            for conn in list(self.conns):
                idle = conn.inflight is None and not conn.buf and not conn.out
                if idle and (now >= linger_until or conn.closing):
                    self.close(conn)
            self.poll(self.timeout_for(now, min(0.1, max(0.0, until - now))))

    def timeout_for(self, now: float, longest: float) -> float:
        timeout = longest
        if self.accept_paused_until:
            timeout = min(timeout, self.accept_paused_until - now)
        if self.next_deadline_check != float("inf"):
            timeout = min(timeout, self.next_deadline_check - now)
        return max(0.0, timeout)

    def poll(self, timeout: float) -> None:
        try:
            events = self.selector.select(timeout)
        except InterruptedError:
            events = []
        for key, mask in events:
            target = key.data
            if target is None:
                self.drain_wakeups()
            elif isinstance(target, Conn):
                try:
                    if mask & selectors.EVENT_WRITE:
                        self.write(target)
                    if mask & selectors.EVENT_READ and target in self.conns:
                        self.read(target)
                except Exception:  # one connection's trouble stays its own
                    self.log.exception("error serving a connection; closing it")
                    self.close(target)
            else:
                self.accept(target)
        self.send_done()
        if self.next_deadline_check <= time.monotonic():
            self.expire_overdue()
        if not self.published_ready and self.ready():
            self.published_ready = True
            self.publish()

    def wake(self) -> None:
        """Called from any thread: make the loop look at `done` soon."""
        if not self.wake_sent:
            self.wake_sent = True
            try:
                os.write(self.wake_w, b"!")
            except OSError:
                pass  # the pipe is full: the loop is already due to wake

    def drain_wakeups(self) -> None:
        try:
            os.read(self.wake_r, 4096)
        except OSError:
            pass
        self.wake_sent = False  # before send_done looks at the queue (see wake)

    # -- connections ------------------------------------------------------
    def accept(self, listener: socket.socket) -> None:
        for _ in range(64):
            if self.crowded():
                self.pause_accepting()
                return
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.log.error("cannot accept a connection: %s", exc)
                    self.pause_accepting()
                    return
                raise
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock, addr)
            self.conns.add(conn)
            self.forced_accept = False
            self.publish()
            self.set_events(conn, selectors.EVENT_READ)

    def ready(self) -> bool:
        service = self.service
        return self.alive and (service is None or service.ready)

    def publish(self) -> None:
        """Write this worker's connection count (or NOT_READY) to the shared table."""
        if self.counts is not None:
            self.counts[self.slot] = len(self.conns) if self.ready() else NOT_READY

    def crowded(self) -> bool:
        """True if a new connection should be left to another worker: one that is ready
        while this one is not (its model loads: it would answer 503), or a ready one
        holding fewer connections (unless this worker paused for it already)."""
        counts = self.counts
        if counts is None:
            return False
        slot = self.slot
        if not self.ready():
            return any(count < NOT_READY for i, count in enumerate(counts) if i != slot)
        if self.forced_accept:
            return False
        mine = len(self.conns)
        return any(count < mine for i, count in enumerate(counts) if i != slot)

    def pause_accepting(self) -> None:
        self.set_accepting(False)
        self.accept_paused_until = time.monotonic() + self.accept_pause_s

    def set_events(self, conn: Conn, events: int) -> None:
        if events == conn.events:
            return
        if not events:
            self.selector.unregister(conn.sock)
        elif not conn.events:
            self.selector.register(conn.sock, events, conn)
        else:
            self.selector.modify(conn.sock, events, conn)
        conn.events = events

    def close(self, conn: Conn) -> None:
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        self.publish()
        if conn.events:
            self.selector.unregister(conn.sock)
            conn.events = 0
        try:
            conn.sock.close()
        except OSError:
            pass

    def sweep(self, now: float) -> None:
        """Close connections idle past keep-alive, or too slow to send their request."""
        for conn in list(self.conns):
            if conn.out:
                if now - conn.last_active > self.timeout:
                    self.close(conn)  # the client has not read its answer for `timeout`
                continue
            if conn.inflight is not None:
                continue
            if conn.closing:
                if now >= conn.closing:
                    self.close(conn)
            elif conn.buf or conn.request is not None:
                if now - conn.last_active > self.timeout:
                    self.close(conn)  # a request begun and stalled for `timeout`
            elif now - conn.last_active > self.keepalive:
                self.close(conn)

    def read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(conn)
            return
        if conn.closing:
            if not data:
                self.close(conn)
            return  # answered and closing: what the client still sends is dropped
        if not data:
            conn.eof = True
            if conn.inflight is None and not conn.out:
                self.close(conn)
            else:
                self.set_events(conn, selectors.EVENT_WRITE if conn.out else 0)
            return
        conn.last_active = time.monotonic()
        conn.buf += data
        if conn.inflight is not None or conn.out:
            if len(conn.buf) > MAX_BUFFERED:
                self.set_events(conn, selectors.EVENT_WRITE if conn.out else 0)
            return
        self.next_request(conn)

    def next_request(self, conn: Conn) -> None:
        """Start answering the next complete request in the buffer, if there is one."""
        try:
            request = conn.request
            if request is None:
                request = self.read_head(conn)
                if request is None:
                    return
            if not self.read_body(conn, request):
                return
        except HttpError as error:
            conn.request = None
            self.log.debug("refused a request from %s: %s", conn.addr, error.message)
            self.answer_error(conn, error, (1, 1))
            return
        conn.request = None
        conn.continued = False
        self.dispatch(conn, request)

    def read_head(self, conn: Conn) -> Request | None:
        buf = conn.buf
        while buf[:2] == b"\r\n":  # empty lines before a request are ignored (RFC 9112)
            del buf[:2]
        end = buf.find(b"\r\n\r\n", max(0, conn.scanned - 3))
        if end < 0:
            conn.scanned = len(buf)
            if len(buf) > self.max_head:
                raise HttpError(431, "request head is too large")
            newline = buf.find(b"\r\n")
            if self.max_line and (newline > self.max_line or
                                  newline < 0 and len(buf) > self.max_line):
                raise HttpError(414, f"request line is longer than {self.max_line} bytes")
            return None
        conn.scanned = 0
        request = parse_head(buf[:end].decode("latin-1"), self.max_line, self.max_fields,
                             self.max_field)
        del buf[:end + 4]
        if request.length is not None and request.length > self.max_body:
            raise self.too_large()
        conn.request = request
        conn.chunk_at = 0
        conn.chunks = []
        conn.chunked_size = 0
        return request

    def read_body(self, conn: Conn, request: Request) -> bool:
        """True once the body is in `request.body` (and out of the buffer)."""
        buf = conn.buf
        if request.chunked:
            if not self.read_chunks(conn, request):
                self.send_continue(conn, request)
                return False
            return True
        length = request.length or 0
        if len(buf) < length:
            self.send_continue(conn, request)
            return False
        request.body = bytes(buf[:length])
        del buf[:length]
        return True

    def read_chunks(self, conn: Conn, request: Request) -> bool:
        """True once a chunked body is complete (in `request.body`, out of the buffer).

        Resumes where the last call stopped (`conn.chunk_at`); the body so far counts
        against the limit, and so does the framing (many tiny chunks)."""
        buf = conn.buf
        at = conn.chunk_at
        while True:
            end = buf.find(b"\r\n", at)
            if end < 0:
                if len(buf) - at > 1024:
                    raise HttpError(400, "malformed chunk size line")
                return False
            size_text = bytes(buf[at:end]).split(b";", 1)[0].strip(b" \t")
            if not HEX.fullmatch(size_text):
                raise HttpError(400, "malformed chunk size")
            size = int(size_text, 16)
            if size == 0:  # the last chunk, then optional trailer fields, then a blank line
                trailer_end = end if buf[end:end + 4] == b"\r\n\r\n" else buf.find(
                    b"\r\n\r\n", end)
                if trailer_end < 0:
                    return False
                request.body = b"".join(conn.chunks)
                conn.chunks = []
                del buf[:trailer_end + 4]
                return True
            if conn.chunked_size + size > self.max_body or len(buf) > 4 * self.max_body + 65536:
                raise self.too_large()
            start = end + 2
            if len(buf) < start + size + 2:
                conn.chunk_at = at
                return False
            if buf[start + size:start + size + 2] != b"\r\n":
                raise HttpError(400, "malformed chunk")
            conn.chunks.append(bytes(buf[start:start + size]))
            conn.chunked_size += size
            at = conn.chunk_at = start + size + 2

    def too_large(self) -> HttpError:
        return HttpError(413, f"request body is larger than the limit of {self.max_body} "
                              "bytes (MKSERVE_MAX_REQUEST_SIZE)")

    def send_continue(self, conn: Conn, request: Request) -> None:
        if (not conn.continued and request.version >= (1, 1)
                and request.headers.get("Expect", "").lower() == "100-continue"):
            conn.continued = True
            self.send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- answering --------------------------------------------------------
    def dispatch(self, conn: Conn, request: Request) -> None:
        self.requests += 1
        fast = self.fast
        if (fast is not None and not request.chunked
                and fast.matches(request.method, request.path, request.query,
                                 request.content_type, request.length)):
            started = time.perf_counter()
            headers = request.headers
            request_id = headers.get("X-Request-Id") or self.new_request_id()
            done = self.done
            wake = self.wake

            def on_done(_group: Any) -> None:
                done.append(conn)
                wake()

            result = fast.begin(request.path, request.body, request.content_type, headers,
                                request_id, started, on_done)
            conn.inflight = (request, result)
            if isinstance(result, Pending):
                self.next_deadline_check = min(self.next_deadline_check, result.deadline)
            else:
                done.append(conn)  # answered at once (an error)
            return
        conn.inflight = (request, self.pool.submit(self.call_app, conn, request))  # type: ignore[union-attr]
        conn.inflight[1].add_done_callback(lambda _future: (self.done.append(conn),
                                                            self.wake()))

    def send_done(self) -> None:
        """Send the answers that are ready (called by the loop thread only)."""
        done = self.done
        while done:
            conn = done.popleft()
            inflight = conn.inflight
            if inflight is None:
                continue
            request, result = inflight
            if conn not in self.conns:  # the client left: count and log the answer anyway
                conn.inflight = None
                if isinstance(result, Pending) and not result.group.remaining:
                    self.fast.complete(result)  # type: ignore[union-attr]
                continue
            keep_alive = self.keeps_alive(request)
            try:
                if isinstance(result, Future):
                    status, headers, body = result.result()
                else:
                    if isinstance(result, Pending):
                        if result.group.remaining:
                            continue  # not answered yet (a wake-up for an earlier request)
                        result = self.fast.complete(result)  # type: ignore[union-attr]
                    if isinstance(result, tuple):
                        code, headers, body = result
                        status = status_line(code)
                    else:  # a werkzeug Response
                        app_iter, status, headers = result.get_wsgi_response(
                            self.environ(request, conn))
                        body = b"".join(app_iter)
                data = response_bytes(request.version, status, headers, body, keep_alive,
                                      head_only=request.method == "HEAD")
            except Exception:  # a bug here must not take the loop down
                self.log.exception("error answering %s %s", request.method, request.path)
                keep_alive = False
                data = response_bytes(request.version, status_line(500),
                                      [("Content-Type", "application/json")],
                                      ServingError("internal error").to_json(), False)
            conn.inflight = None
            self.finish(conn, data, keep_alive)

    def keeps_alive(self, request: Request) -> bool:
        return (request.keep_alive and self.alive and self.keepalive > 0
                and self.requests < self.max_requests)

    def finish(self, conn: Conn, data: bytes, keep_alive: bool) -> None:
        if self.requests >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        conn.last_active = time.monotonic()
        self.send(conn, data)
        if conn not in self.conns:
            return
        if not keep_alive:
            self.start_closing(conn)
        elif not conn.out:
            self.resume(conn)

    def resume(self, conn: Conn) -> None:
        """After an answer has left: start the next request, or wait for one."""
        if not conn.eof:
            self.set_events(conn, selectors.EVENT_READ)
        if conn.buf:
            self.next_request(conn)
        if conn.eof and conn.inflight is None and not conn.out:
            self.close(conn)  # the client has said all it will say

    def answer_error(self, conn: Conn, error: ServingError, version: tuple[int, int]) -> None:
        data = response_bytes(version, status_line(error.status),
                              [("Content-Type", "application/json")], error.to_json(), False)
        conn.last_active = time.monotonic()
        self.send(conn, data)
        if conn in self.conns:
            self.start_closing(conn)

    def start_closing(self, conn: Conn) -> None:
        """After a "Connection: close" answer: send the rest, then close gracefully."""
        conn.closing = time.monotonic() + CLOSE_LINGER_S
        conn.buf.clear()
        if not conn.out:
            self.shutdown_write(conn)

    def shutdown_write(self, conn: Conn) -> None:
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close(conn)
            return
        if conn.eof:
            self.close(conn)
        else:
            self.set_events(conn, selectors.EVENT_READ)  # until the client closes

    def send(self, conn: Conn, data: bytes) -> None:
        if conn.out:
            conn.out += data
            return
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close(conn)
            return
        if sent:
            conn.last_active = time.monotonic()
        if sent < len(data):
            conn.out = data[sent:]
            self.set_events(conn, selectors.EVENT_WRITE)

    def write(self, conn: Conn) -> None:
        data, conn.out = conn.out, b""
        self.send(conn, data)
        if conn in self.conns and not conn.out:
            if conn.closing:
                self.shutdown_write(conn)
            elif conn.inflight is None:
                self.resume(conn)
            else:
                self.set_events(conn, 0 if conn.eof else selectors.EVENT_READ)

    def expire_overdue(self) -> None:
        """Answer fast-path requests past their deadline with a 504."""
        now = time.monotonic()
        soonest = float("inf")
        for conn in list(self.conns):
            inflight = conn.inflight
            if inflight is None or not isinstance(inflight[1], Pending):
                continue
            pending = inflight[1]
            if pending.deadline <= now:
                self.fast.expire(pending.jobs)  # type: ignore[union-attr]
            else:
                soonest = min(soonest, pending.deadline)
        self.next_deadline_check = soonest

    # -- the rest of the app, in the thread pool ----------------------------
    def call_app(self, conn: Conn, request: Request) -> tuple[str, list[tuple[str, str]], bytes]:
        """Run the WSGI app for one request: its status, headers and whole body."""
        environ = self.environ(request, conn)
        status_headers: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info and status_headers:
                raise exc_info[1].with_traceback(exc_info[2])
            status_headers[:] = [status, headers]
            return written.append

        written: list[bytes] = []
        result = self.wsgi(environ, start_response)
        try:
            body = b"".join([*written, *result])
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = status_headers
        return status, headers, body

    def environ(self, request: Request, conn: Conn | None) -> dict[str, Any]:
        """The WSGI environ gunicorn would make for `request`."""
        server = self.server_address
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query,
            "RAW_URI": request.target,
            "REQUEST_URI": request.target,
            "SERVER_PROTOCOL": f"HTTP/{request.version[0]}.{request.version[1]}",
            "SERVER_SOFTWARE": SERVER,
            "SERVER_NAME": str(server[0]),
            "SERVER_PORT": str(server[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(request.body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": self.cfg.workers > 1,
            "wsgi.run_once": False,
        }
        if conn is not None and isinstance(conn.addr, tuple):
            environ["REMOTE_ADDR"] = str(conn.addr[0])
            environ["REMOTE_PORT"] = str(conn.addr[1])
        for name, value in request.headers.items():
            if name == "Content-Type":
                environ["CONTENT_TYPE"] = value
            elif name == "Content-Length":
                environ["CONTENT_LENGTH"] = value
            elif name == "Transfer-Encoding":
                continue  # the body is already de-chunked
            else:
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        if request.chunked:
            environ["CONTENT_LENGTH"] = str(len(request.body))
        if "HTTP_HOST" in environ:
            environ["SERVER_NAME"] = environ["HTTP_HOST"].rsplit(":", 1)[0]
        return environ
