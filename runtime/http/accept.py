"""Accepting connections: when a worker listens, when it pauses, what a failed accept does.

A worker listens unless it is stopping, its accepting is paused, or it holds
its cap of connections (then the rest wait in the kernel's listen backlog, and
it listens again when one closes). It pauses for a moment when the balancer
says another worker should take the next connection, and for ACCEPT_BACKOFF_S
when accept() fails for want of descriptors or memory: without the pause,
level-triggered epoll wakes the loop for the same waiting connection at once,
and the hand-written server logged ~12,600 EMFILE errors in 35 s.
"""
from __future__ import annotations

import errno
import logging
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from .balancer import Balancer

# How long accepting pauses after accept() failed for want of resources (EMFILE...).
ACCEPT_BACKOFF_S = 0.25
# At most one log line per this many seconds about failed accepts.
ACCEPT_LOG_EVERY_S = 10.0
RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Acceptor:
    """The listening sockets of one worker, registered with its loop's selector or not.

    `connections()` is how many connections the worker holds now. Called from the
    loop thread only.
    """

    def __init__(self, selector: selectors.BaseSelector, sockets: list[socket.socket],
                 balancer: Balancer, max_connections: int, pause_s: float,
                 connections: Callable[[], int], log: logging.Logger | Any) -> None:
        self.selector = selector
        self.sockets = sockets
        self.balancer = balancer
        self.max_connections = max_connections
        self.pause_s = pause_s
        self.connections = connections
        self.log = log
        self.open = True  # False once the server stops
        self.listening = False
        self.resume_at = 0.0  # paused until then (0: not paused)
        self.failures = 0
        self.logged_at = -ACCEPT_LOG_EVERY_S
        for listener in sockets:
            listener.setblocking(False)

    def update(self) -> None:
        """Listen unless closed, paused, or at the connection cap."""
        on = self.open and not self.resume_at and self.connections() < self.max_connections
        if on == self.listening:
            return
        for listener in self.sockets:
            if on:
                self.selector.register(listener, selectors.EVENT_READ, listener)
            else:
                self.selector.unregister(listener)
        self.listening = on

    def close(self) -> None:
        self.open = False
        self.resume_at = 0.0
        self.update()

    def pause(self, seconds: float) -> None:
        self.resume_at = time.monotonic() + seconds
        self.update()

    def tick(self, now: float) -> None:
        """End a pause that is due; the next connection is then taken in any case."""
        if self.resume_at and now >= self.resume_at:
            self.resume_at = 0.0
            self.balancer.forced = True  # one connection, even if still the busiest
            self.update()

    def accept(self, listener: socket.socket) -> Iterator[tuple[socket.socket, Any]]:
        """The connections waiting on `listener` that this worker should take now."""
        for _ in range(64):
            if self.connections() >= self.max_connections:
                self.update()  # the rest wait in the backlog until one closes
                return
            if self.balancer.crowded(self.connections()):
                self.pause(self.pause_s)
                return
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                if exc.errno in RESOURCES:
                    self.failed(exc)
                    return
                raise
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.balancer.forced = False
            yield sock, addr

    def failed(self, exc: OSError) -> None:
        """Out of descriptors or memory: back off, and say so at a bounded rate."""
        self.failures += 1
        now = time.monotonic()
        if now - self.logged_at >= ACCEPT_LOG_EVERY_S:
            self.log.error("cannot accept connections (%s; %d time(s) since the last such "
                           "line), holding %d: raise the open-file limit (ulimit -n) or lower "
                           "MKSERVE_MAX_CONNECTIONS", exc.strerror, self.failures,
                           self.connections())
            self.logged_at = now
            self.failures = 0
        self.pause(ACCEPT_BACKOFF_S)
