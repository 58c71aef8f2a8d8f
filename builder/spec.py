"""The build spec: flags, the archive's manifest and model-config, config.properties, as one value.

Precedence, written once (`PRECEDENCE`): CLI flag > config.properties >
model-config.yaml > default. Only the first two are baked into the image as
ENV; the runtime applies model-config.yaml and its defaults when it starts, so
an image never freezes a default it did not need to.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mkserve.runtime import __version__ as MKSERVE_VERSION
from mkserve.runtime.settings import (
    BY_NAME,
    SETTINGS,
    RuntimeSettings,
    SettingsError,
    resolve,
    to_env,
)
from mkserve.runtime.source import SKIPPED_NAMES, WEIGHT_SUFFIXES, ModelSource

from . import labels as L
from .errors import UsageError
from .tsconfig import TsConfig

PRECEDENCE = ("CLI flag", "config.properties", "model-config.yaml", "default")

DEFAULT_BASE_IMAGE = "docker.io/library/python:3.11-slim"
# GPU images use the same slim base: torch's CUDA wheels carry the CUDA runtime
# libraries, and the NVIDIA container toolkit mounts the driver (see GPU_ENV).
DEFAULT_GPU_BASE_IMAGE = "docker.io/library/python:3.11-slim"
GPU_ENV = (("NVIDIA_VISIBLE_DEVICES", "all"), ("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"))
DEFAULT_PLATFORM = "linux/amd64"
DEFAULT_PYTHON = "3.11"
PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm64/v8": "aarch64"}
WEIGHT_MIN_BYTES = 1 << 20  # files this large go to the weights layer whatever their name

# Flag names shown in summaries, by runtime setting name.
# Setting name -> the CLI flag that sets it (declared in the settings table).
FLAGS = {s.name: s.flag for s in SETTINGS if s.flag}

_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
TAG_RE = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_NAME}(?:/{_NAME})*"
                    rf"(?::[\w][\w.-]{{0,127}})?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VERSION_RE = re.compile(r"^\d+(\.\d+)*([a-z]+\d*)?(\.post\d+)?(\.dev\d+)?(\+[A-Za-z0-9.]+)?$")


@dataclass(frozen=True)
class BuildRequest:
    """What the user asked for, as typed (the CLI maps its flags onto this)."""

    source: str
    tags: tuple[str, ...] = ()
    base_image: str | None = None
    gpu: bool = False
    torch_version: str | None = None
    python_version: str = DEFAULT_PYTHON
    platform: str = DEFAULT_PLATFORM
    requirements: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    build_args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)  # runtime setting name -> value
    ts_config: str | None = None
    no_cache: bool = False
    push: bool = False
    wheelhouse: str | None = None
    fill_wheelhouse: bool = False
    torch_index_url: str | None = None
    context_only: str | None = None
    check: bool = True
    optimize: bool = False  # freeze + optimize_for_inference a TorchScript model (checked)
    sample_input: str | None = None  # JSON file: a batch (nested list of numbers) or a list of them


@dataclass(frozen=True)
class BuildSpec:
    """Everything later stages need; they only read it."""

    model_dir: str  # the unpacked model folder on this machine
    source: str
    source_kind: str
    model_name: str
    model_version: str
    handler: str
    archive_sha256: str
    model_files: tuple[str, ...]  # every file of the model folder, relative, sorted
    weight_files: tuple[str, ...]  # the subset that goes to the weights layer
    tags: tuple[str, ...]
    base_image: str
    gpu: bool
    platform: str
    python_version: str
    torch_version: str
    requirement_files: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # baked ENV (runtime contract names, then user extras)
    env_sources: tuple[tuple[str, str], ...]  # ENV name -> flag or file it came from
    labels: tuple[tuple[str, str], ...]
    port: int
    startup_timeout_s: float
    build_args: tuple[tuple[str, str], ...] = ()
    no_cache: bool = False
    push: bool = False
    wheelhouse: str | None = None
    fill_wheelhouse: bool = False
    torch_index_url: str | None = None
    check: bool = True  # load the handler on the host and as the image's last RUN step
    notes: tuple[str, ...] = ()
    mkserve_version: str = MKSERVE_VERSION

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def key_value(item: str) -> tuple[str, str] | None:
    """`KEY=VALUE` (of --env, --build-arg, --label) as (KEY, VALUE); None when it is not one."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        return None
    return key.strip(), value


def _pairs(items: tuple[str, ...], what: str, problems: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        pair = key_value(item)
        if pair is None:
            problems.append(f"{what} {item!r}: expected KEY=VALUE")
        else:
            pairs.append(pair)
    return pairs


def torch_requirement_version(requested: str | None, host: str | None, gpu: bool) -> str:
    """The torch version the image pins.

    An explicit --torch-version is used as written. Otherwise the host's
    version, with its local label replaced: `+cpu` for CPU images (so that a
    CUDA build can never slip in), none for GPU images (PyPI's default Linux
    wheels are the CUDA builds).
    """
    if requested:
        if not VERSION_RE.match(requested):
            raise UsageError(f"--torch-version {requested!r} is not a version such as 2.13.0")
        return requested
    if not host:
        raise UsageError("torch is not installed here, so its version cannot be copied; "
                         "pass --torch-version (for example 2.13.0)")
    base = host.split("+", 1)[0]
    return base if gpu else f"{base}+cpu"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, read in 1 MiB chunks (archives and wheels run to gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of an archive file, or of a folder's sorted (path, content digest) listing."""
    src = Path(path)
    if src.is_file():
        return file_sha256(src)
    digest = hashlib.sha256()
    for file in sorted(_model_files(src)):
        inner = hashlib.sha256((src / file).read_bytes()).hexdigest()
        digest.update(f"{file}\0{inner}\n".encode())
    return digest.hexdigest()


def _model_files(folder: Path) -> list[str]:
    """Relative paths of the files the image gets, leaving out caches and dot-folders."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_NAMES and not d.startswith("."))
        for name in files:
            found.append(Path(root, name).relative_to(folder).as_posix())
    return sorted(found)


def weight_files(source: ModelSource) -> tuple[str, ...]:
    """Files for the weights layer: the serializedFile, weight-like names, anything large.

    They change rarely and are big; the handler and small files change often
    and go in a later layer, so a handler fix rebuilds and pushes kilobytes.
    """
    serialized = source.model.get("serializedFile")
    chosen = []
    for rel in _model_files(source.model_dir):
        path = source.model_dir / rel
        if rel.endswith(".py") or rel.startswith("MAR-INF/"):
            continue
        if rel == serialized or rel.endswith(WEIGHT_SUFFIXES) or path.stat().st_size >= \
                WEIGHT_MIN_BYTES:
            chosen.append(rel)
    return tuple(chosen)


def default_tag(name: str, version: str) -> str:
    repo = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("._-") or "model"
    tag = re.sub(r"[^\w.-]+", "-", version).lstrip(".-") or "latest"
    return f"{repo}:{tag}"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _settings_layers(request: BuildRequest, ts: TsConfig | None,
                     problems: list[str]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Merge the baked layers (CLI over config.properties); return values, origins, extras."""
    cli: dict[str, Any] = {k: v for k, v in request.settings.items() if v is not None}
    origins = {name: FLAGS.get(name, f"--{name}") for name in cli}
    extras: list[str] = []
    by_env = {s.env: s for s in SETTINGS}
    for key, value in _pairs(request.env, "--env", problems):
        if not ENV_NAME_RE.match(key):
            problems.append(f"--env {key}: not a valid environment variable name")
        elif key == BY_NAME["model_dir"].env:
            problems.append(f"--env {key}: the model's place in the image is fixed; "
                            "it cannot be moved with --env")
        elif key in by_env:
            name = by_env[key].name
            if name in cli and _fmt(cli[name]) != value:
                problems.append(f"--env {key}={value} contradicts {origins[name]} {cli[name]}")
            cli.setdefault(name, value)
            origins.setdefault(name, f"--env {key}")
        else:
            extras.append(f"{key}={value}")
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if ts is not None:
        for name, value in ts.settings.items():
            merged[name] = value
            sources[name] = f"config.properties ({ts.path})"
    for name, value in cli.items():  # CLI flag > config.properties
        merged[name] = value
        sources[name] = origins[name]
    return merged, sources, extras


def make_spec(request: BuildRequest, source: ModelSource, ts: TsConfig | None = None, *,
              host_torch: str | None = None, revision: str | None = None,
              source_url: str | None = None) -> BuildSpec:
    """Validate the request against the source and fold everything into one BuildSpec:
    the request's own checks, then the settings layers, the baked ENV, the labels."""
    problems: list[str] = []
    tags = request.tags or (default_tag(source.name, source.version),)
    build_args, user_labels = _request_problems(request, tags, problems)
    merged, sources, extras = _settings_layers(request, ts, problems)
    if source.kind == "plain" and "model_name" not in merged:
        # A folder without a manifest is named after itself; in the image it is
        # /opt/mkserve/model, so the name must travel as ENV.
        merged["model_name"] = source.name
        sources["model_name"] = "the model folder's name"
    try:
        torch_version = torch_requirement_version(request.torch_version, host_torch, request.gpu)
    except UsageError as exc:
        problems.append(str(exc))
        torch_version = ""
    env_items, env_sources = _baked_env(merged, sources, extras, problems)
    try:
        effective = resolve(dict(env_items), source.model_config)
    except SettingsError as exc:  # to_env checked each value; this guards combinations
        raise UsageError(str(exc)) from exc
    model_name = effective.model_name or source.name
    requirement_files = tuple(str(Path(r).resolve()) for r in request.requirements)
    archive_requirements = source.model.get("requirementsFile")
    if archive_requirements:
        requirement_files += (str(source.model_dir / archive_requirements),)
    image_labels = _image_labels(request, source, effective, torch_version)
    if revision:
        image_labels[L.OCI_REVISION] = revision
    if source_url:
        image_labels[L.OCI_SOURCE] = source_url
    image_labels.update(user_labels)  # the user's word wins for the OCI keys
    notes = list(source.notes) + (list(ts.notes) if ts else [])
    return BuildSpec(
        model_dir=str(source.model_dir), source=source.origin, source_kind=source.kind,
        model_name=model_name, model_version=source.version, handler=source.handler,
        archive_sha256=image_labels[L.ARCHIVE_SHA256],
        model_files=tuple(_model_files(source.model_dir)), weight_files=weight_files(source),
        tags=tuple(tags),
        base_image=request.base_image or (DEFAULT_GPU_BASE_IMAGE if request.gpu
                                          else DEFAULT_BASE_IMAGE),
        gpu=request.gpu, platform=request.platform, python_version=request.python_version,
        torch_version=torch_version, requirement_files=requirement_files,
        env=tuple(env_items), env_sources=tuple(env_sources),
        labels=tuple(sorted(image_labels.items())), port=effective.port,
        startup_timeout_s=effective.startup_timeout_s, build_args=tuple(build_args),
        no_cache=request.no_cache, push=request.push, wheelhouse=request.wheelhouse,
        fill_wheelhouse=request.fill_wheelhouse, torch_index_url=request.torch_index_url,
        check=request.check, notes=tuple(notes))


def _request_problems(request: BuildRequest, tags: Sequence[str], problems: list[str],
                      ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Check what the request says on its own; return its build args and labels."""
    for tag in tags:
        if not TAG_RE.match(tag):
            problems.append(f"--tag {tag!r}: not an image reference such as classifier:1.0 "
                            "or registry.example.com/team/classifier:1.0")
    if request.platform not in PLATFORMS:
        problems.append(f"--platform {request.platform}: expected one of "
                        + ", ".join(sorted(PLATFORMS)))
    if not re.match(r"^3\.\d+$", request.python_version):
        problems.append(f"--python-version {request.python_version}: expected 3.X, e.g. 3.11")
    for req in request.requirements:
        if not Path(req).is_file():
            problems.append(f"--requirements {req}: no such file")
    build_args = _pairs(request.build_args, "--build-arg", problems)
    for key, _ in build_args:
        if key.upper().startswith("PIP_"):
            problems.append(f"--build-arg {key}: packages are downloaded on this machine, never "
                            f"inside the build; set {key} in the environment of `mkserve build` "
                            "instead (build args can end up in the image's history)")
    user_labels = _pairs(request.labels, "--label", problems)
    for key, _ in user_labels:
        if key.startswith(L.PREFIX):
            problems.append(f"--label {key}: {L.PREFIX}* labels describe what mkserve built "
                            "and cannot be set by hand")
    return build_args, user_labels


def _baked_env(merged: dict[str, Any], sources: dict[str, str], extras: list[str],
               problems: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The image's ENV in the contract's order, each with where it came from; raises
    UsageError with every problem found so far."""
    env: dict[str, str] = {}
    for name, value in merged.items():  # one by one, so each problem names its flag
        try:
            env.update(to_env({name: value}))
        except (SettingsError, ValueError) as exc:
            problems.append(f"{sources[name]} {value!r}: {exc} "
                            f"({BY_NAME[name].env}: {BY_NAME[name].help})")
    if problems:
        raise UsageError("; ".join(problems))
    name_by_env = {s.env: s.name for s in SETTINGS}
    env_items = [(s.env, env[s.env]) for s in SETTINGS if s.env in env]  # contract order
    env_sources = [(key, sources[name_by_env[key]]) for key, _ in env_items]
    for extra in extras:
        key, _, value = extra.partition("=")
        env_items.append((key, value))
        env_sources.append((key, f"--env {key}"))
    return env_items, env_sources


def _image_labels(request: BuildRequest, source: ModelSource, effective: RuntimeSettings,
                  torch_version: str) -> dict[str, str]:
    """What the image says about itself (labels.py): the model, its settings, the build."""
    model_name = effective.model_name or source.name
    return {
        L.OCI_TITLE: model_name,
        L.OCI_VERSION: source.version,
        L.OCI_DESCRIPTION: f"{model_name} {source.version} served by mkserve "
                           "(TorchServe and KServe inference APIs)",
        L.MODEL_NAME: model_name,
        L.MODEL_VERSION: source.version,
        L.HANDLER: source.handler,
        L.ARCHIVE_SHA256: source_digest(source.origin),
        L.SOURCE_KIND: source.kind,
        **{key: _fmt(getattr(effective, name)) for name, key in L.SETTING_LABELS.items()},
        L.GPU: _fmt(request.gpu),
        L.TORCH_VERSION: torch_version,
        L.MKSERVE_VERSION: MKSERVE_VERSION,
    }
