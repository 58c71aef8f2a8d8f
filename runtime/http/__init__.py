"""mkserve's HTTP/1.1 server: llhttp framing, mkserve's limits, one event loop per worker.

- `request`: a parsed request, the limits it is held to, the error that refuses it.
- `parser`: llhttp (through httptools, strict) fed from the loop, with mkserve's
  own rules on top (sizes, counts, Host, versions, methods, 100-continue).
- `connection`: one client connection: its parser, the requests waiting in it,
  the answer being sent, and the deadlines it is held to.
- `response`: the bytes of an answer.
- `wsgi`: the WSGI environ of a request, and a call of the app for it.
- `balancer`: the table of connections per worker that spreads them across workers.
- `accept`: when a worker listens, the connection cap, the back-off after failures.
- `dispatch`: the predictions fast path from the loop, or the app in a thread pool.
- `server`: the loop: read, dispatch, write, sweep, graceful stop.

The gunicorn worker class that runs the server is `mkserve.runtime.worker`.
"""
from __future__ import annotations

from .request import HttpError, Limits, Request
from .server import HttpServer, ServerConfig

__all__ = ["HttpError", "HttpServer", "Limits", "Request", "ServerConfig"]
