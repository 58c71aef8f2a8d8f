"""The WSGI side of a request: the environ gunicorn would make, and one call of the app."""
from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import Any

from .request import Request
from .response import SERVER

# (status, headers, body) of a whole answer.
Answer = tuple[str, list[tuple[str, str]], bytes]


def environ(request: Request, server: tuple[str, str], client: Any,
            multiprocess: bool) -> dict[str, Any]:
    """The WSGI environ of `request`, as gunicorn makes it (the body already whole)."""
    env: dict[str, Any] = {
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
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
    }
    if isinstance(client, tuple):
        env["REMOTE_ADDR"] = str(client[0])
        env["REMOTE_PORT"] = str(client[1])
    for name, value in request.headers.items():
        if name == "Content-Type":
            env["CONTENT_TYPE"] = value
        elif name == "Content-Length":
            env["CONTENT_LENGTH"] = value
        elif name != "Transfer-Encoding":  # the body is already de-chunked
            env["HTTP_" + name.upper().replace("-", "_")] = value
    if request.chunked:
        env["CONTENT_LENGTH"] = str(len(request.body))
    if "HTTP_HOST" in env:
        env["SERVER_NAME"] = env["HTTP_HOST"].rsplit(":", 1)[0]
    return env


def call_app(app: Callable[..., Any], env: dict[str, Any]) -> Answer:
    """Run the WSGI app on `env`: its status, headers and whole body."""
    status_headers: list[Any] = []
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info and status_headers:
            raise exc_info[1].with_traceback(exc_info[2])
        status_headers[:] = [status, headers]
        return written.append

    result = app(env, start_response)
    try:
        body = b"".join([*written, *result])
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = status_headers
    return status, headers, body
