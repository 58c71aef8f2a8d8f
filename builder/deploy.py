"""The deploy spec: how an image runs, built once from its labels or from a model source."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mkserve.runtime.devices import plan_workers, worker_bounds
from mkserve.runtime.settings import BY_NAME, SettingsError, parse_bool, resolve
from mkserve.runtime.source import SourceError, open_source

from . import labels as L
from .errors import SourceProblem, UsageError

# Knative's default target utilisation is 70 % of containerConcurrency; we write the
# same number down explicitly so Knative, KServe and the in-flight HPA agree.
TARGET_UTILISATION = 0.7
CPU_RESOURCES = {"cpu_request": "1", "cpu_limit": "2", "memory_request": "2Gi",
                 "memory_limit": "4Gi"}
# Cloud Run's floor for an L4 GPU is 4 vCPU and 16 GiB; use it everywhere for GPU builds.
GPU_RESOURCES = {"cpu_request": "4", "cpu_limit": "4", "memory_request": "16Gi",
                 "memory_limit": "16Gi"}
_CPU_RE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)(m?)$")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?$")
_MEMORY_UNITS = {None: 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
                 "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DNS_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 50  # leaves room for Knative's "-00001" revision suffix and "-predictor" (KServe)


@dataclass(frozen=True)
class DeploySpec:
    """Everything the manifests say, decided once; templates only substitute and loop.

    Built by `from_labels` (an image) or `from_source` (a model source), then
    completed: workers, threads and concurrency come from the same
    `plan_workers` the runtime calls at start, fed the CPU limit rendered here.
    """

    image: str
    model_name: str
    model_version: str
    name: str
    port: int
    gpu: bool
    gpu_count: int
    gpu_type: str
    batch_size: int
    workers: int
    threads: int
    concurrency: int
    workers_auto: bool
    startup_timeout_s: float
    graceful_timeout_s: float
    response_timeout_s: float
    grpc_port: int  # 0: the image serves no gRPC
    protocol: str  # what `port` speaks: http, or grpc (gRPC first; HTTP on http_port)
    http_port: int
    namespace: str = "default"
    replicas: int = 2
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "2Gi"
    memory_limit: str = "4Gi"
    min_scale: int = 1
    max_scale: int = 10
    initial_scale: int = 1
    target: int = 1
    scale_to_zero: bool = False
    scale_to_zero_retention_s: int = 300
    hpa_cpu_percent: int = 70
    inflight_target: int = 1
    prestop_s: int = 5
    run_as_user: int = 1000
    tmp_size: str = "1Gi"
    labels: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    monitor_labels: Mapping[str, str] = field(default_factory=dict)
    previous_revision: str | None = None
    canary_percent: int = 10
    source: str = "model"
    prometheus_image: str = "docker.io/prom/prometheus:v2.53.0"
    scrape_interval_s: int = 15
    # Host ports docker-compose.yaml publishes: the model's (0, the default: the image's port)
    # and Prometheus' (default 9090). Change them when those ports are taken on the host.
    host_port: int = 0
    prometheus_host_port: int = 9090
    # The CI workflow: how it installs mkserve (a pip requirement; "" = mkserve==<this
    # version>, which `mkserve render` replaces with how this mkserve was installed) and the
    # torch the runner installs, whose version `mkserve build` copies into the image.
    mkserve_requirement: str = ""
    torch_version: str = ""

    def replace(self, **changes: Any) -> DeploySpec:
        return dataclasses.replace(self, **changes)


# The spec's fields that are runtime settings (same names as in runtime/settings.py): read
# from an image's labels, or resolved from a source as the runtime will.
RUNTIME_FIELDS = ("port", "workers", "threads", "batch_size", "startup_timeout_s",
                  "graceful_timeout_s", "response_timeout_s", "grpc_port", "protocol",
                  "http_port")
# Values a user may set with --values or a flag; the rest are read from the image or derived.
DERIVED = frozenset({"concurrency", "workers_auto"})
OVERRIDABLE = frozenset(f.name for f in dataclasses.fields(DeploySpec)) - DERIVED
SHORTHANDS = {"cpu": ("cpu_request", "cpu_limit"), "memory": ("memory_request", "memory_limit")}
_INT_FIELDS = {f.name for f in dataclasses.fields(DeploySpec) if f.type in ("int", int)}
_FLOAT_FIELDS = {name for name in RUNTIME_FIELDS if isinstance(BY_NAME[name].default, float)}
_MAP_FIELDS = {"labels", "node_selector", "monitor_labels"}


def parse_cpu(quantity: str) -> float:
    """Cores in a Kubernetes CPU quantity ("2", "1.5", "1500m")."""
    match = _CPU_RE.match(str(quantity).strip())
    if not match:
        raise ValueError(f"{quantity!r} is not a CPU quantity (examples: 2, 0.5, 1500m)")
    number = float(match.group(1))
    return number / 1000.0 if match.group(2) else number


def parse_memory(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity ("4Gi", "512Mi", "1G")."""
    match = _MEMORY_RE.match(str(quantity).strip())
    if not match:
        raise ValueError(f"{quantity!r} is not a memory quantity (examples: 4Gi, 512Mi)")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])


def k8s_name(model_name: str) -> str:
    """A DNS-1035 label (what Knative and KServe demand) made from a model name."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = "m-" + name
    return name[:MAX_NAME].rstrip("-") or "model"


def from_labels(image: str, labels: Mapping[str, str] | None,
                overrides: Mapping[str, Any] | None = None) -> DeploySpec:
    """A spec for an image built by mkserve, from the labels the builder wrote (labels.py)."""
    labels = dict(labels or {})
    if not labels.get(L.MODEL_NAME):
        raise UsageError(f"{image}: no {L.MODEL_NAME} label; is this an image built by "
                         "`mkserve build`? Render from the model source instead: "
                         "mkserve render SOURCE --image " + image)
    problems: list[str] = []

    def read(key: str, setting: str) -> Any:
        raw = labels.get(key)
        if raw is None or str(raw).strip() == "":
            return BY_NAME[setting].default
        try:
            return BY_NAME[setting].parse(str(raw))
        except ValueError as exc:
            problems.append(f"label {key}={raw!r}: {exc}")
            return BY_NAME[setting].default

    base = {
        "image": image,
        "model_name": labels[L.MODEL_NAME],
        "model_version": labels.get(L.MODEL_VERSION) or "1.0",
        **{name: read(L.SETTING_LABELS[name], name) for name in RUNTIME_FIELDS},
        "gpu": str(labels.get(L.GPU, "")).strip().lower() == "true",
        "torch_version": str(labels.get(L.TORCH_VERSION, "")).split("+", 1)[0],
    }
    if problems:
        raise UsageError(f"{image}: unreadable labels: " + "; ".join(problems))
    return _complete(base, overrides or {}, min_workers=None, max_workers=None)


def from_source(path: str | os.PathLike[str], image: str,
                overrides: Mapping[str, Any] | None = None) -> DeploySpec:
    """A spec for the image `mkserve build SOURCE` makes, resolved the way the runtime resolves it.

    The caller's environment is deliberately not consulted: the image bakes
    the archive's model-config.yaml and build flags, not the shell of whoever
    renders the manifests.
    """
    try:
        with tempfile.TemporaryDirectory(prefix="mkserve-render-") as work:
            source = open_source(path, work)
            settings = resolve({}, source.model_config)
            config = dict(source.model_config)
            name, version = source.name, source.version
    except SourceError as exc:
        raise SourceProblem(str(exc)) from exc
    except SettingsError as exc:
        raise UsageError(str(exc)) from exc
    base = {
        "image": image,
        "model_name": settings.model_name or name,
        "model_version": version,
        **{name: getattr(settings, name) for name in RUNTIME_FIELDS},
        # Like `mkserve build`, a GPU image only when asked (gpu: true / --gpu), whatever
        # deviceType says: a CPU image's manifests must not claim a GPU.
        "gpu": False,
        "source": _ci_source(path),
        "torch_version": _host_torch_version(),
    }
    return _complete(base, overrides or {}, **worker_bounds(config))


def load_values(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An overrides file: a YAML mapping of spec fields (`cpu`, `memory` set request and limit)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the values file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: must be a mapping such as `namespace: ml` / `replicas: 3`")
    return {str(k): v for k, v in data.items()}


def normalize_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Validate override keys and types; expand `cpu`/`memory`; accept kebab-case keys."""
    result: dict[str, Any] = {}
    problems: list[str] = []
    for raw_key, value in overrides.items():
        key = raw_key.replace("-", "_")
        if value is None:
            continue
        if key in SHORTHANDS:
            for target in SHORTHANDS[key]:
                result.setdefault(target, str(value))
            continue
        if key not in OVERRIDABLE:
            known = ", ".join(sorted(OVERRIDABLE | set(SHORTHANDS)))
            problems.append(f"unknown setting {raw_key!r} (known: {known})")
            continue
        try:
            result[key] = _coerce(key, value)
        except (TypeError, ValueError) as exc:
            problems.append(f"{raw_key}={value!r}: {exc}")
    if problems:
        raise UsageError("invalid deploy values: " + "; ".join(problems))
    return result


def _coerce(key: str, value: Any) -> Any:
    if key in _MAP_FIELDS:
        if not isinstance(value, Mapping):
            raise TypeError("expected a mapping of strings")
        return {str(k): str(v) for k, v in sorted(value.items())}
    if key in ("gpu", "scale_to_zero"):
        if isinstance(value, bool):
            return value
        return parse_bool(str(value))
    if key in _FLOAT_FIELDS:
        return float(value)
    if key in _INT_FIELDS:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError("expected a whole number")
        return int(float(value))
    return str(value)


def _complete(base: Mapping[str, Any], overrides: Mapping[str, Any],
              min_workers: int | None, max_workers: int | None) -> DeploySpec:
    """Apply overrides, plan workers exactly as the runtime will, and validate."""
    values: dict[str, Any] = {**base, **normalize_overrides(overrides)}
    gpu = bool(values.get("gpu"))
    for key, default in (GPU_RESOURCES if gpu else CPU_RESOURCES).items():
        values.setdefault(key, default)
    values.setdefault("gpu_count", 1 if gpu else 0)
    if not gpu:
        values["gpu_count"] = 0
    values.setdefault("gpu_type", "nvidia-l4")
    values.setdefault("name", k8s_name(str(values["model_name"])))
    if not values.get("host_port"):  # the HTTP port's own number
        values["host_port"] = values["http_port" if values.get("protocol") == "grpc" else "port"]
    problems = _check_quantities(values)
    if problems:
        raise UsageError("invalid deploy values: " + "; ".join(problems))
    # What the runtime does at start: cores = the cgroup quota rounded up (devices.cpu_cores),
    # GPUs = what the node gives the container (the nvidia.com/gpu limit rendered here).
    cores = max(1, math.ceil(parse_cpu(values["cpu_limit"])))
    plan = plan_workers(int(values["workers"]), int(values["threads"]), 0,
                        int(values["batch_size"]), "gpu" if gpu else "cpu", cores,
                        int(values["gpu_count"]), min_workers=min_workers,
                        max_workers=max_workers)
    values["workers_auto"] = int(values["workers"]) == 0
    values["workers"], values["threads"] = plan.workers, plan.threads
    values["concurrency"] = plan.concurrency
    values.setdefault("target", max(1, int(plan.concurrency * TARGET_UTILISATION)))
    values.setdefault("inflight_target", values["target"])
    if values.get("scale_to_zero") or values.get("min_scale") == 0:
        values["scale_to_zero"], values["min_scale"] = True, 0
    spec = DeploySpec(**values)
    problems = validate(spec)
    if problems:
        raise UsageError("invalid deploy values: " + "; ".join(problems))
    return spec


def _check_quantities(values: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, parse in (("cpu_request", parse_cpu), ("cpu_limit", parse_cpu),
                       ("memory_request", parse_memory), ("memory_limit", parse_memory),
                       ("tmp_size", parse_memory)):
        if key in values:
            try:
                parse(str(values[key]))
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
    return problems


def validate(spec: DeploySpec) -> list[str]:
    """Every problem with the spec, each with the field, the bad value and the fix."""
    problems = []
    for key in ("port", "host_port", "prometheus_host_port"):
        if not 1 <= getattr(spec, key) <= 65535:
            problems.append(f"{key}={getattr(spec, key)}: must be 1..65535")
    if not _DNS_LABEL_RE.match(spec.name):
        problems.append(f"name={spec.name!r}: must be lower-case letters, digits and '-', "
                        "starting with a letter (Knative and KServe require it)")
    return [*problems, *_resource_problems(spec), *_scaling_problems(spec),
            *_duration_problems(spec)]


def _resource_problems(spec: DeploySpec) -> list[str]:
    problems = []
    if parse_cpu(spec.cpu_request) > parse_cpu(spec.cpu_limit):
        problems.append(f"cpu_request={spec.cpu_request} is above cpu_limit={spec.cpu_limit}")
    if parse_memory(spec.memory_request) > parse_memory(spec.memory_limit):
        problems.append(f"memory_request={spec.memory_request} is above "
                        f"memory_limit={spec.memory_limit}")
    if spec.gpu and spec.gpu_count < 1:
        problems.append(f"gpu_count={spec.gpu_count}: a GPU build needs at least 1")
    return problems


def _scaling_problems(spec: DeploySpec) -> list[str]:
    problems = []
    if spec.max_scale < 1 or spec.min_scale > spec.max_scale:
        problems.append(f"min_scale={spec.min_scale}, max_scale={spec.max_scale}: need "
                        "0 <= min_scale <= max_scale and max_scale >= 1")
    if not spec.min_scale <= spec.initial_scale <= spec.max_scale or spec.initial_scale < 1:
        problems.append(f"initial_scale={spec.initial_scale}: must be 1..max_scale and "
                        "not below min_scale")
    if spec.replicas < 1:
        problems.append(f"replicas={spec.replicas}: must be at least 1")
    if not 1 <= spec.target <= spec.concurrency:
        problems.append(f"target={spec.target}: must be 1..{spec.concurrency} (the "
                        "concurrency the runtime admits: workers x threads)")
    if spec.inflight_target < 1:
        problems.append(f"inflight_target={spec.inflight_target}: must be at least 1")
    if not 1 <= spec.hpa_cpu_percent <= 100:
        problems.append(f"hpa_cpu_percent={spec.hpa_cpu_percent}: must be 1..100")
    if not 0 <= spec.canary_percent <= 100:
        problems.append(f"canary_percent={spec.canary_percent}: must be 0..100")
    if spec.previous_revision is not None and not _DNS_LABEL_RE.match(spec.previous_revision):
        problems.append(f"previous_revision={spec.previous_revision!r}: not a revision name; "
                        "read it with kubectl get ksvc NAME -o "
                        "jsonpath='{.status.latestReadyRevisionName}'")
    return problems


def _duration_problems(spec: DeploySpec) -> list[str]:
    problems = []
    for key in ("startup_timeout_s", "graceful_timeout_s", "response_timeout_s"):
        if getattr(spec, key) <= 0:
            problems.append(f"{key}={getattr(spec, key)}: must be greater than 0")
    for key in ("prestop_s", "scale_to_zero_retention_s", "scrape_interval_s"):
        if getattr(spec, key) < 0:
            problems.append(f"{key}={getattr(spec, key)}: must not be negative")
    return problems


def _host_torch_version() -> str:
    """The torch installed here, which `mkserve build SOURCE` copies (without its +cpu label)."""
    from importlib import metadata

    try:
        return metadata.version("torch").split("+", 1)[0]
    except metadata.PackageNotFoundError:
        return ""


def _ci_source(path: str | os.PathLike[str]) -> str:
    """The source as the user's repository names it, for the CI workflow's build step."""
    text = os.fspath(path)
    if not os.path.isabs(text):
        return Path(text).as_posix()
    try:
        return Path(os.path.relpath(text)).as_posix()
    except ValueError:  # another drive on Windows
        return Path(text).name
