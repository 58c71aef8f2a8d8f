"""The HTTP server (runtime/http/server.py) in-process: the connection cap and accept failures.

The server runs in a thread over a real listening socket with a tiny WSGI app;
everything else about it is tested on the real process tree (tests/e2e).
"""
from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from mkserve.runtime.http import HttpServer, ServerConfig
from mkserve.runtime.http.balancer import Balancer


def hello(environ: dict, start_response: Callable) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


class FailingListener(socket.socket):
    """A listening socket whose accept() fails as it does when descriptors run out."""

    attempts = 0

    def accept(self):  # type: ignore[override]
        FailingListener.attempts += 1
        raise OSError(errno.EMFILE, "Too many open files")


@contextmanager
def running(config: ServerConfig, listener: socket.socket,
            log: logging.Logger) -> Iterator[HttpServer]:
    server = HttpServer(hello, config, [listener], log, Balancer(None, 0, lambda: True))
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
        listener.close()


def listening(kind: type[socket.socket] = socket.socket) -> socket.socket:
    sock = kind(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def get(port: int, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


def test_accept_failing_for_want_of_descriptors_backs_off_and_logs_once(
        caplog: pytest.LogCaptureFixture):
    listener = listening(FailingListener)
    port = listener.getsockname()[1]
    log = logging.getLogger("test.http.emfile")
    FailingListener.attempts = 0
    with caplog.at_level(logging.ERROR, logger=log.name), \
            running(ServerConfig(), listener, log):
        waiting = socket.create_connection(("127.0.0.1", port))  # stays in the backlog
        time.sleep(2.0)
        waiting.close()
    # Without the back-off the loop retried accept() as fast as epoll woke it.
    assert 2 <= FailingListener.attempts <= 2.0 / 0.25 + 2
    lines = [r for r in caplog.records if "cannot accept connections" in r.getMessage()]
    assert len(lines) == 1 and "Too many open files" in lines[0].getMessage()
    assert "MKSERVE_MAX_CONNECTIONS" in lines[0].getMessage()


def test_at_the_connection_cap_new_connections_wait_in_the_backlog():
    listener = listening()
    port = listener.getsockname()[1]
    with running(ServerConfig(max_connections=2), listener,
                 logging.getLogger("test.http.cap")) as server:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        deadline = time.monotonic() + 5
        while len(server.conns) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(server.conns) == 2
        result: list[bytes] = []
        third = threading.Thread(target=lambda: result.append(get(port)))
        third.start()
        time.sleep(0.5)
        assert not result and len(server.conns) == 2  # accepted by the kernel, not by us
        held[0].close()  # a slot frees: the waiting client is taken and served
        third.join(5)
        assert result and result[0].startswith(b"HTTP/1.1 200 ") and result[0].endswith(b"hello")
        held[1].close()
