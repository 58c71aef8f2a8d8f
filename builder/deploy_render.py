"""Render a DeploySpec through the jinja2 templates in mkserve.templates/deploy (pure)."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2

from . import deploy_derive as d
from .deploy import DeploySpec
from .deploy_ci import workflow_context
from .errors import UsageError

# Output path -> (group for --only, template in templates/deploy/).
FILES: dict[str, tuple[str, str]] = {
    "kubernetes/deployment.yaml": ("kubernetes", "kubernetes-deployment.yaml.j2"),
    "kubernetes/service.yaml": ("kubernetes", "kubernetes-service.yaml.j2"),
    "kubernetes/hpa.yaml": ("kubernetes", "kubernetes-hpa.yaml.j2"),
    "kubernetes/hpa-inflight.yaml": ("kubernetes", "kubernetes-hpa-inflight.yaml.j2"),
    "kubernetes/pdb.yaml": ("kubernetes", "kubernetes-pdb.yaml.j2"),
    "kubernetes/servicemonitor.yaml": ("kubernetes", "kubernetes-servicemonitor.yaml.j2"),
    "knative/service.yaml": ("knative", "knative-service.yaml.j2"),
    "knative/canary.yaml": ("knative", "knative-canary.yaml.j2"),
    "cloudrun/service.yaml": ("cloudrun", "cloudrun-service.yaml.j2"),
    "kserve/inferenceservice.yaml": ("kserve", "kserve-inferenceservice.yaml.j2"),
    "docker-compose.yaml": ("compose", "docker-compose.yaml.j2"),
    "prometheus/prometheus.yml": ("compose", "prometheus.yml.j2"),
    "github/workflow.yaml": ("github", "github-workflow.yaml.j2"),
}
GROUPS = frozenset(group for group, _ in FILES.values())


def parse_only(text: str | None) -> frozenset[str]:
    """`--only kubernetes,knative` -> the groups; everything when not given."""
    if not text:
        return GROUPS
    groups = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = groups - GROUPS
    if unknown:
        raise UsageError(f"--only {text}: unknown {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(sorted(GROUPS))}")
    return groups


def _yaml_scalar(value: Any) -> str:
    """A YAML scalar that reads back as the same value: strings always double-quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(str(value))  # JSON strings are valid YAML double-quoted scalars


def _mapping(values: dict[str, Any], indent: int) -> str:
    """`key: value` lines at `indent` (no trailing newline), for labels and annotations."""
    pad = " " * indent
    return "\n".join(f"{pad}{_yaml_scalar(k)}: {_yaml_scalar(v)}" for k, v in values.items())


def _env(pairs: list[tuple[str, str]], indent: int) -> str:
    """A container `env:` list at `indent` (no trailing newline)."""
    pad = " " * indent
    return "\n".join(f"{pad}- name: {_yaml_scalar(k)}\n{pad}  value: {_yaml_scalar(v)}"
                     for k, v in pairs)


def _items(values: list[Any], indent: int) -> str:
    """A YAML sequence of scalars at `indent` (no trailing newline)."""
    pad = " " * indent
    return "\n".join(f"{pad}- {_yaml_scalar(v)}" for v in values)


def _block(text: str, indent: int) -> str:
    """The lines of a literal block scalar (after `key: |`), for shell scripts in workflows."""
    pad = " " * indent
    return "\n".join(pad + line if line else "" for line in str(text).splitlines())


def environment() -> jinja2.Environment:
    """The template environment: StrictUndefined, so a missing value fails the render."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mkserve.templates", "deploy"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = _yaml_scalar
    env.filters["mapping"] = _mapping
    env.filters["env"] = _env
    env.filters["items"] = _items
    env.filters["block"] = _block
    return env


def _probe(probe: d.Probe) -> dict[str, int | str]:
    return {"path": probe.path, "period": probe.period_s, "timeout": probe.timeout_s,
            "failures": probe.failure_threshold, "initial_delay": probe.initial_delay_s}


def context(spec: DeploySpec) -> dict[str, Any]:
    """Every value any template substitutes; all decisions are made here."""
    resources = {"requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
                 "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit}}
    if spec.gpu:
        # Extended resources are set as limits; Kubernetes copies them to requests.
        resources["limits"]["nvidia.com/gpu"] = str(spec.gpu_count)
    knative_annotations = {
        "autoscaling.knative.dev/target": str(spec.target),
        "autoscaling.knative.dev/min-scale": str(spec.min_scale),
        "autoscaling.knative.dev/max-scale": str(spec.max_scale),
        "autoscaling.knative.dev/initial-scale": str(spec.initial_scale),
    }
    if spec.scale_to_zero:
        knative_annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] = (
            f"{spec.scale_to_zero_retention_s}s")
    knative_annotations["serving.knative.dev/progress-deadline"] = (
        f"{d.progress_deadline_s(spec)}s")
    cloudrun_annotations = {
        # Cloud Run's YAML reference spells the scale bounds in camelCase.
        "autoscaling.knative.dev/minScale": str(spec.min_scale),
        "autoscaling.knative.dev/maxScale": str(spec.max_scale),
        # GPU instances require CPU always allocated (instance-based billing).
        "run.googleapis.com/cpu-throttling": "false" if spec.gpu else "true",
        # Model loading is CPU-bound; extra CPU at start shortens cold starts.
        "run.googleapis.com/startup-cpu-boost": "true",
        "run.googleapis.com/execution-environment": "gen2",
    }
    prestop_command = ["sleep", str(spec.prestop_s)]
    return {
        "spec": spec,
        "name": spec.name,
        "namespace": spec.namespace,
        "image": spec.image,
        "port": spec.port,
        "port_name": d.PORT_NAME,
        # gRPC first: `port` (the one the platform routes) is gRPC's, HTTP moves.
        "grpc_first": spec.protocol == "grpc",
        "http_port": d.http_port(spec),
        "grpc_port": d.grpc_port(spec),
        "grpc_port_name": d.GRPC_PORT_NAME,
        "grpc_app_protocol": d.GRPC_APP_PROTOCOL,
        "serverless_port_name": (d.SERVERLESS_GRPC_PORT_NAME if spec.protocol == "grpc"
                                 else d.SERVERLESS_PORT_NAME),
        "labels": d.common_labels(spec),
        "monitor_labels": {**d.common_labels(spec), **dict(spec.monitor_labels)},
        "selector": d.selector_labels(spec),
        "template_labels": {**d.common_labels(spec),
                            "mkserve.io/model-version": d.label_value(spec.model_version)},
        "scrape_annotations": d.scrape_annotations(spec),
        "metrics_path": d.METRICS_PATH,
        "resources": resources,
        "cloudrun_limits": resources["limits"],
        "env": d.runtime_env(spec, with_port=True),
        "serverless_env": d.runtime_env(spec, with_port=False, tmpdir=d.SERVERLESS_TMP_PATH),
        "cloudrun_env": d.runtime_env(spec, with_port=False),
        "k8s_tmp_path": d.K8S_TMP_PATH,
        "serverless_tmp_path": d.SERVERLESS_TMP_PATH,
        "startup_probe": _probe(d.startup_probe(spec)),
        "readiness_probe": _probe(d.readiness_probe(spec)),
        "liveness_probe": _probe(d.liveness_probe(spec)),
        "serverless_liveness_probe": _probe(d.serverless_liveness_probe(spec)),
        "readiness_path": d.READINESS_PATH,
        "prestop_command": prestop_command,
        "termination_grace_s": d.termination_grace_s(spec),
        "request_timeout_s": d.request_timeout_s(spec),
        "knative_annotations": knative_annotations,
        "cloudrun_annotations": cloudrun_annotations,
        "kserve_annotations": {
            "serving.knative.dev/progress-deadline": f"{d.progress_deadline_s(spec)}s",
            **d.scrape_annotations(spec)},
        "hpa_min_replicas": max(1, spec.min_scale),
        "candidate_tag": d.revision_tag(spec),
        "stable_percent": 100 - spec.canary_percent,
        "compose_service": spec.name,
        "compose_stop_grace": f"{math.ceil(spec.graceful_timeout_s) + d.EXIT_MARGIN_S}s",
        "compose_start_period": f"{d.startup_budget_s(spec)}s",
        "healthcheck_url": f"http://127.0.0.1:{d.http_port(spec)}{d.READINESS_PATH}",
        "scrape_interval": f"{spec.scrape_interval_s}s",
        "scrape_timeout": f"{max(1, min(10, spec.scrape_interval_s))}s",
        "ci": workflow_context(spec),
    }


def render_files(spec: DeploySpec, only: Iterable[str] | None = None) -> dict[str, str]:
    """Render the selected groups; raises UsageError for settings a target platform refuses."""
    groups = GROUPS if only is None else frozenset(only)
    problems, _ = d.target_warnings(spec, groups)
    if problems:
        raise UsageError("cannot render for the selected platforms: " + "; ".join(problems))
    env = environment()
    values = context(spec)
    files: dict[str, str] = {}
    for path, (group, template) in FILES.items():
        if group not in groups:
            continue
        if path == "knative/canary.yaml" and spec.previous_revision is None:
            continue  # a canary needs the revision it splits traffic with
        files[path] = env.get_template(template).render(values)
    return files


def warnings(spec: DeploySpec, only: Iterable[str] | None = None) -> list[str]:
    """Advice for the selected platforms (printed by the CLI; rendering still succeeds)."""
    return d.target_warnings(spec, GROUPS if only is None else frozenset(only))[1]


def write_files(files: dict[str, str], out: str | os.PathLike[str]) -> list[Path]:
    """Write rendered files under `out` (created if needed); returns the paths written."""
    root = Path(out)
    written = []
    for relative, text in sorted(files.items()):
        path = root / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{path}: cannot write ({exc.strerror}); choose another --out") \
                from exc
        written.append(path)
    return written
