"""`python -m mkserve.runtime.check MODEL`: load the handler exactly as a worker does, report it."""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from . import __version__
from .settings import BY_NAME, SettingsError, resolve
from .settings import read as read_setting
from .source import SourceError, open_source

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_MODEL = 3  # same code the server uses for "model failed to load"


class _Failures(logging.Handler):
    """Keeps the exception ModelService logs on a failed load (it reports, never raises)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.exc: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None and self.exc is None:
            self.exc = record.exc_info[1]


def _where(exc: BaseException, model_dir: Path) -> str:
    """The innermost frame inside the model folder: where the user should look."""
    root = str(model_dir.resolve())
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(root):
            return f"{os.path.relpath(frame.filename, root)} line {frame.lineno}"
    return ""


def _missing_module(exc: BaseException | None) -> str | None:
    """The module a failed import was looking for (the handler error wraps it)."""
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            return exc.name
        exc = exc.__cause__ or exc.__context__
    return None


def check(model: str, workdir: str, env: dict[str, str] | None = None,
          ) -> tuple[int, dict[str, Any]]:
    """Open the model (archives unpack into `workdir`) and load its handler.

    Returns (exit code, report).
    """
    env = dict(os.environ if env is None else env)
    report: dict[str, Any] = {"ok": False, "model_dir": model, "mkserve": __version__,
                              "python": platform.python_version()}
    try:
        source = open_source(model, workdir)
        settings = resolve(env, source.model_config)
    except SourceError as exc:
        report["error"] = str(exc)
        return EXIT_MODEL, report
    except SettingsError as exc:
        report["error"] = str(exc)
        return EXIT_CONFIG, report
    report.update(name=settings.model_name or source.name, version=source.version,
                  handler=source.handler, kind=source.kind, notes=list(source.notes))

    from .service import FAILED, LOADING, ModelService

    failures = _Failures()
    logging.getLogger("mkserve.service").addHandler(failures)
    service = ModelService(source, settings.replace(model_name=report["name"]))
    started = time.monotonic()
    service.start()
    deadline = started + settings.startup_timeout_s + 1.0
    while service.state == LOADING and time.monotonic() < deadline:
        time.sleep(0.02)
    report["load_seconds"] = round(time.monotonic() - started, 3)
    try:
        import torch

        report["torch"] = torch.__version__
    except ImportError:  # a handler without torch is unusual but legal
        report["torch"] = None
    if service.state == FAILED or service.state == LOADING:
        where = _where(failures.exc, source.model_dir) if failures.exc else ""
        report["error"] = service.reason + (f" (at {where})" if where else "")
        report["missing_module"] = _missing_module(failures.exc)
        service.stop(0.0)
        return EXIT_MODEL, report
    handle = service._handle
    owner = getattr(handle, "__self__", None)
    report["entry"] = (type(owner).__qualname__ if owner is not None
                       else getattr(handle, "__qualname__", str(handle)))
    report["ok"] = True
    service.stop(0.0)
    return EXIT_OK, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mkserve.runtime.check",
        description="Load a model's handler as a serving worker would; print one JSON line.")
    model_dir = BY_NAME["model_dir"]
    parser.add_argument("model", nargs="?", default=read_setting("model_dir"),
                        help=f"model folder, .mar or .tar.gz (default: ${model_dir.env})")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the runtime's log (with tracebacks) on stderr")
    args = parser.parse_args(argv)
    # Quiet by default: the caller wants one line, not the handler's log chatter.
    # The root logger stays at INFO so that the failure catcher sees the load error.
    stream = logging.StreamHandler(sys.stderr)
    stream.setLevel(logging.INFO if args.verbose else logging.CRITICAL + 1)
    stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[stream])
    workdir = tempfile.mkdtemp(prefix="mkserve-check-")
    try:
        code, report = check(args.model, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, sort_keys=True), flush=True)
    if code != EXIT_OK:
        print(f"error: {report['error']}", file=sys.stderr, flush=True)
    # os._exit: a handler may have started non-daemon threads that would keep us alive.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
