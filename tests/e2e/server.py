"""Test support: run `mkserve serve` as a real process tree on a free port."""
from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def plain_model(folder: Path, code: str) -> Path:
    """A plain model folder named `plain` whose handler.py is `code`."""
    folder.mkdir(parents=True)
    (folder / "handler.py").write_text(code)
    (folder / "mkserve.yaml").write_text("modelName: plain\nhandler: handler.py\n")
    return folder


class Server:
    """`mkserve serve SOURCE` in its own process group, with its log captured to a file."""

    def __init__(self, source: Path | str, log_dir: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), open_files: int | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"server-{self.port}.log"
        full_env = {**os.environ, "MKSERVE_LOG_FORMAT": "json", **(env or {})}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mkserve.builder.cli", "serve", str(source),
             "--port", str(self.port), *args],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=None if open_files is None else lambda: resource.setrlimit(  # noqa: PLW1509
                resource.RLIMIT_NOFILE, (open_files, open_files)))

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log()}")

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def terminate(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Server:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        if not self._log.closed:
            self._log.close()
