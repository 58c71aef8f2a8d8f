"""The HTTP/1.1 server of one worker: one selector loop, no thread per prediction.

- The loop accepts, reads, and hands what it reads to each connection's parser
  (parser.py: llhttp with mkserve's limits). Complete requests are answered in
  order, one at a time per connection; pipelined ones wait, and past a bound the
  connection is not read until they are answered.
- Predictions on the hot route (`FastPath.matches`) are decoded and queued for
  the model thread right in the loop (`FastPath.begin`). The model thread
  answers a whole batch, each request's Group calls back, and one byte on a pipe
  wakes the loop, which encodes and sends the answers (`FastPath.complete`). A
  request whose deadline passes first is answered 504 (`FastPath.expire`).
- Every other request (probes, metrics, KServe, forms, queries) runs the whole
  WSGI app in a pool of `threads` threads (wsgi.py); the loop sends the answer.
- Bounds: a connection idles up to `keepalive` s between requests; a head must
  arrive within `head_timeout` s of its first byte, and a body at `body_min_rate`
  bytes/s after that grace (else 408); a request or an answer that makes no
  progress for `stall_timeout` s closes the connection. A worker holds at most
  `max_connections` (accepting pauses at the cap, the rest wait in the kernel's
  backlog); accept failures such as EMFILE back off and are logged at a bounded
  rate. Connections are spread across workers (balancer.py).
- On a graceful stop the server stops accepting, answers what is in flight and
  what arrives on open connections within `stop_linger_s` (with "Connection:
  close"), and returns once every connection is done or `graceful_timeout` has
  passed. After `max_requests` answers it stops the same way.
"""
from __future__ import annotations

import logging
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ServingError
from .accept import Acceptor
from .balancer import Balancer
from .connection import Conn
from .dispatch import Dispatcher, FastRoute
from .request import HttpError, Limits, Request
from .response import CONTINUE, error_bytes

READ_SIZE = 65536
# After answering with "Connection: close", how long to read and drop what the client
# still sends (an unread body), so that closing does not reset the answer away.
CLOSE_LINGER_S = 1.0
# ...and how much of it: a client that keeps sending past that is not reading the answer.
CLOSE_LINGER_BYTES = 256 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """What the server is held to; the worker fills it from gunicorn's and mkserve's settings."""

    limits: Limits = field(default_factory=Limits)
    keepalive: float = 5.0
    stall_timeout: float = 30.0  # gunicorn's `timeout`
    graceful_timeout: float = 8.0
    max_requests: int = 0  # 0: no limit
    threads: int = 8
    head_timeout: float = 10.0
    body_min_rate: float = 8192.0
    max_connections: int = 1000
    multiprocess: bool = False
    stop_linger_s: float = 2.0
    accept_pause_s: float = 0.002  # how long a crowded worker leaves connections to others


class HttpServer:
    """Serve HTTP/1.1 on `sockets` until `stop()` (see the module doc).

    `ready()` says whether the app can answer (its model is loaded);
    `heartbeat()` is called about once a second and returns False when the
    server should stop (gunicorn's parent went away). Everything but `wake` and
    `stop` runs in the loop thread.
    """

    def __init__(self, app: Callable[..., Any], config: ServerConfig,
                 sockets: list[socket.socket], log: logging.Logger | Any,
                 balancer: Balancer, fast: FastRoute | None = None,
                 ready: Callable[[], bool] = lambda: True,
                 heartbeat: Callable[[], bool] = lambda: True) -> None:
        self.app = app
        self.config = config
        self.sockets = sockets
        self.log = log
        self.balancer = balancer
        self.app_ready = ready
        self.heartbeat = heartbeat
        self.alive = True
        self.selector = selectors.DefaultSelector()
        self.conns: set[Conn] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.wake_sent = False
        self.requests = 0
        self.published_ready = False
        self.max_requests = config.max_requests or (1 << 62)
        self.acceptor = Acceptor(self.selector, sockets, balancer, config.max_connections,
                                 config.accept_pause_s, self.conns.__len__, log)
        address = sockets[0].getsockname() if sockets else ("", "")
        self.dispatcher = Dispatcher(
            app, fast, config.threads, address if isinstance(address, tuple) else (address, ""),
            config.multiprocess, self.wake, log)

    # -- lifecycle ----------------------------------------------------------
    def serve(self) -> None:
        """Run until stopped, then stop gracefully; close everything on the way out."""
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.acceptor.update()
        try:
            self.main_loop()
            self.drain()
        finally:
            self.dispatcher.close()
            for conn in list(self.conns):
                self.close(conn)
            self.selector.close()
            os.close(self.wake_r)
            os.close(self.wake_w)

    def stop(self) -> None:
        """From any thread (a signal handler): stop gracefully."""
        self.alive = False
        self.wake()

    def main_loop(self) -> None:
        beat = swept = 0.0
        while self.alive:
            now = time.monotonic()
            if now - beat >= 1.0:
                beat = now
                if not self.heartbeat():
                    break
            if now - swept >= 1.0:
                self.sweep(now)
                self.publish()  # readiness may have changed
                swept = now
            self.acceptor.tick(now)
            self.poll(self.timeout_for(now, 1.0))

    def drain(self) -> None:
        """Graceful stop: no new connections; finish what is in flight or arrives soon."""
        self.alive = False
        self.acceptor.close()
        self.publish()  # NOT_READY: the others stop leaving connections to this one
        now = time.monotonic()
        until = now + self.config.graceful_timeout
        linger_until = now + self.config.stop_linger_s
        while self.conns and time.monotonic() < until:
            now = time.monotonic()
            self.heartbeat()
            for conn in list(self.conns):
                if not conn.busy() and not conn.begun() and (now >= linger_until or conn.closing):
                    self.close(conn)
            self.poll(self.timeout_for(now, min(0.1, max(0.0, until - now))))

    def timeout_for(self, now: float, longest: float) -> float:
        timeout = longest
        if self.acceptor.resume_at:
            timeout = min(timeout, self.acceptor.resume_at - now)
        if self.dispatcher.next_deadline != float("inf"):
            timeout = min(timeout, self.dispatcher.next_deadline - now)
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
                for sock, addr in self.acceptor.accept(target):
                    conn = Conn(sock, addr, self.config.limits)
                    self.conns.add(conn)
                    self.publish()
                    self.set_events(conn, selectors.EVENT_READ)
        self.send_answers()
        if self.dispatcher.next_deadline <= time.monotonic():
            self.dispatcher.expire_overdue(self.conns)
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
        self.wake_sent = False  # before send_answers looks at the queue (see wake)

    # -- readiness ----------------------------------------------------------
    def ready(self) -> bool:
        return self.alive and self.app_ready()

    def publish(self) -> None:
        self.balancer.publish(len(self.conns))

    # -- connections --------------------------------------------------------
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
        if not self.acceptor.listening:
            self.acceptor.update()  # below the cap again

    def sweep(self, now: float) -> None:
        """Hold each connection to its deadlines (see the module doc)."""
        config = self.config
        for conn in list(self.conns):
            if conn.out:
                if now - conn.last_active > config.stall_timeout:
                    self.close(conn)  # the client has not read its answer
                continue
            if conn.inflight is not None:
                continue
            if conn.closing:
                if now >= conn.closing:
                    self.close(conn)
                continue
            late = conn.overdue(now, config.head_timeout, config.body_min_rate)
            if late is not None:
                self.log.debug("closing a slow connection from %s: %s", conn.addr, late.message)
                self.answer_error(conn, late)
            elif conn.begun():
                if now - conn.last_active > config.stall_timeout:
                    self.close(conn)  # a request begun and stalled
            elif not conn.busy() and now - conn.last_active > config.keepalive:
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
            conn.dropped += len(data)
            if not data or conn.dropped > CLOSE_LINGER_BYTES:
                self.close(conn)
            return  # answered and closing: what the client still sends is dropped
        if not data:
            conn.eof = True
            if conn.busy():
                self.set_events(conn, selectors.EVENT_WRITE if conn.out else 0)
            else:
                self.close(conn)
            return
        conn.last_active = time.monotonic()
        conn.take(data)
        if conn.inflight is None and not conn.out:
            self.next_request(conn)
        elif not conn.reading():
            self.set_events(conn, selectors.EVENT_WRITE if conn.out else 0)

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
                self.set_events(conn, selectors.EVENT_READ if conn.reading() else 0)

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

    # -- requests -----------------------------------------------------------
    def next_request(self, conn: Conn) -> None:
        """Answer the next complete request, or wait for one (sending 100 Continue)."""
        item = conn.next()
        if item is None:
            current = conn.parser.current
            if current is not None and current.expect_continue and conn.continued is not current:
                conn.continued = current  # the client waits for this before its body
                conn.waiting_since = time.monotonic()
                self.send(conn, CONTINUE)
            return
        if isinstance(item, HttpError):
            self.log.debug("refused a request from %s: %s", conn.addr, item.message)
            conn.error = None
            self.answer_error(conn, item)
            return
        self.requests += 1
        self.dispatcher.dispatch(conn, item)

    def send_answers(self) -> None:
        """Send the streamed parts and the answers that are ready."""
        for conn, data in self.dispatcher.stream_parts(self.conns, self.keeps_alive):
            conn.last_active = time.monotonic()
            self.send(conn, data)
        for conn, request, result in self.dispatcher.answers(self.conns):
            data, keep_alive = self.dispatcher.render(conn, request, result,
                                                      self.keeps_alive(request))
            self.finish(conn, data, keep_alive)

    def keeps_alive(self, request: Request) -> bool:
        return (request.keep_alive and self.alive and self.config.keepalive > 0
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
        self.set_events(conn, selectors.EVENT_READ if conn.reading() else 0)
        conn.waiting_since = time.monotonic()
        self.next_request(conn)
        if conn.eof and not conn.busy() and conn.error is None:
            self.close(conn)  # the client has said all it will say

    def answer_error(self, conn: Conn, error: ServingError,
                     version: tuple[int, int] = (1, 1)) -> None:
        conn.last_active = time.monotonic()
        self.send(conn, error_bytes(error, version))
        if conn in self.conns:
            self.start_closing(conn)

    def start_closing(self, conn: Conn) -> None:
        """After a "Connection: close" answer: send the rest, then close gracefully."""
        conn.closing = time.monotonic() + CLOSE_LINGER_S
        if not conn.out:
            self.shutdown_write(conn)
