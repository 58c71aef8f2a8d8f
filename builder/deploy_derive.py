"""Numbers and names the manifests need, derived from a DeploySpec (templates only substitute)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from mkserve.runtime import routes
from mkserve.runtime.settings import to_env

from .deploy import DeploySpec, parse_cpu, parse_memory

# Endpoints of the runtime, as it declares them.
LIVENESS_PATH = routes.LIVENESS
READINESS_PATH = routes.READINESS
METRICS_PATH = routes.METRICS
PORT_NAME = "http"
GRPC_PORT_NAME = "grpc"
# Kubernetes' application protocol of cleartext HTTP/2, which gRPC is on this port.
GRPC_APP_PROTOCOL = "kubernetes.io/h2c"
# Knative and Cloud Run accept only "http1" or "h2c" as the port name; gunicorn speaks HTTP/1.1.
SERVERLESS_PORT_NAME = "http1"
# Knative's and Cloud Run's name for a port that speaks cleartext HTTP/2 (gRPC first).
SERVERLESS_GRPC_PORT_NAME = "h2c"
# Ports Knative's queue-proxy and autoscaler use in every pod (knative/serving k8s_validation.go).
KNATIVE_RESERVED_PORTS = frozenset({8012, 8013, 8022, 9090, 9091})
KNATIVE_MAX_TIMEOUT_S = 600  # config-defaults max-revision-timeout-seconds
KNATIVE_MAX_CONCURRENCY = 1000  # config-defaults container-concurrency-max-limit
CLOUD_RUN_SIGTERM_GRACE_S = 10  # Cloud Run sends SIGKILL 10 s after SIGTERM
CLOUD_RUN_MAX_TIMEOUT_S = 3600
# Before the model-load timer starts: interpreter, torch import in the master, fork, app.
STARTUP_MARGIN_S = 30
# Knative's progress deadline also covers scheduling and pulling a multi-GB torch image.
IMAGE_PULL_MARGIN_S = 300
KNATIVE_DEFAULT_PROGRESS_DEADLINE_S = 600
# The platform's request timeout sits a little above the runtime's own deadline, so clients
# get the runtime's 504 body (with the reason) rather than a proxy's.
REQUEST_TIMEOUT_MARGIN_S = 5
# After SIGTERM gunicorn needs a moment beyond its graceful timeout to reap workers and exit.
EXIT_MARGIN_S = 2
PROBE_PERIOD_S = 5
LIVENESS_PERIOD_S = 10
LIVENESS_TIMEOUT_S = 5
# Knative mounts nothing at /tmp (a reserved path), so the writable scratch volume goes here.
SERVERLESS_TMP_PATH = "/var/tmp"
K8S_TMP_PATH = "/tmp"


@dataclass(frozen=True)
class Probe:
    """An HTTP probe; `failure_threshold * period_s` is how long it tolerates failure."""

    path: str
    period_s: int
    timeout_s: int
    failure_threshold: int
    initial_delay_s: int = 0


def startup_budget_s(spec: DeploySpec) -> int:
    """Seconds a new container may take to report ready: the model-load budget + process start."""
    return math.ceil(spec.startup_timeout_s) + STARTUP_MARGIN_S


def startup_probe(spec: DeploySpec) -> Probe:
    """On /readyz, because ready is what 'started' means for a model server (the load is done).

    failureThreshold x periodSeconds >= MKSERVE_STARTUP_TIMEOUT + process start; a load
    that overruns makes the runtime exit non-zero by itself, so the probe is a backstop.
    """
    return Probe(READINESS_PATH, PROBE_PERIOD_S, 2,
                 math.ceil(startup_budget_s(spec) / PROBE_PERIOD_S))


def readiness_probe(spec: DeploySpec) -> Probe:
    # Two misses (10 s) take a draining or failed pod out of the endpoints quickly.
    return Probe(READINESS_PATH, PROBE_PERIOD_S, 2, 2)


def liveness_probe(spec: DeploySpec) -> Probe:
    """Tolerates a full request deadline: a worker whose request threads are all taken (by
    KServe predictions waiting on the model) answers the probe only when one frees up, and
    restarting a busy pod would drop its whole queue."""
    threshold = max(3, math.ceil(spec.response_timeout_s / LIVENESS_PERIOD_S))
    return Probe(LIVENESS_PATH, LIVENESS_PERIOD_S, LIVENESS_TIMEOUT_S, threshold)


def serverless_liveness_probe(spec: DeploySpec) -> Probe:
    """Knative and KServe get no startup probe, so liveness waits out the process start."""
    probe = liveness_probe(spec)
    return Probe(probe.path, probe.period_s, probe.timeout_s, probe.failure_threshold,
                 initial_delay_s=STARTUP_MARGIN_S)


def termination_grace_s(spec: DeploySpec) -> int:
    """preStop sleep, then SIGTERM: the runtime drains within MKSERVE_GRACEFUL_TIMEOUT and exits."""
    return spec.prestop_s + math.ceil(spec.graceful_timeout_s) + EXIT_MARGIN_S


def request_timeout_s(spec: DeploySpec) -> int:
    """Knative/Cloud Run/KServe request timeout (Knative also uses it as the pod's grace period)."""
    return math.ceil(spec.response_timeout_s) + REQUEST_TIMEOUT_MARGIN_S


def progress_deadline_s(spec: DeploySpec) -> int:
    """Knative's per-revision startup budget; never below its 600 s default."""
    return max(KNATIVE_DEFAULT_PROGRESS_DEADLINE_S, startup_budget_s(spec) + IMAGE_PULL_MARGIN_S)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def http_port(spec: DeploySpec) -> int:
    """The container port of the HTTP APIs, probes and /metrics."""
    return spec.http_port if spec.protocol == "grpc" else spec.port


def grpc_port(spec: DeploySpec) -> int:
    """The container port of gRPC (0: none)."""
    return spec.port if spec.protocol == "grpc" else spec.grpc_port


def runtime_env(spec: DeploySpec, with_port: bool, tmpdir: str | None = None
                ) -> list[tuple[str, str]]:
    """The runtime settings the manifests depend on, pinned so the pod runs what was planned.

    Workers and threads are pinned because containerConcurrency and the in-flight
    targets were computed from them; PORT only where the platform does not set it
    itself (Knative and Cloud Run reserve it and inject the container port).
    """
    values: dict[str, Any] = {
        "model_name": spec.model_name,
        "workers": spec.workers,
        "threads": spec.threads,
        "startup_timeout_s": _number(spec.startup_timeout_s),
        "graceful_timeout_s": _number(spec.graceful_timeout_s),
        "response_timeout_s": _number(spec.response_timeout_s),
    }
    if spec.protocol == "grpc":  # gRPC on PORT, the HTTP APIs on their own port
        values["protocol"] = spec.protocol
        values["http_port"] = spec.http_port
        if with_port:
            values["port"] = spec.port
    elif with_port:
        values["port"] = spec.port
        if spec.grpc_port:  # a second port: where the platform has room for one
            values["grpc_port"] = spec.grpc_port
    elif spec.grpc_port:  # Knative, Cloud Run, KServe route one port: HTTP; no gRPC listener
        values["grpc_port"] = 0
    env = sorted(to_env(values).items())
    if tmpdir:
        env.append(("TMPDIR", tmpdir))
    return env


def label_value(text: str) -> str:
    """A valid Kubernetes label value (63 characters of [A-Za-z0-9_.-], alphanumeric ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def selector_labels(spec: DeploySpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/instance": spec.name}


def common_labels(spec: DeploySpec) -> dict[str, str]:
    labels = {**selector_labels(spec),
              "app.kubernetes.io/version": label_value(spec.model_version),
              "app.kubernetes.io/component": "model-server",
              "app.kubernetes.io/managed-by": "mkserve"}
    return {**labels, **dict(spec.labels)}


def scrape_annotations(spec: DeploySpec) -> dict[str, str]:
    # The prometheus.io/* convention read by Prometheus' kubernetes_sd relabelling examples.
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(http_port(spec)),
            "prometheus.io/path": METRICS_PATH}


def revision_tag(spec: DeploySpec) -> str:
    """The Knative traffic tag naming the candidate model version (a DNS label: v2-0)."""
    tag = re.sub(r"[^a-z0-9]+", "-", spec.model_version.lower()).strip("-")
    return ("v" + tag)[:30].rstrip("-") or "candidate"


def registry_host(image: str) -> str:
    """The registry of an image reference, as docker login wants it."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def unpullable_reason(image: str) -> str | None:
    """Why a cluster could not pull `image`, if it could not: a registry on this machine,
    or a bare name that means an official Docker Hub image."""
    registry = registry_host(image)
    if registry.split(":", 1)[0] in ("localhost", "127.0.0.1", "[::1]"):
        return "is on this machine's engine only (registry localhost)"
    if "/" not in image.split("@", 1)[0]:
        return f"names the Docker Hub image docker.io/library/{image_repository(image)}"
    return None


def image_repository(image: str) -> str:
    """The image reference without its tag or digest."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    if ":" in last:
        return without_digest[: without_digest.rfind(":")]
    return without_digest


def target_warnings(spec: DeploySpec, groups: frozenset[str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) that only matter for the platforms being rendered."""
    problems: list[str] = []
    warnings: list[str] = []
    serverless = groups & {"knative", "kserve"}
    if serverless and spec.port in KNATIVE_RESERVED_PORTS:
        problems.append(f"port {spec.port} is reserved by Knative's queue-proxy "
                        f"({', '.join(map(str, sorted(KNATIVE_RESERVED_PORTS)))}); build the "
                        "image with another PORT or leave out --only knative,kserve")
    if serverless and request_timeout_s(spec) > KNATIVE_MAX_TIMEOUT_S:
        warnings.append(f"timeoutSeconds {request_timeout_s(spec)} exceeds Knative's default "
                        f"max-revision-timeout-seconds ({KNATIVE_MAX_TIMEOUT_S}); raise it in "
                        "config-defaults or lower the response timeout")
    if serverless and spec.concurrency > KNATIVE_MAX_CONCURRENCY:
        warnings.append(f"containerConcurrency {spec.concurrency} exceeds Knative's default "
                        f"container-concurrency-max-limit ({KNATIVE_MAX_CONCURRENCY})")
    if "cloudrun" in groups:
        if spec.graceful_timeout_s > CLOUD_RUN_SIGTERM_GRACE_S - 1:
            warnings.append(f"graceful timeout {spec.graceful_timeout_s:g}s: Cloud Run kills "
                            f"the container {CLOUD_RUN_SIGTERM_GRACE_S} s after SIGTERM, so "
                            "in-flight requests may be cut; keep MKSERVE_GRACEFUL_TIMEOUT <= 9")
        if request_timeout_s(spec) > CLOUD_RUN_MAX_TIMEOUT_S:
            problems.append(f"timeoutSeconds {request_timeout_s(spec)} exceeds Cloud Run's "
                            f"maximum of {CLOUD_RUN_MAX_TIMEOUT_S}")
        if spec.gpu and spec.gpu_count != 1:
            problems.append(f"gpu_count={spec.gpu_count}: Cloud Run attaches exactly one GPU "
                            "per instance")
        if spec.gpu and (parse_cpu(spec.cpu_limit) < 4 or
                         parse_memory(spec.memory_limit) < 16 * 2**30):
            warnings.append("Cloud Run GPU instances need at least 4 CPU and 16Gi memory")
    unpullable = unpullable_reason(spec.image)
    if unpullable and groups & {"kubernetes", "knative", "kserve", "cloudrun"}:
        warnings.append(f"{spec.image} {unpullable}: a cluster cannot pull it; push the image "
                        "to a registry the cluster can reach (mkserve build SOURCE -t "
                        "REGISTRY/NAME:TAG --push) and render with --image REGISTRY/NAME:TAG")
    if "compose" in groups and spec.host_port == spec.prometheus_host_port:
        warnings.append(f"docker-compose.yaml publishes the model and Prometheus on the same "
                        f"host port {spec.host_port}; set host_port or prometheus_host_port "
                        "with --values")
    return problems, warnings
