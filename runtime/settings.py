"""The runtime's environment contract: every MKSERVE_* setting, declared once.

The runtime reads these; the builder bakes them into images as ENV from the
same declarations; `mkserve serve` passes its flags through them. Precedence,
in one place: environment (which is where CLI flags and build flags land) >
the archive's model-config.yaml > the default written here.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class SettingsError(ValueError):
    """One or more settings are invalid; the message lists each with its fix."""


def parse_bool(raw: str) -> bool:
    """The spellings of true and false that every mkserve setting and value accepts."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return value

    return parse


def _non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        value = kind(raw.strip())
        if value < 0:
            raise ValueError("must not be negative")
        return value

    return parse


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        value = kind(raw.strip())
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    return parse


def _status(raw: str) -> int:
    value = int(raw)
    if value not in (429, 503):
        raise ValueError("expected 429 or 503")
    return value


@dataclass(frozen=True)
class Setting:
    """One knob: its environment variable, parser, default and meaning.

    `model_config` names the model-config.yaml key that supplies a value when
    the environment does not (TorchServe's names); `in_models_entry` says that
    config.properties' per-model `models={...}` entries take the same key, and
    `ts_property` names the server-wide config.properties key that maps onto
    the setting (`mkserve build --ts-config`). `flag` is the option of `mkserve
    build` and `mkserve serve` that sets it; `label` the image label (after
    "io.mkserve.") that records the value an image was built with, which
    `mkserve render IMAGE` reads back.
    """

    name: str
    env: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    model_config: str | None = None
    example: str = ""
    flag: str | None = None
    label: str | None = None
    ts_property: str | None = None
    in_models_entry: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("model_dir", "MKSERVE_MODEL", str, "/opt/mkserve/model",
            "Model to serve: an unpacked model folder, a .mar or a .tar.gz."),
    Setting("model_name", "MODEL_NAME", str, "",
            "Name in /predictions/{name}; defaults to the manifest's modelName.",
            flag="--name"),
    Setting("host", "MKSERVE_HOST", str, "0.0.0.0", "Address to listen on.", flag="--host"),
    Setting("port", "PORT", _positive(int), 8080,
            "Port to listen on (Knative/Cloud Run set PORT).", flag="--port", label="port"),
    Setting("workers", "MKSERVE_WORKERS", _non_negative(int), 0,
            "gunicorn worker processes; 0 = one per GPU, or sized from the CPU quota.",
            model_config="minWorkers", flag="--workers", label="workers",
            ts_property="default_workers_per_model", in_models_entry=True),
    Setting("threads", "MKSERVE_THREADS", _non_negative(int), 0,
            "Threads per worker for the routes other than plain predictions (probes, "
            "metrics, KServe, forms); 0 = max(batch size, 8).", flag="--threads",
            label="threads"),
    Setting("intra_op_threads", "MKSERVE_INTRA_OP_THREADS", _non_negative(int), 0,
            "torch intra-op threads per worker; 0 = available cores / workers."),
    Setting("batch_size", "MKSERVE_BATCH_SIZE", _positive(int), 1,
            "Largest batch handed to the handler.", model_config="batchSize",
            flag="--batch-size", label="batch.size", ts_property="batch_size",
            in_models_entry=True),
    Setting("max_batch_delay_ms", "MKSERVE_MAX_BATCH_DELAY_MS", _non_negative(float), 100.0,
            "Most a request may wait for company while the model is busy (ms).",
            model_config="maxBatchDelay", flag="--max-batch-delay",
            label="batch.max-delay-ms", ts_property="max_batch_delay", in_models_entry=True),
    Setting("queue_size", "MKSERVE_QUEUE_SIZE", _positive(int), 100,
            "Rows that may wait per worker before requests are shed.",
            model_config="jobQueueSize", flag="--queue-size", label="batch.queue-size",
            ts_property="job_queue_size"),
    Setting("response_timeout_s", "MKSERVE_RESPONSE_TIMEOUT", _positive(float), 120.0,
            "Deadline of a request (s); later ones are answered 504 and never run.",
            model_config="responseTimeout", flag="--response-timeout",
            label="response-timeout-s", ts_property="default_response_timeout",
            in_models_entry=True),
    Setting("startup_timeout_s", "MKSERVE_STARTUP_TIMEOUT", _positive(float), 300.0,
            "Budget for loading the model in a worker (s).", model_config="startupTimeout",
            label="startup-timeout-s"),
    Setting("max_request_bytes", "MKSERVE_MAX_REQUEST_SIZE", _positive(int), 6553500,
            "Largest request body in bytes; larger ones get 413.",
            flag="--max-request-size", ts_property="max_request_size"),
    Setting("head_timeout_s", "MKSERVE_HEAD_TIMEOUT", _positive(float), 10.0,
            "A request head must arrive within this many seconds of its first byte (else "
            "408); also the grace before a body is held to MKSERVE_BODY_MIN_RATE."),
    Setting("body_min_rate", "MKSERVE_BODY_MIN_RATE", _non_negative(int), 8192,
            "Slowest a request body may arrive after that grace, in bytes/s (else 408; "
            "0 = no minimum)."),
    Setting("max_connections", "MKSERVE_MAX_CONNECTIONS", _positive(int), 1000,
            "Open connections per worker (capped by the open-file limit); past it, "
            "new ones wait in the listen backlog."),
    Setting("graceful_timeout_s", "MKSERVE_GRACEFUL_TIMEOUT", _positive(float), 8.0,
            "On SIGTERM, time to finish queued and in-flight requests (s).",
            label="graceful-timeout-s"),
    Setting("device", "MKSERVE_DEVICE", _choice("auto", "cpu", "gpu"), "auto",
            "auto uses GPUs when the host has them.", model_config="deviceType",
            flag="--device"),
    Setting("shed_status", "MKSERVE_SHED_STATUS", _status, 503,
            "Status for a full queue (503 or 429), always with Retry-After."),
    Setting("log_format", "MKSERVE_LOG_FORMAT", _choice("json", "text"), "json",
            "json lines, or text for a terminal.", flag="--log-format"),
    Setting("log_level", "MKSERVE_LOG_LEVEL", _choice("debug", "info", "warning", "error"),
            "info", "Log level."),
    Setting("access_log", "MKSERVE_ACCESS_LOG", parse_bool, True, "Log one line per request."),
    Setting("protocol", "MKSERVE_PROTOCOL", _choice("http", "grpc"), "http",
            "What PORT serves: http (the HTTP APIs; gRPC on MKSERVE_GRPC_PORT when set) or "
            "grpc (gRPC first, for one-port platforms: Knative, Cloud Run and KServe route "
            "PORT as h2c; the HTTP APIs, probes and /metrics move to MKSERVE_HTTP_PORT).",
            flag="--protocol", label="protocol"),
    Setting("http_port", "MKSERVE_HTTP_PORT", _positive(int), 8081,
            "With MKSERVE_PROTOCOL=grpc: the port of the HTTP APIs, probes and /metrics.",
            label="http-port"),
    Setting("grpc_port", "MKSERVE_GRPC_PORT", _non_negative(int), 0,
            "Also serve gRPC on this port: TorchServe's InferenceAPIsService, KServe's "
            "GRPCInferenceService and grpc.health.v1 (0 = off: no gRPC at all).",
            flag="--grpc-port", label="grpc-port", ts_property="grpc_inference_port"),
    Setting("metrics_port", "MKSERVE_METRICS_PORT", _non_negative(int), 0,
            "Also serve /metrics on this port (0 = only on the serving port)."),
    Setting("load_failure_grace_s", "MKSERVE_LOAD_FAILURE_GRACE", _non_negative(float), 2.0,
            "After a failed model load, seconds to report 503 before exiting non-zero."),
    Setting("precision", "MKSERVE_PRECISION", _choice("fp32", "bf16", "fp16"), "fp32",
            "Autocast precision for inference (bf16 works on CPU).", flag="--precision"),
    Setting("jit_optimize", "MKSERVE_JIT_OPTIMIZE", _choice("auto", "on", "off"), "auto",
            "TorchScript graph optimisation in the model thread: auto = on with a GPU "
            "(kernel fusion), off on CPU (no fusion there; saves memory)."),
    Setting("service_envelope", "MKSERVE_SERVICE_ENVELOPE",
            _choice("", "body", "json", "kserve", "kservev2"), "",
            "TorchServe's request envelope around the handler: kserve (V1 instances), "
            "kservev2 (Open Inference Protocol), json, body; empty = none.",
            ts_property="service_envelope"),
    Setting("list_body", "MKSERVE_LIST_BODY", _choice("rows", "whole"), "rows",
            "A JSON array of objects as a request body: rows (each object one row for the "
            "handler, answered as an array) or whole (one body, as TorchServe hands it).",
            model_config="listBody"),
    Setting("warmup_file", "MKSERVE_WARMUP_FILE", str, "",
            "A request body (JSON) run once before the worker reports ready."),
    Setting("max_archive_bytes", "MKSERVE_MAX_ARCHIVE_BYTES", _positive(int), 20 * 1024**3,
            "Most an archive may unpack to, in bytes (a guard against archive bombs)."),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

# TorchServe model-config.yaml keys that mkserve reads besides the settings' own:
# maxWorkers (bounds the workers), deviceIds (which GPUs), pt2 (torch.compile, AOTInductor),
# handler (the handler's own section; handler.profile times it).
MODEL_CONFIG_READ = frozenset({"maxWorkers", "deviceIds", "pt2", "handler"})
# TorchServe's frontend keys with no effect in a one-model container, each with the reason;
# logged once at start. Keys of the handler's own are not TorchServe's: never reported.
MODEL_CONFIG_IGNORED: dict[str, str] = {
    "parallelType": "no model parallelism across processes (torchrun); each worker holds "
                    "the whole model",
    "parallelLevel": "no model parallelism across processes (torchrun)",
    "torchrun": "workers are gunicorn processes, not torchrun ranks",
    "useJobTicket": "a full queue is answered at once with 503 and Retry-After",
    "maxRetryTimeoutInSec": "gunicorn restarts a worker that dies, at once",
    "clientTimeoutInMills": "a request's deadline is responseTimeout (MKSERVE_RESPONSE_TIMEOUT)",
    "continuousBatching": "batches are formed per model call (micro-batching), not per "
                          "generated token",
    "stateful": "no stateful sequences: every request stands alone",
    "sequenceMaxIdleMSec": "no stateful sequences",
    "sequenceTimeoutMSec": "no stateful sequences",
    "maxSequenceJobQueueSize": "no stateful sequences",
    "maxNumSequence": "no stateful sequences",
    "useVenv": "requirements are installed into the image when it is built",
}


def unhonoured(model_config: Mapping[str, Any]) -> list[str]:
    """One line per TorchServe key of the model config that mkserve does not act on."""
    return [f"model-config {key}: ignored: {MODEL_CONFIG_IGNORED[key]}"
            for key in model_config if key in MODEL_CONFIG_IGNORED]

# Variables of the tools around the runtime, not settings of a served model.
DEBUG_VARIABLE = "MKSERVE_DEBUG"  # the CLI shows tracebacks
BENCH_TRIVIAL_VARIABLE = "MKSERVE_BENCH_TRIVIAL"  # the benchmark's trivial endpoint: flask|fast


@dataclass(frozen=True)
class RuntimeSettings:
    """Values of every setting, after precedence and validation."""

    model_dir: str = "/opt/mkserve/model"
    model_name: str = ""
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 0
    threads: int = 0
    intra_op_threads: int = 0
    batch_size: int = 1
    max_batch_delay_ms: float = 100.0
    queue_size: int = 100
    response_timeout_s: float = 120.0
    startup_timeout_s: float = 300.0
    max_request_bytes: int = 6553500
    head_timeout_s: float = 10.0
    body_min_rate: int = 8192
    max_connections: int = 1000
    graceful_timeout_s: float = 8.0
    device: str = "auto"
    shed_status: int = 503
    log_format: str = "json"
    log_level: str = "info"
    access_log: bool = True
    protocol: str = "http"
    http_port: int = 8081
    grpc_port: int = 0
    metrics_port: int = 0
    load_failure_grace_s: float = 2.0
    precision: str = "fp32"
    jit_optimize: str = "auto"
    service_envelope: str = ""
    list_body: str = "rows"
    warmup_file: str = ""
    max_archive_bytes: int = 20 * 1024**3
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def http_listen_port(self) -> int:
        """Where the HTTP server listens: PORT, or MKSERVE_HTTP_PORT when gRPC is first."""
        return self.http_port if self.protocol == "grpc" else self.port

    @property
    def grpc_listen_port(self) -> int:
        """Where gRPC listens: PORT when it is first, else MKSERVE_GRPC_PORT (0: nowhere)."""
        return self.port if self.protocol == "grpc" else self.grpc_port

    def replace(self, **changes: Any) -> RuntimeSettings:
        return dataclasses.replace(self, **changes)


def _from_model_config(setting: Setting, value: Any) -> Any:
    if setting.name == "device":
        return {"gpu": "gpu", "cpu": "cpu"}.get(str(value).lower(), "auto")
    return setting.parse(str(value))


def resolve(env: Mapping[str, str] | None = None,
            model_config: Mapping[str, Any] | None = None,
            warn: Callable[[str], None] | None = None) -> RuntimeSettings:
    """Apply precedence and validate; raise SettingsError listing every problem.

    A bad environment value is an error (the operator typed it); a bad
    model-config.yaml value is a warning and falls back to the default, as
    TorchServe does.
    """
    env = os.environ if env is None else env
    model_config = model_config or {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is not None and raw.strip() != "":
            try:
                values[setting.name] = setting.parse(raw)
                sources[setting.name] = setting.env
            except ValueError as exc:
                problems.append(f"{setting.env}={raw!r}: {exc} ({setting.help})")
            continue
        if setting.model_config and setting.model_config in model_config:
            mc_value = model_config[setting.model_config]
            try:
                values[setting.name] = _from_model_config(setting, mc_value)
                sources[setting.name] = f"model-config.yaml:{setting.model_config}"
                continue
            except (ValueError, TypeError) as exc:
                if warn:
                    warn(f"model-config.yaml {setting.model_config}={mc_value!r} ignored: {exc}")
        values[setting.name] = setting.default
        sources[setting.name] = "default"
    if values["protocol"] == "grpc" and values["http_port"] == values["port"]:
        problems.append(f"MKSERVE_HTTP_PORT={values['http_port']}: with MKSERVE_PROTOCOL=grpc "
                        "gRPC takes PORT; give the HTTP APIs another port")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return RuntimeSettings(**values, sources=sources)


def read(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One setting from the environment alone, its default when unset or invalid: for what
    must be known before `resolve` can report errors (the log format, at start)."""
    setting = BY_NAME[name]
    raw = (os.environ if env is None else env).get(setting.env)
    if raw is None or raw.strip() == "":
        return setting.default
    try:
        return setting.parse(raw)
    except ValueError:
        return setting.default


def to_env(overrides: Mapping[str, Any]) -> dict[str, str]:
    """Render setting values (by name) as environment variables.

    Used by the builder to bake ENV lines and by `mkserve serve` to pass flags.
    """
    env: dict[str, str] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        setting = BY_NAME[name]
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        setting.parse(text)  # refuse to write what the runtime would refuse to read
        env[setting.env] = text
    return env
