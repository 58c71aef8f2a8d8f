"""Read a TorchServe config.properties and map what still means something in a one-model image."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mkserve.runtime.settings import BY_NAME, SETTINGS

from .errors import UsageError

# TorchServe key -> runtime setting name, from the settings table. Values are in the
# setting's unit already (max_batch_delay ms, default_response_timeout s, sizes in bytes).
MAPPED: dict[str, str] = {s.ts_property: s.name for s in SETTINGS if s.ts_property}

# Keys of the per-model `models={...}` JSON -> runtime setting name.
MODEL_KEYS: dict[str, str] = {s.model_config: s.name for s in SETTINGS
                              if s.in_models_entry and s.model_config}

# Keys that do not apply to a one-model container, each with the reason.
IGNORED: dict[str, str] = {
    "management_address": "no management API in the image: replicas, versions and rollouts "
                          "belong to the orchestrator",
    "metrics_address": "metrics are served at /metrics on the serving port (one port, as Knative "
                       "requires); set MKSERVE_METRICS_PORT at run time for a second port",
    "grpc_management_port": "no management API in the image (gRPC serves inference: "
                            "grpc_inference_port)",
    "enable_grpc_ssl": "gRPC is plaintext (h2c) in the image; TLS belongs to the ingress or "
                       "the mesh in front",
    "model_store": "the image holds exactly one model, at /opt/mkserve/model",
    "load_models": "the image serves the model it was built with",
    "number_of_netty_threads": "no Java frontend; each worker's event loop does the HTTP",
    "netty_client_threads": "no Java frontend",
    "async_logging": "logs are JSON lines on stdout/stderr, written as they happen",
    "vmargs": "no JVM in the image",
    "enable_batch": "not a TorchServe setting; batching is on whenever the batch size is > 1",
    "max_response_size": "responses are not size-capped in mkserve; bound the input instead "
                         "(max_request_size)",
    "install_py_dep_per_model": "requirements are installed when the image is built, never at "
                                "model load",
    "disable_token_authorization": "no token auth and no management API in the image; put "
                                   "authentication in front of it (ingress, IAM)",
    "enable_token_authorization": "no token auth in the image; put authentication in front of it",
    "allowed_urls": "nothing in the image loads a model from a URL",
    "workflow_store": "workflows are not supported; one image serves one model",
    "enable_envvars_config": "mkserve is always configured by environment variables (MKSERVE_*)",
    "metrics_mode": "metrics are always Prometheus text at /metrics",
    "metrics_format": "metrics are always Prometheus text at /metrics",
    "metrics_config": "metrics are always Prometheus text at /metrics",
    "enable_metrics_api": "metrics are always served at /metrics",
    "default_service_handler": "the handler comes from the archive's manifest",
    "keystore": "TLS terminates in front of the container (ingress, load balancer)",
    "keystore_pass": "TLS terminates in front of the container (ingress, load balancer)",
    "keystore_type": "TLS terminates in front of the container (ingress, load balancer)",
    "private_key_file": "TLS terminates in front of the container (ingress, load balancer)",
    "certificate_file": "TLS terminates in front of the container (ingress, load balancer)",
    "cors_allowed_origin": "CORS is the ingress's job",
    "cors_allowed_methods": "CORS is the ingress's job",
    "cors_allowed_headers": "CORS is the ingress's job",
    "initial_worker_port": "workers are threads and processes inside one container, no ports",
    "decode_input_request": "requests are always decoded by content type (JSON, text, bytes)",
    "use_native_io": "no Java frontend",
    "io_ratio": "no Java frontend",
    "max_workers": "the worker count comes from default_workers_per_model or the CPU quota",
    "workflow_store_dir": "workflows are not supported",
}


@dataclass(frozen=True)
class TsConfig:
    """What a config.properties contributes to a build: settings by name, and one note per key."""

    path: str
    settings: dict[str, Any]
    notes: tuple[str, ...]


def parse_properties(text: str) -> dict[str, str]:
    """Java .properties: `k=v`, `k: v` or `k v`; `#`/`!` comments; `\\` continues a line."""
    result: dict[str, str] = {}
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:  # an odd number of backslashes continues the line
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    for line in logical:
        match = re.match(r"((?:\\.|[^=:\s\\])+)\s*[=:\s]?\s*(.*)$", line)
        if match:
            result[_unescape(match.group(1))] = _unescape(match.group(2).rstrip())
    return result


def _unescape(value: str) -> str:
    def sub(m: re.Match[str]) -> str:
        char = m.group(1)
        if char.startswith("u"):
            return chr(int(char[1:], 16))
        return {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(char, char)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", sub, value)


def _port(address: str) -> tuple[int | None, list[str]]:
    notes = []
    parts = urlsplit(address if "//" in address else f"http://{address}")
    if parts.scheme == "https":
        notes.append("inference_address: https is not served in the container; TLS terminates "
                     "in front of it, the container serves plain HTTP on the same port")
    if parts.hostname not in (None, "0.0.0.0", "::", "[::]"):
        notes.append(f"inference_address: host {parts.hostname} ignored; a container listens on "
                     "0.0.0.0 (MKSERVE_HOST) and the engine publishes the port")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return port, notes


def _model_entry(raw: str, model_name: str | None) -> tuple[dict[str, Any], list[str]]:
    """The `models` JSON's entry for this model (its default version, or its only one)."""
    try:
        models = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"config.properties: models is not valid JSON ({exc})") from exc
    if not isinstance(models, dict) or not models:
        return {}, []
    name = model_name if model_name in models else (next(iter(models)) if len(models) == 1
                                                    else None)
    if name is None:
        return {}, [(f"models: no entry for {model_name!r} "
                     f"(found {', '.join(sorted(models))}); ignored")]
    versions = models[name]
    if not isinstance(versions, dict) or not versions:
        return {}, []
    entries = [v for v in versions.values() if isinstance(v, dict)]
    chosen = next((v for v in entries if v.get("defaultVersion")), entries[0] if entries else {})
    notes = [f"models: using the settings of {name!r}"]
    return chosen, notes


def _with_snapshot(props: dict[str, str], origin: str, notes: list[str]) -> dict[str, str]:
    """A model_snapshot's `models` (TorchServe writes one on every change) count as
    `models`, which win when also given."""
    snapshot = props.get("model_snapshot")
    if snapshot is None:
        return props
    try:
        taken = json.loads(snapshot)
    except ValueError as exc:
        raise UsageError(f"{origin}: model_snapshot is not valid JSON ({exc})") from exc
    rest = {k: v for k, v in props.items() if k != "model_snapshot"}
    if isinstance(taken, dict) and "models" in taken and "models" not in props:
        rest["models"] = json.dumps(taken["models"])
        notes.append("model_snapshot: using its models entry")
    return rest


def _gpus(raw: str, gpu: bool, settings: dict[str, Any], notes: list[str],
          problems: list[str]) -> None:
    try:
        count = int(raw)
    except ValueError:
        problems.append(f"number_of_gpu={raw!r}: expected a whole number")
        return
    if count == 0:
        settings["device"] = "cpu"
    elif not gpu:
        notes.append(f"number_of_gpu={count}: this is a CPU image (torch without CUDA); "
                     "build with --gpu to serve on GPUs")
    else:
        notes.append("number_of_gpu: GPUs are used when the container is given them "
                     "(--gpus, nvidia.com/gpu); the orchestrator decides how many")


def map_properties(props: dict[str, str], model_name: str | None = None,
                   origin: str = "config.properties", gpu: bool = False) -> TsConfig:
    """Map parsed properties onto runtime settings; collect every bad value into one error."""
    settings: dict[str, Any] = {}
    notes: list[str] = []
    problems: list[str] = []

    def put(name: str, key: str, raw: Any) -> None:
        try:
            settings[name] = BY_NAME[name].parse(str(raw))
        except ValueError as exc:
            problems.append(f"{key}={raw!r}: {exc}")

    # Per-model entries come last: more specific than the server-wide keys.
    props = _with_snapshot(props, origin, notes)
    for key, raw in sorted(props.items(), key=lambda item: item[0] == "models"):
        if key == "inference_address":
            port, more = _port(raw)
            notes.extend(more)
            put("port", key, port)
        elif key in MAPPED:
            put(MAPPED[key], key, raw)
        elif key == "number_of_gpu":
            _gpus(raw, gpu, settings, notes, problems)
        elif key == "models":
            entry, more = _model_entry(raw, model_name)
            notes.extend(more)
            for mkey, name in MODEL_KEYS.items():
                if mkey in entry:
                    put(name, f"models.{mkey}", entry[mkey])
        elif key in IGNORED:
            notes.append(f"{key}: ignored: {IGNORED[key]}")
        else:
            notes.append(f"{key}: ignored: not a setting mkserve knows")
    if problems:
        raise UsageError(f"{origin}: " + "; ".join(problems))
    return TsConfig(origin, settings, tuple(notes))


def read_ts_config(path: str | Path, model_name: str | None = None, gpu: bool = False,
                   ) -> TsConfig:
    """Read and map a TorchServe config.properties file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--ts-config {file}: cannot read it ({exc.strerror})") from exc
    return map_properties(parse_properties(text), model_name, origin=str(file), gpu=gpu)
