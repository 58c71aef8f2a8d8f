"""`mkserve build`: validate → spec → wheels → render → context → engine build (→ push).

Everything that can fail because of the source or the flags fails before the
engine is contacted; the engine is contacted (a ping) before anything slow.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from mkserve.runtime.source import ModelSource, SourceError, copy_model_dir, open_source

from . import wheels
from .context import ContextInfo, source_date_epoch, write_context
from .engine import Engine, connect
from .errors import SourceProblem, UsageError
from .progress import BuildProgress, BuildResult, human
from .render import render
from .spec import BuildRequest, BuildSpec, make_spec
from .tsconfig import read_ts_config
from .vcs import git

Out = Callable[[str], None]
EngineFactory = Callable[[], Engine]


@dataclass(frozen=True)
class ContextResult:
    """What --context-only wrote, and how to build it."""

    info: ContextInfo
    spec: BuildSpec
    commands: tuple[str, ...]


def open_model(path: str, workdir: Path) -> ModelSource:
    try:
        return open_source(path, workdir)
    except SourceError as exc:
        raise SourceProblem(str(exc)) from exc


def host_torch_version() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def vcs_info(source: str) -> tuple[str | None, str | None]:
    """(revision, repository URL without credentials) of the git checkout holding SOURCE."""
    path = Path(source).resolve()
    folder = path if path.is_dir() else path.parent
    revision = git(["rev-parse", "HEAD"], folder)
    url = git(["config", "--get", "remote.origin.url"], folder) if revision else None
    if url:
        url = re.sub(r"^(\w+://)[^/@]*@", r"\1", url)  # never publish a token in a label
    return revision, url


def check_on_host(spec: BuildSpec, out: Out) -> None:
    """Load the handler in a subprocess, as a worker would; fail before any engine work."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MKSERVE_")}
    # The warm-up file names a path inside the image; the image's own check runs it.
    env.update((k, v) for k, v in spec.env if k != "MKSERVE_WARMUP_FILE")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in the user's model folder
    cmd = [sys.executable, "-m", "mkserve.runtime.check", spec.model_dir]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                              timeout=spec.startup_timeout_s + 60)
    except subprocess.TimeoutExpired as exc:
        raise SourceProblem(f"{spec.source}: the handler did not finish loading within "
                            f"{spec.startup_timeout_s:g}s") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {}
    if proc.returncode == 0 and report.get("ok"):
        out(f"handler {spec.handler} loads ({report.get('entry')}, "
            f"{report.get('load_seconds')}s)")
        return
    error = report.get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
    missing = report.get("missing_module")
    if missing and spec.requirement_files:
        out(f"note: the handler imports {missing}, which is not installed here; it is checked "
            "again inside the image, after the requirements are installed")
        return
    raise SourceProblem(f"{spec.source}: the handler does not load: {error}. For the full "
                        f"traceback run: python -m mkserve.runtime.check {spec.source} -v")


def prepare(request: BuildRequest, workdir: Path, out: Out) -> BuildSpec:
    """Open and validate the source and the flags; no engine, no network."""
    source = open_model(request.source, workdir / "model")
    if request.optimize:
        source = optimize_model(source, request.sample_input, workdir / "optimized", out)
    ts = read_ts_config(request.ts_config, source.name, request.gpu) if request.ts_config else None
    revision, url = vcs_info(request.source)
    spec = make_spec(request, source, ts, host_torch=host_torch_version(), revision=revision,
                     source_url=url)
    out(f"model {spec.model_name} {spec.model_version} ({spec.source_kind}, handler "
        f"{spec.handler}) from {spec.source}")
    for note in spec.notes:
        out(f"note: {note}")
    if spec.check:
        check_on_host(spec, out)
    return spec


def load_samples(path: str | None) -> Any:
    """--sample-input: what the model is called with, for the --optimize check.

    A JSON file holds one batch (a nested list of numbers, as float32) or a list
    of batches; a .pt file (torch.save) holds a tensor, a tuple of arguments, a
    list of calls or {method: [calls]}, for models with several or non-float inputs.
    """
    if path is None:
        return None
    import torch

    try:
        if path.endswith((".pt", ".pth")):
            return torch.load(path, weights_only=True)
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        batches = data if data and isinstance(data[0], list) and data[0] and isinstance(
            data[0][0], list) else [data]
        return [torch.tensor(batch, dtype=torch.float32) for batch in batches]
    except Exception as exc:
        raise UsageError(f"--sample-input {path}: expected a JSON batch such as "
                         f"[[0.1, 0.2, ...]], a list of batches, or a torch.save'd tensor, "
                         f"tuple of arguments or list of calls ({exc})") from exc


def optimize_model(source: ModelSource, sample_input: str | None, dest: Path,
                   out: Out) -> ModelSource:
    """--optimize: a copy of the model folder whose TorchScript file is frozen and optimised.

    The user's files are never changed. Eager (state dict) and .pt2 models are
    kept as they are, with a note; so is any model whose optimised outputs do
    not match the original on the sample inputs.
    """
    from .optimize import optimize_torchscript

    serialized = source.model.get("serializedFile")
    if not serialized or source.model.get("modelFile") or serialized.endswith(".pt2"):
        out("note: --optimize applies to TorchScript models; this one is kept as it is")
        return source
    samples = load_samples(sample_input)
    if samples is None:
        out("note: --optimize needs --sample-input to check the optimised model; kept as it is")
        return source
    copy_model_dir(source, dest)
    report = optimize_torchscript(dest / serialized, dest / serialized, samples)
    out(f"optimize: {report}")
    return dataclasses.replace(source, model_dir=dest)


def resolve_wheels(spec: BuildSpec, out: Out) -> wheels.Lock:
    if spec.wheelhouse:
        wheelhouse = Path(spec.wheelhouse).resolve()
        if spec.fill_wheelhouse:
            wheels.fill(spec, wheelhouse, out)
    else:
        wheelhouse = wheels.default_wheelhouse(spec)
        wheels.fill(spec, wheelhouse, out)
    lock = wheels.lock(spec, wheelhouse)
    total = sum(p.path.stat().st_size for p in lock.all)
    extra = f", {len(lock.model_packages)} of them the model's" if lock.model_packages else ""
    out(f"locked {len(lock.all)} packages{extra} ({human(total)} of wheels) from {wheelhouse}")
    for note in lock.notes:
        out(f"note: {note}")
    return lock


def context_commands(spec: BuildSpec, path: Path) -> tuple[str, ...]:
    tag = spec.tags[0]
    created = "--build-arg MKSERVE_CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    return (f"docker build {created} -t {tag} {path}",
            # Podman's default OCI format has no HEALTHCHECK; docker format keeps it.
            f"podman build --format docker {created} -t {tag} {path}",
            f"docker buildx build --platform {spec.platform} {created} -t {tag} {path}")


def check_context_dir(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"--context-only {dest}: the folder is not empty; pass a new or "
                         "empty folder")


def write_only(spec: BuildSpec, lock: wheels.Lock, dest: Path) -> ContextResult:
    check_context_dir(dest)
    info = write_context(spec, lock, render(spec), dest)
    return ContextResult(info, spec, context_commands(spec, dest))


def build_image(engine: Engine, spec: BuildSpec, context: Path, out: Out) -> BuildResult:
    progress = BuildProgress(out)
    started = time.monotonic()
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    epoch = source_date_epoch()
    if epoch is not None:  # reproducible builds: the declared time, not now
        created = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    buildargs = {"MKSERVE_CREATED": created, **dict(spec.build_args)}
    image_id = engine.build(context, spec.tags, buildargs=buildargs, platform=spec.platform,
                            nocache=spec.no_cache, on_event=progress)
    progress.flush()
    seconds = time.monotonic() - started
    info = engine.inspect(image_id)
    kept = engine.stage_images()
    if kept:
        out(f"the engine keeps {kept} build stages as untagged images (layer cache for the "
            "next build); `mkserve prune` removes them")
    pushed: list[str] = []
    if spec.push:
        for tag in spec.tags:
            out(f"pushing {tag}")
            engine.push(tag, progress)
            pushed.append(tag)
    return BuildResult(
        # The engine's own names: Podman stores `name:1` as `docker.io/library/name:1`.
        image_id=info.id if info else image_id, tags=(info.tags if info and info.tags
                                                      else spec.tags),
        size=info.size if info else 0,
        seconds=seconds, layers=info.history if info else (), steps=progress.total,
        cached=progress.cached, pushed=tuple(pushed))


def run_build(request: BuildRequest, out: Out, engine_factory: EngineFactory = connect,
              ) -> BuildResult | ContextResult:
    """The whole `mkserve build`."""
    if request.context_only:
        check_context_dir(Path(request.context_only))
    with tempfile.TemporaryDirectory(prefix="mkserve-build-") as tmp:
        workdir = Path(tmp)
        spec = prepare(request, workdir, out)
        if request.context_only:
            return write_only(spec, resolve_wheels(spec, out), Path(request.context_only))
        engine = engine_factory()  # before the slow part: an unreachable engine fails fast
        lock = resolve_wheels(spec, out)
        info = write_context(spec, lock, render(spec), workdir / "context")
        out(f"build context: {info.files} files, {human(info.bytes)}; building with the engine")
        return build_image(engine, spec, info.path, out)
