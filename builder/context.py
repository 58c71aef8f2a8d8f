"""Lay out the build context: rendered files, the lock and its wheels, the runtime, the model.

Files mkserve writes get fixed modes and mtimes, so that rebuilding the same
input gives the engine the same context (cache hits, identical layers) and
every file is readable by any UID (the serving user, OpenShift's random UID).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import mkserve.runtime

from .render import CONTEXT_CODE, CONTEXT_WEIGHTS
from .spec import BuildSpec
from .wheels import Lock

# 1980-01-01, the zip epoch: a fixed time unless the user asks for another.
DEFAULT_EPOCH = 315532800
LOCK_PATH = "mkserve/requirements.lock"
WHEELS_DIR = "mkserve/wheels"
MODEL_LOCK_PATH = "mkserve/model-requirements.lock"
MODEL_WHEELS_DIR = "mkserve/model-wheels"
RUNTIME_DIR = "mkserve/lib/mkserve/runtime"


@dataclass(frozen=True)
class ContextInfo:
    path: Path
    files: int
    bytes: int


def source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH (reproducible builds), when set to a time in seconds."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(raw) if raw.isdigit() else None


def _epoch() -> int:
    epoch = source_date_epoch()
    return DEFAULT_EPOCH if epoch is None else epoch


def _normalize(path: Path, epoch: int) -> None:
    """0755 folders and executables, 0644 other files (g=u minus w: group 0 reads, nobody
    but root writes); one mtime for all."""
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            file = os.path.join(root, name)
            mode = os.stat(file).st_mode
            os.chmod(file, 0o755 if mode & 0o111 else 0o644)
            os.utime(file, (epoch, epoch))
        os.utime(root, (epoch, epoch))


def _link_or_copy(src: Path, dest: Path) -> None:
    """Hard links make a 200 MB wheelhouse free to stage; copy across file systems."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def copy_runtime(dest: Path) -> None:
    """The installed mkserve.runtime package, source only (no caches)."""
    root = Path(mkserve.runtime.__file__).resolve().parent
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


def write_context(spec: BuildSpec, lock: Lock, rendered: dict[str, str], dest: Path,
                  ) -> ContextInfo:
    """Write a complete, self-contained build context into `dest` (empty or missing)."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, text in rendered.items():
        (dest / rel).write_text(text, encoding="utf-8")
    (dest / LOCK_PATH).parent.mkdir(parents=True, exist_ok=True)
    (dest / LOCK_PATH).write_text(lock.text(), encoding="utf-8")
    (dest / MODEL_LOCK_PATH).write_text(lock.model_text(), encoding="utf-8")
    copy_runtime(dest / RUNTIME_DIR)
    model_dir = Path(spec.model_dir)
    weights = set(spec.weight_files)
    for rel in spec.model_files:
        part = CONTEXT_WEIGHTS if rel in weights else CONTEXT_CODE
        target = dest / part / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / rel, target)
        if os.stat(model_dir / rel).st_mode & 0o100:
            os.chmod(target, 0o755)
    # Normalize before the wheels arrive: they are hard links to the user's files,
    # whose metadata is not ours to change.
    _normalize(dest, _epoch())
    for folder, packages in ((WHEELS_DIR, lock.packages), (MODEL_WHEELS_DIR, lock.model_packages)):
        wheels = dest / folder
        wheels.mkdir(parents=True, exist_ok=True)
        for package in packages:
            _link_or_copy(package.path, wheels / package.path.name)
        os.chmod(wheels, 0o755)
        os.utime(wheels, (_epoch(), _epoch()))
    files = 0
    size = 0
    for root, _, names in os.walk(dest):
        for name in names:
            files += 1
            size += os.stat(os.path.join(root, name)).st_size
    return ContextInfo(dest, files, size)
