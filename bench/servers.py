"""The servers under test: TorchServe 0.12, mkserve (as the image runs it), a trivial endpoint.

Each is started in its own session (process group) with its log in the
benchmark's work folder; `start()` returns the cold start (process start to
the first 200 prediction), `pss_mb()` the PSS summed over the server's
process tree, `stop()` kills everything it started.
"""
from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from mkserve.runtime import routes

from . import procs


class ServerError(RuntimeError):
    pass


def post_once(url: str, body: bytes, content_type: str = "application/json",
              timeout: float = 5.0) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                      timeout=timeout)
    try:
        conn.request("POST", parts.path, body=body, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Server:
    """Base: a command in its own session, polled until a prediction answers 200."""

    label = "server"

    def __init__(self, workdir: Path, model_name: str, body: bytes) -> None:
        self.workdir = workdir
        self.model_name = model_name
        self.body = body
        self.port = procs.free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.label}.log"
        self.cold_start_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{routes.predictions(self.model_name)}"

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        raise NotImplementedError

    def roots(self) -> list[int]:
        """Processes whose trees make up the server (for PSS)."""
        assert self.proc is not None
        return [self.proc.pid]

    def start(self, timeout: float = 180.0) -> float:
        cmd, env, cwd = self.command()
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        started = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = started + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.label} exited with {self.proc.returncode} before "
                                  f"answering; log {self.log_path}:\n{self.log_tail()}")
            try:
                status, answer = post_once(self.url, self.body, timeout=2.0)
                if status == 200:
                    self.cold_start_s = time.monotonic() - started
                    return self.cold_start_s
                last = f"{status} {answer[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.02)
        raise ServerError(f"{self.label} gave no 200 within {timeout:g}s (last: {last}); "
                          f"log {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pss_mb(self) -> tuple[float, dict[str, float]]:
        total, per = procs.tree_pss_mb(self.roots())
        return total, {f"{pid} {procs.cmdline(pid)[:80]}": round(mb, 1) for pid, mb in per.items()}

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the server's processes (None when not ours to measure)."""
        return procs.tree_cpu_seconds(self.roots())

    def stop(self) -> None:
        if self.proc is not None:
            procs.kill_group(self.proc)
        if getattr(self, "_log", None) is not None:
            self._log.close()


class Mkserve(Server):
    """`python -m mkserve.runtime`, exactly as the image's ENTRYPOINT starts it."""

    label = "mkserve"

    def __init__(self, workdir: Path, model_name: str, body: bytes, archive: Path,
                 env: dict[str, str] | None = None, label: str | None = None) -> None:
        if label:
            self.label = label
        super().__init__(workdir, model_name, body)
        self.archive = archive
        self.extra_env = env or {}

    def module(self) -> str:
        return "mkserve.runtime"

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MKSERVE_") and k not in ("PORT", "MODEL_NAME")}
        env.update({"MKSERVE_MODEL": str(self.archive), "PORT": str(self.port),
                    "MKSERVE_HOST": "127.0.0.1", "MKSERVE_LOG_FORMAT": "json"})
        env.update(self.extra_env)
        return [sys.executable, "-m", self.module()], env, self.workdir


class Trivial(Mkserve):
    """mkserve.bench.trivial: mkserve's gunicorn configuration, a do-nothing Flask
    endpoint."""

    label = "trivial"
    variant = "flask"

    def __init__(self, workdir: Path, model_name: str, body: bytes, archive: Path,
                 env: dict[str, str]) -> None:
        super().__init__(workdir, model_name, body, archive,
                         {**env, "MKSERVE_BENCH_TRIVIAL": self.variant}, label=self.label)

    def module(self) -> str:
        return "mkserve.bench.trivial"


class TrivialFast(Trivial):
    """The same, answered through the predictions fast path: mkserve's HTTP stack alone."""

    label = "trivial-fast"
    variant = "fast"


class TorchServe(Server):
    """TorchServe 0.12 with its own model store and config.properties, in the foreground."""

    label = "torchserve"

    def __init__(self, workdir: Path, model_name: str, body: bytes, archive: Path,
                 workers: int, intra_op_threads: int, properties: str = "") -> None:
        super().__init__(workdir, model_name, body)
        self.properties = properties  # more config.properties lines (service_envelope=...)
        self.archive = archive
        self.workers = workers
        self.intra_op_threads = intra_op_threads
        self.home = workdir / f"torchserve-{self.port}"
        self.management_port = procs.free_port()
        self.metrics_port = procs.free_port()
        self.grpc_ports = (procs.free_port(), procs.free_port())

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        exe = shutil.which("torchserve")
        if not exe:
            raise ServerError("torchserve is not installed (pip install torchserve==0.12.0 "
                              "torch-model-archiver pyyaml; needs Java 17)")
        store = self.home / "model_store"
        tmp = self.home / "tmp"
        for folder in (store, tmp):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.archive, store / self.archive.name)
        config = self.home / "config.properties"
        config.write_text(
            f"inference_address=http://127.0.0.1:{self.port}\n"
            f"management_address=http://127.0.0.1:{self.management_port}\n"
            f"metrics_address=http://127.0.0.1:{self.metrics_port}\n"
            # its gRPC endpoints too, or a second TorchServe fails on 7070/7071
            f"grpc_inference_address=127.0.0.1\ngrpc_management_address=127.0.0.1\n"
            f"grpc_inference_port={self.grpc_ports[0]}\n"
            f"grpc_management_port={self.grpc_ports[1]}\n"
            f"model_store={store}\n"
            f"load_models={self.archive.name}\n"
            f"default_workers_per_model={self.workers}\n"
            "disable_token_authorization=true\n"
            "install_py_dep_per_model=false\n" + self.properties)
        env = dict(os.environ)
        # A private temp folder: TorchServe's pid file and its workers' sockets live there,
        # so this instance never collides with (or stops) another one on the machine.
        env.update({"TMPDIR": str(tmp), "TEMP": str(tmp), "LOG_LOCATION": str(self.home / "logs"),
                    "METRICS_LOCATION": str(self.home / "logs")})
        if self.intra_op_threads:
            env["OMP_NUM_THREADS"] = str(self.intra_op_threads)
        return ([exe, "--start", "--foreground", "--ncs", "--ts-config", str(config),
                 "--model-store", str(store)], env, self.home)

    def roots(self) -> list[int]:
        # The `torchserve` launcher only waits for Java in --foreground mode (it exits in the
        # default background mode): the server is the Java frontend and its Python workers.
        assert self.proc is not None
        return procs.children(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            env = dict(os.environ, TMPDIR=str(self.home / "tmp"), TEMP=str(self.home / "tmp"))
            try:
                subprocess.run([shutil.which("torchserve") or "torchserve", "--stop"],
                               env=env, cwd=self.home, capture_output=True, timeout=30,
                               check=False)
            except (OSError, subprocess.TimeoutExpired):
                pass
        super().stop()


class External(Server):
    """A server somebody else started (--url): only driven, never started or stopped."""

    label = "server"

    def __init__(self, url: str, body: bytes) -> None:
        self._url = url
        self.body = body
        self.proc = None
        self.cold_start_s = None

    @property
    def url(self) -> str:
        return self._url

    def start(self, timeout: float = 180.0) -> float:
        try:
            status, answer = post_once(self.url, self.body, timeout=30)
        except OSError as exc:
            raise ServerError(f"{self.url}: no answer ({exc}); is the server running "
                              "there?") from exc
        if status != 200:
            raise ServerError(f"{self.url} answered {status}: {answer[:300]!r}")
        return 0.0

    def pss_mb(self) -> tuple[float, dict[str, float]]:
        return 0.0, {}

    def cpu_seconds(self) -> float | None:
        return None

    def stop(self) -> None:
        return None
