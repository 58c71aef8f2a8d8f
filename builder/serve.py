"""`mkserve serve`: run the image's runtime locally, with no container engine."""
from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Mapping
from typing import Any

from mkserve.runtime import QUIET_WARNINGS
from mkserve.runtime.settings import SettingsError, to_env

from .errors import UsageError


def serve_env(source: str, overrides: Mapping[str, Any],
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the runtime starts with: flags win over the caller's environment."""
    env = dict(os.environ if base is None else base)
    try:
        env.update(to_env({"model_dir": os.path.abspath(source), **overrides}))
    except (SettingsError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    # As in the image (and after the caller's own filters, which therefore win).
    env["PYTHONWARNINGS"] = ",".join(filter(None, [QUIET_WARNINGS,
                                                   env.get("PYTHONWARNINGS", "")]))
    return env


def exec_runtime(env: Mapping[str, str]) -> None:
    """Replace this process by the runtime, exactly as the image's ENTRYPOINT starts it."""
    argv = [sys.executable, "-m", "mkserve.runtime"]
    os.execvpe(argv[0], argv, dict(env))


def check_port_free(host: str, port: int, flag: str = "--port") -> None:
    """Refuse at once, with the flag to change, a port another process listens on (the
    gRPC listener shares its port with SO_REUSEPORT, so another server's is refused too)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is already in use (another server?); "
                                 f"pass {flag} with a free one, e.g. {flag} "
                                 f"{free_port(host, family)}") from None
            if exc.errno == errno.EACCES:
                raise UsageError(f"port {port} needs privileges on this machine; pass {flag} "
                                 "1024 or above") from None
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def free_port(host: str, family: int) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
