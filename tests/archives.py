"""Test support: real model archives of the examples, made with the real archiver.

Not a test module (pytest collects only ``test_*.py``). Tests import it and
build what they need into their own ``tmp_path``::

    from archives import make_archive, read_manifest
    mar = make_archive("classifier", tmp_path)                      # classifier.mar
    tgz = make_archive("classifier", tmp_path, fmt="tgz", variant="batch8")
    folder = make_archive("headers", tmp_path, fmt="no-archive")    # tmp_path/headers/

Archives come from ``torch-model-archiver`` (0.12.0, run as a subprocess) over
the files in ``examples/``, so they are exactly what a TorchServe user would
bring. Model files (``make_model.py`` output) are built once per example per
session, in a cache keyed by the example's sources; set
``MKSERVE_TEST_MODEL_CACHE`` to a directory to keep them across sessions.
"""
from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO / "examples"

#: ``--archive-format`` values of torch-model-archiver 0.12.
FORMATS = ("default", "tgz", "no-archive", "zip-store")

BATCH8_CONFIG = """\
# Written by tests/archives.py for the classifier "batch8" variant.
batchSize: 8
maxBatchDelay: 50
"""


@dataclass(frozen=True)
class Variant:
    """One way of packing an example: the archiver arguments, by file name.

    File names are relative to the example's folder (sources) or to its model
    files (``make_model.py`` output); ``handler`` is a file name or a
    built-in handler name such as ``base_handler``.
    """

    example: str
    name: str
    model_name: str
    serialized_file: str
    handler: str
    model_file: str | None = None
    extra_files: tuple[str, ...] = ()
    config_file: str | None = None
    # Config written by this module instead of taken from the example folder.
    config_text: str | None = None


_VARIANT_LIST = (
    # The guide's custom handler with labels and its batching configuration.
    Variant("classifier", "custom", "classifier", "model_scripted.pt", "handler.py",
            extra_files=("index_to_name.json",), config_file="model-config.yaml"),
    # The guide's `--handler base_handler` TorchScript command.
    Variant("classifier", "base_handler", "classifier_scripted", "model_scripted.pt",
            "base_handler"),
    # The guide's eager command: --model-file + state dict, built-in handler.
    Variant("classifier", "eager", "classifier_eager", "model_weights.pth", "base_handler",
            model_file="model.py"),
    # Traced rather than scripted TorchScript, built-in handler.
    Variant("classifier", "traced", "classifier_traced", "model_traced.pt", "base_handler"),
    # The custom handler with a different batching configuration.
    Variant("classifier", "batch8", "classifier_batch8", "model_scripted.pt", "handler.py",
            extra_files=("index_to_name.json",), config_file="model-config.yaml",
            config_text=BATCH8_CONFIG),
    Variant("eager", "default", "eager", "model_weights.pth", "handler.py",
            model_file="model.py"),
    Variant("function_handler", "default", "function_handler", "model_scripted.pt",
            "handler.py"),
    Variant("headers", "default", "headers", "model_scripted.pt", "handler.py",
            config_file="model-config.yaml"),
    Variant("transformer", "default", "transformer", "model_scripted.pt", "handler.py",
            config_file="model-config.yaml"),
)

#: Every variant, by (example, variant name).
VARIANTS: dict[tuple[str, str], Variant] = {(v.example, v.name): v for v in _VARIANT_LIST}

#: Example folders, in the order above; each one's first variant is its default.
EXAMPLES: tuple[str, ...] = tuple(dict.fromkeys(v.example for v in _VARIANT_LIST))


class ArchiverError(RuntimeError):
    """make_model.py or torch-model-archiver failed; the message has its output."""


def get_variant(example: str, variant: str | None = None) -> Variant:
    """The Variant for ``example`` (its first one when ``variant`` is None)."""
    if variant is None:
        for v in _VARIANT_LIST:
            if v.example == example:
                return v
        raise KeyError(f"unknown example {example!r}; known: {', '.join(EXAMPLES)}")
    try:
        return VARIANTS[(example, variant)]
    except KeyError:
        known = ", ".join(f"{e}/{n}" for e, n in VARIANTS)
        raise KeyError(f"unknown variant {example}/{variant}; known: {known}") from None


def model_name(example: str, variant: str | None = None) -> str:
    """The ``--model-name`` make_archive uses for this example/variant."""
    return get_variant(example, variant).model_name


def archiver_command() -> list[str]:
    """How to run torch-model-archiver: the console script, else the module."""
    exe = shutil.which("torch-model-archiver")
    if exe:
        return [exe]
    return [sys.executable, "-m", "model_archiver.model_packaging"]


# -- model files ---------------------------------------------------------

_session_root: Path | None = None


def _cache_root() -> Path:
    global _session_root
    configured = os.environ.get("MKSERVE_TEST_MODEL_CACHE")
    if configured:
        root = Path(configured)
        root.mkdir(parents=True, exist_ok=True)
        return root
    if _session_root is None:
        _session_root = Path(tempfile.mkdtemp(prefix="mkserve-test-models-"))
        atexit.register(shutil.rmtree, _session_root, ignore_errors=True)
    return _session_root


def _source_key(example: str) -> str:
    """Hash of what make_model.py's output depends on, so a stale cache is never used."""
    digest = hashlib.sha256()
    for name in ("make_model.py", "model.py"):
        path = EXAMPLES_DIR / example / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    # The serialized format follows the torch version (read without importing torch).
    try:
        digest.update(importlib.metadata.version("torch").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    return digest.hexdigest()[:16]


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise ArchiverError(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )


def _cached_model_files(example: str) -> Path:
    """The folder holding ``example``'s make_model.py output, building it once."""
    if not (EXAMPLES_DIR / example / "make_model.py").exists():
        raise KeyError(f"unknown example {example!r}; known: {', '.join(EXAMPLES)}")
    target = _cache_root() / f"{example}-{_source_key(example)}"
    if target.is_dir():
        return target
    # Build next to the target and rename into place, so a half-written folder
    # (interrupted run, parallel session) is never taken for a finished one.
    staging = Path(tempfile.mkdtemp(prefix=f".{example}-", dir=target.parent))
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        _run([sys.executable, str(EXAMPLES_DIR / example / "make_model.py"), str(staging)],
             f"make_model.py of {example}", env=env)
        try:
            staging.rename(target)
        except OSError:
            # Another session finished first; its files are equivalent.
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_model_files(example: str, dest: Path) -> Path:
    """Copy ``example``'s model files (make_model.py output) into ``dest``; return ``dest``.

    e.g. classifier: model_scripted.pt, model_traced.pt, model_weights.pth;
    eager: model_weights.pth; the others: model_scripted.pt.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for item in _cached_model_files(example).iterdir():
        shutil.copy2(item, dest / item.name)
    return dest


def _config_path(v: Variant) -> Path | None:
    if v.config_file is None:
        return None
    if v.config_text is None:
        return EXAMPLES_DIR / v.example / v.config_file
    # Generated configs keep the archive's file name (model-config.yaml).
    digest = hashlib.sha256(v.config_text.encode()).hexdigest()[:12]
    folder = _cache_root() / f"config-{digest}"
    path = folder / v.config_file
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{v.config_file}.{os.getpid()}"
        tmp.write_text(v.config_text)
        tmp.replace(path)
    return path


# -- archives ------------------------------------------------------------

def archive_path(dest: Path, name: str, fmt: str) -> Path:
    """Where the archiver puts model ``name`` in export folder ``dest`` for ``fmt``."""
    suffix = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}
    if fmt not in suffix:
        raise ValueError(f"unknown archive format {fmt!r}; known: {', '.join(FORMATS)}")
    return Path(dest) / f"{name}{suffix[fmt]}"


def make_archive(
    example: str,
    dest: Path,
    fmt: str = "default",
    variant: str | None = None,
    *,
    name: str | None = None,
    version: str = "1.0",
    requirements: str | None = None,
) -> Path:
    """Archive ``example`` (``variant``) into export folder ``dest`` with the real archiver.

    Returns ``dest/<name>.mar`` (default, zip-store), ``dest/<name>.tar.gz``
    (tgz) or the folder ``dest/<name>/`` (no-archive). ``name`` overrides the
    variant's model name; ``requirements`` (text of a requirements.txt) adds
    ``--requirements-file``. An existing archive of the same name is replaced.
    """
    v = get_variant(example, variant)
    name = name or v.model_name
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = archive_path(dest, name, fmt)
    src = EXAMPLES_DIR / example
    models = _cached_model_files(example)

    cmd = archiver_command() + [
        "--model-name", name,
        "--version", version,
        "--serialized-file", str(models / v.serialized_file),
        "--handler", str(src / v.handler) if v.handler.endswith(".py") else v.handler,
        "--export-path", str(dest),
        "--archive-format", fmt,
        "--force",
    ]
    if v.model_file:
        cmd += ["--model-file", str(src / v.model_file)]
    if v.extra_files:
        cmd += ["--extra-files", ",".join(str(src / f) for f in v.extra_files)]
    config = _config_path(v)
    if config is not None:
        cmd += ["--config-file", str(config)]

    # The archiver stages files in $TMPDIR/<model-name>/ and deletes that
    # folder first: a private TMPDIR keeps parallel runs (and unrelated
    # /tmp/<model-name> folders) out of each other's way.
    private_tmp = Path(tempfile.mkdtemp(prefix="archiver-tmp-", dir=_cache_root()))
    inputs = Path(tempfile.mkdtemp(prefix="archiver-in-", dir=_cache_root()))
    try:
        if requirements is not None:
            req = inputs / "requirements.txt"
            req.write_text(requirements)
            cmd += ["--requirements-file", str(req)]
        if fmt == "no-archive" and out.exists():
            # --force does not clear an existing folder: the archiver copies
            # over it and stale files from an earlier archive would survive.
            shutil.rmtree(out)
        env = dict(os.environ, TMPDIR=str(private_tmp))
        _run(cmd, f"torch-model-archiver for {example}/{v.name}", env=env)
    finally:
        shutil.rmtree(private_tmp, ignore_errors=True)
        shutil.rmtree(inputs, ignore_errors=True)
    if not out.exists():
        raise ArchiverError(f"torch-model-archiver exited 0 but {out} does not exist")
    return out


# -- reading archives back (for assertions) ------------------------------

def list_members(archive: Path) -> set[str]:
    """Names of the regular files in a .mar, .tar.gz or no-archive folder, '/'-separated."""
    archive = Path(archive)
    if archive.is_dir():
        return {p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()}
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive, "r:gz") as tar:
            return {m.name for m in tar.getmembers() if m.isfile()}
    with zipfile.ZipFile(archive) as zf:
        return {n for n in zf.namelist() if not n.endswith("/")}


def read_manifest(archive: Path) -> dict:
    """MAR-INF/MANIFEST.json of a .mar, .tar.gz (under its top folder) or folder."""
    archive = Path(archive)
    if archive.is_dir():
        return json.loads((archive / "MAR-INF" / "MANIFEST.json").read_text())
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name.endswith("MAR-INF/MANIFEST.json"):
                    return json.loads(tar.extractfile(member).read())
        raise FileNotFoundError(f"no MAR-INF/MANIFEST.json in {archive}")
    with zipfile.ZipFile(archive) as zf:
        return json.loads(zf.read("MAR-INF/MANIFEST.json"))


def archive_handler(code: str, dest: Path, name: str, *, config: str | None = None,
                    extra_files: dict[str, bytes] | None = None, fmt: str = "default",
                    serialized_file: Path | None = None, model_file: Path | None = None,
                    ) -> Path:
    """An archive of one handler file or built-in handler (and, when given, its weights
    and model.py), made by the real torch-model-archiver, as a TorchServe user would
    package a handler written in TorchServe's style."""
    src = Path(tempfile.mkdtemp(prefix=f"handler-{name}-", dir=_cache_root()))
    handler = code  # a built-in handler's name (text_classifier), else the handler's source
    if "\n" in code:
        (src / "handler.py").write_text(code)
        handler = str(src / "handler.py")
    cmd = archiver_command() + ["--model-name", name, "--version", "1.0",
                                "--handler", handler,
                                "--export-path", str(dest), "--archive-format", fmt, "--force"]
    if serialized_file is not None:
        cmd += ["--serialized-file", str(serialized_file)]
    if model_file is not None:
        cmd += ["--model-file", str(model_file)]
    if config is not None:
        (src / "model-config.yaml").write_text(config)
        cmd += ["--config-file", str(src / "model-config.yaml")]
    if extra_files:
        for file_name, content in extra_files.items():
            (src / file_name).write_bytes(content)
        cmd += ["--extra-files", ",".join(str(src / f) for f in extra_files)]
    dest.mkdir(parents=True, exist_ok=True)
    _run(cmd, f"torch-model-archiver for {name}")
    return archive_path(dest, name, fmt)
