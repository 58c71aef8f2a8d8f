"""Model sources: open a .mar, .tar.gz, unpacked archive or plain model folder.

Archives are untrusted input: extraction refuses absolute paths, `..`
segments, links and special files, and caps the unpacked size and file count.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .settings import read as read_setting

log = logging.getLogger("mkserve.source")

MANIFEST = "MAR-INF/MANIFEST.json"
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
PLAIN_CONFIG = "mkserve.yaml"
MAX_UNPACKED_BYTES: int = read_setting("max_archive_bytes")
MAX_FILES = 100_000
WEIGHT_SUFFIXES = (".pt", ".pt2", ".pth", ".bin", ".safetensors", ".ts", ".torchscript")
SKIPPED_NAMES = {"__pycache__", "__MACOSX"}


class SourceError(ValueError):
    """The model source is unusable; the message names the file and the fix."""


@dataclass(frozen=True)
class ModelSource:
    """An unpacked model folder and what its manifest says about it."""

    model_dir: Path
    manifest: dict[str, Any]
    model_config: dict[str, Any]
    origin: str
    kind: str  # mar | tgz | folder | plain
    notes: tuple[str, ...] = field(default=())

    @property
    def model(self) -> dict[str, Any]:
        return self.manifest.get("model", {})

    @property
    def name(self) -> str:
        return str(self.model.get("modelName", ""))

    @property
    def version(self) -> str:
        return str(self.model.get("modelVersion") or "1.0")

    @property
    def handler(self) -> str:
        return str(self.model.get("handler", ""))


def open_source(path: str | os.PathLike[str], workdir: str | os.PathLike[str] | None = None,
                ) -> ModelSource:
    """Open any accepted source; archives are unpacked into `workdir`."""
    src = Path(path)
    if not src.exists():
        raise SourceError(f"{src}: no such file or folder; pass a .mar, a .tar.gz or a "
                          "model folder")
    if src.is_dir():
        return _open_folder(src)
    if workdir is None:
        raise SourceError(f"{src}: an archive needs a folder to unpack into")
    target = Path(workdir)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(src):
        _unpack_zip(src, target)
        kind = "mar"
    elif tarfile.is_tarfile(src):
        _unpack_tar(src, target)
        target = _single_subfolder(target)
        kind = "tgz"
    else:
        raise SourceError(f"{src}: not a zip (.mar) or tar.gz archive; "
                          "make one with torch-model-archiver or pass the model folder")
    source = _read_manifest_folder(target, origin=str(src), kind=kind)
    if source is None:
        raise SourceError(f"{src}: no {MANIFEST} inside; is this a torch-model-archiver archive?")
    return source


def _open_folder(folder: Path) -> ModelSource:
    source = _read_manifest_folder(folder, origin=str(folder), kind="folder")
    if source is not None:
        return source
    inner = _single_subfolder(folder)
    if inner != folder:
        source = _read_manifest_folder(inner, origin=str(folder), kind="folder")
        if source is not None:
            return source
    return _infer_plain(folder)


def _single_subfolder(folder: Path) -> Path:
    """A folder holding exactly one sub-folder (and nothing else) is that sub-folder."""
    entries = [e for e in folder.iterdir() if e.name not in SKIPPED_NAMES]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return folder


def _read_manifest_folder(folder: Path, origin: str, kind: str) -> ModelSource | None:
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{origin}: {MANIFEST} is not valid JSON ({exc}); "
                          "re-create the archive with torch-model-archiver") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("model"), dict):
        raise SourceError(f"{origin}: {MANIFEST} has no \"model\" section; "
                          "re-create the archive with torch-model-archiver")
    model = manifest["model"]
    _check_model_section(model, folder, origin)
    config = load_model_config(folder, model.get("configFile"), origin)
    return ModelSource(folder, manifest, config, origin, kind)


def _check_model_section(model: dict[str, Any], folder: Path, origin: str) -> None:
    problems = []
    name = model.get("modelName")
    if not isinstance(name, str) or not MODEL_NAME_RE.match(name):
        problems.append(f"modelName {name!r} must match {MODEL_NAME_RE.pattern}")
    if not model.get("handler"):
        problems.append("no handler; pass --handler to torch-model-archiver "
                        "(a file, module[:function] or a built-in such as base_handler)")
    for key in ("serializedFile", "modelFile", "requirementsFile", "configFile"):
        value = model.get(key)
        if value and not (folder / value).is_file():
            problems.append(f"{key} {value!r} is named in the manifest but not in the archive")
    handler_file = str(model.get("handler", "")).split(":")[0]
    if handler_file.endswith(".py") and not (folder / handler_file).is_file():
        problems.append(f"handler file {handler_file!r} is not in the archive")
    if problems:
        raise SourceError(f"{origin}: " + "; ".join(problems))


def load_model_config(folder: Path, name: str | None, origin: str) -> dict[str, Any]:
    """Parse model-config.yaml; a config that is not a mapping is an error."""
    if not name:
        return {}
    import yaml  # lazy: only archives with a config file pay for it

    path = folder / name
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SourceError(f"{origin}: {name} is not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SourceError(f"{origin}: {name} must be a mapping of keys such as batchSize")
    return data


def _infer_plain(folder: Path) -> ModelSource:
    """A plain model directory: read mkserve.yaml or infer handler, weights, model file."""
    notes: list[str] = []
    stated: dict[str, Any] = {}
    if (folder / PLAIN_CONFIG).is_file():
        stated = load_model_config(folder, PLAIN_CONFIG, str(folder))
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    weights = stated.get("serializedFile") or _pick(
        folder, [f for f in files if f.endswith(WEIGHT_SUFFIXES)], "weights file",
        "serializedFile", notes)
    handler = stated.get("handler")
    if not handler:
        if "handler.py" in files:
            handler = "handler.py"
            notes.append("handler: handler.py")
        else:
            handler = "base_handler"
            notes.append("handler: built-in base_handler (no handler.py found)")
    model_file = stated.get("modelFile")
    if model_file is None and weights and not _is_archive_format(folder / weights):
        candidates = [f for f in files if f.endswith(".py") and f != handler.split(":")[0]]
        model_file = _pick(folder, candidates, "model definition", "modelFile", notes)
    config_file = stated.get("configFile") or (
        "model-config.yaml" if "model-config.yaml" in files else None)
    name = stated.get("modelName") or _sanitize_name(folder.resolve().name)
    model: dict[str, Any] = {"modelName": name, "handler": handler,
                             "modelVersion": str(stated.get("modelVersion", "1.0"))}
    for key, value in (("serializedFile", weights), ("modelFile", model_file),
                       ("configFile", config_file),
                       ("requirementsFile", stated.get("requirementsFile") or (
                           "requirements.txt" if "requirements.txt" in files else None))):
        if value:
            model[key] = value
    notes.insert(0, f"no {MANIFEST}: inferred the model from the folder's files"
                 + (f" and {PLAIN_CONFIG}" if stated else ""))
    manifest = {"runtime": "python", "model": model}
    _check_model_section(model, folder, str(folder))
    config = load_model_config(folder, config_file, str(folder))
    return ModelSource(folder, manifest, config, str(folder), "plain", tuple(notes))


def _is_archive_format(path: Path) -> bool:
    """TorchScript (.pt zip with constants.pkl) and .pt2 need no model definition."""
    if path.suffix == ".pt2":
        return True
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _pick(folder: Path, candidates: list[str], what: str, key: str, notes: list[str]) -> str | None:
    if len(candidates) == 1:
        notes.append(f"{key}: {candidates[0]}")
        return candidates[0]
    if not candidates:
        if key == "serializedFile":
            return None
        return None
    raise SourceError(f"{folder}: several files could be the {what} ({', '.join(candidates)}); "
                      f"name it in {PLAIN_CONFIG} as `{key}: <file>`")


def _sanitize_name(raw: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_\-.]", "-", raw).lstrip("-_.")
    return name or "model"


# -- safe extraction ------------------------------------------------------

def _safe_member_path(target: Path, name: str, origin: Path) -> Path | None:
    """Where a member may be written, None to skip it, or SourceError if it escapes."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in posix.parts:
        raise SourceError(f"{origin}: refusing entry {name!r}: it points outside the archive")
    parts = [p for p in posix.parts if p not in ("", ".")]
    if not parts:
        return None
    if any(p in SKIPPED_NAMES for p in parts):
        return None
    dest = target.joinpath(*parts)
    if not str(dest.resolve()).startswith(str(target.resolve()) + os.sep):
        raise SourceError(f"{origin}: refusing entry {name!r}: it points outside the archive")
    return dest


class _Budget:
    def __init__(self, origin: Path) -> None:
        self.origin = origin
        self.bytes = 0
        self.files = 0

    def add(self, size: int) -> None:
        self.bytes += size
        self.files += 1
        if self.bytes > MAX_UNPACKED_BYTES or self.files > MAX_FILES:
            raise SourceError(f"{self.origin}: unpacks to more than {MAX_UNPACKED_BYTES} bytes or "
                              f"{MAX_FILES} files; raise MKSERVE_MAX_ARCHIVE_BYTES if it is "
                              "genuine")


def _unpack_zip(src: Path, target: Path) -> None:
    budget = _Budget(src)
    try:
        with zipfile.ZipFile(src) as zf:
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o170000
                if mode and mode not in (stat.S_IFREG, stat.S_IFDIR):
                    raise SourceError(f"{src}: refusing entry {info.filename!r}: links and special "
                                      "files are not allowed in an archive")
                dest = _safe_member_path(target, info.filename, src)
                if dest is None:
                    continue
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as reader, open(dest, "wb") as writer:
                    _copy_capped(reader, writer, budget)
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{src}: damaged zip archive ({exc})") from exc


def _unpack_tar(src: Path, target: Path) -> None:
    budget = _Budget(src)
    try:
        with tarfile.open(src, "r:*") as tf:
            for member in tf:
                if not (member.isfile() or member.isdir()):
                    raise SourceError(f"{src}: refusing entry {member.name!r}: links and special "
                                      "files are not allowed in an archive")
                dest = _safe_member_path(target, member.name, src)
                if dest is None:
                    continue
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                reader = tf.extractfile(member)
                if reader is None:
                    continue
                with reader, open(dest, "wb") as writer:
                    _copy_capped(reader, writer, budget)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, SourceError):
            raise
        raise SourceError(f"{src}: damaged tar archive ({exc})") from exc


def _copy_capped(reader: Any, writer: Any, budget: _Budget) -> None:
    budget.add(0)
    while True:
        chunk = reader.read(1 << 20)
        if not chunk:
            return
        budget.bytes += len(chunk)
        if budget.bytes > MAX_UNPACKED_BYTES:
            budget.add(0)
        writer.write(chunk)


def copy_model_dir(source: ModelSource, dest: Path) -> None:
    """Copy a model folder, leaving out caches and dot-folders (as the archiver does)."""
    def ignore(_dir: str, names: list[str]) -> list[str]:
        return [n for n in names if n in SKIPPED_NAMES or (n.startswith(".") and n != ".")]

    shutil.copytree(source.model_dir, dest, ignore=ignore, dirs_exist_ok=True)
