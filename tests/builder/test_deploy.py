"""Tests for `mkserve render`: golden files, offline schema validation and the consistency rules.

Golden files live in tests/builder/golden/deploy/<case>/; regenerate them with
MKSERVE_UPDATE_GOLDEN=1 python -m pytest tests/builder/test_deploy.py
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
import kubernetes_validate
import pytest
import typer
import yaml
from mkserve.builder import cli_render, deploy, deploy_ci, deploy_render
from mkserve.builder import labels as L
from mkserve.builder.deploy_ci import (
    BUILD_COMMAND,
    CONTEXT_COMMAND,
    GPU_BUILD_COMMAND,
    GPU_CONTEXT_COMMAND,
    RENDER_COMMAND,
)
from mkserve.builder.errors import EngineError, UsageError
from mkserve.runtime.devices import plan_workers
from mkserve.runtime.settings import RuntimeSettings, resolve
from test_deploy_schemas import CRD_CHECKS, K8S_VERSION, cloudrun_errors, knative_errors
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden" / "deploy"
DOCS = REPO / "docs" / "deploying.md"
EXAMPLE_SOURCES = REPO / "examples" / "classifier"


@pytest.fixture
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide classifier as a plain model folder (a copy: running the guide in
    examples/classifier leaves several weight files there)."""
    folder = tmp_path_factory.mktemp("src") / "classifier"
    folder.mkdir(parents=True)
    for name in ("handler.py", "index_to_name.json", "model-config.yaml"):
        shutil.copy(EXAMPLE_SOURCES / name, folder / name)
    (folder / "model_scripted.pt").write_bytes(b"")  # render never loads the weights
    return folder
UPDATE = os.environ.get("MKSERVE_UPDATE_GOLDEN") == "1"

CPU_LABELS = {
    L.MODEL_NAME: "classifier", L.MODEL_VERSION: "1.0", L.PORT: "8080", L.WORKERS: "0",
    L.THREADS: "0", L.BATCH_SIZE: "32", L.GPU: "false", L.STARTUP_TIMEOUT_S: "300",
    L.GRACEFUL_TIMEOUT_S: "8", L.RESPONSE_TIMEOUT_S: "120", L.MAX_BATCH_DELAY_MS: "5",
    L.TORCH_VERSION: "2.13.0+cpu",
}
GPU_LABELS = {
    **CPU_LABELS, L.MODEL_NAME: "text_classifier", L.MODEL_VERSION: "2.0", L.PORT: "8081",
    L.BATCH_SIZE: "8", L.GPU: "true", L.STARTUP_TIMEOUT_S: "900", L.TORCH_VERSION: "2.13.0",
}
# name -> (image, labels, overrides)
CASES: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "cpu": ("ghcr.io/acme/classifier:1.0", CPU_LABELS, {}),
    "gpu": ("registry.example.com/ml/text-classifier:2.0", GPU_LABELS,
            {"namespace": "ml", "previous_revision": "text-classifier-00001",
             "canary_percent": 10, "monitor_labels": {"release": "prometheus"}}),
    "scale-to-zero": ("ghcr.io/acme/classifier:1.1",
                      {**CPU_LABELS, L.MODEL_VERSION: "1.1", L.WORKERS: "1", L.THREADS: "4",
                       L.BATCH_SIZE: "4"},
                      {"min_scale": 0, "cpu": "1500m", "memory": "3Gi"}),
    # Built with --grpc-port: a second port where the platform has one.
    "grpc": ("ghcr.io/acme/classifier:1.2",
             {**CPU_LABELS, L.MODEL_VERSION: "1.2", L.SETTING_LABELS["grpc_port"]: "7070"}, {}),
    # Built with --protocol grpc: gRPC on the one port the serverless platforms route.
    "grpc-first": ("ghcr.io/acme/classifier:1.3",
                   {**CPU_LABELS, L.MODEL_VERSION: "1.3", L.SETTING_LABELS["protocol"]: "grpc",
                    L.SETTING_LABELS["http_port"]: "8081"}, {}),
}


def spec_for(case: str) -> deploy.DeploySpec:
    image, labels, overrides = CASES[case]
    return deploy.from_labels(image, labels, overrides)


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rendered(case: str) -> dict[str, list[dict[str, Any]]]:
    """Rendered files of a case, parsed: path -> YAML documents."""
    return {path: [d for d in yaml.safe_load_all(text) if d is not None]
            for path, text in deploy_render.render_files(spec_for(case)).items()}


def walk(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (key, value) pair in a nested document."""
    if isinstance(value, dict):
        for key, sub in value.items():
            yield key, sub
            yield from walk(sub)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def one(rendered: dict[str, list[dict[str, Any]]], path: str) -> dict[str, Any]:
    (doc,) = rendered[path]
    return doc


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def image_env(labels: dict[str, str]) -> dict[str, str]:
    """The ENV the builder bakes from the same values it writes as labels."""
    return {"PORT": labels[L.PORT], "MKSERVE_WORKERS": labels[L.WORKERS],
            "MKSERVE_THREADS": labels[L.THREADS], "MKSERVE_BATCH_SIZE": labels[L.BATCH_SIZE],
            "MKSERVE_DEVICE": "gpu" if labels[L.GPU] == "true" else "auto",
            "MKSERVE_STARTUP_TIMEOUT": labels[L.STARTUP_TIMEOUT_S],
            "MKSERVE_GRACEFUL_TIMEOUT": labels[L.GRACEFUL_TIMEOUT_S],
            "MKSERVE_RESPONSE_TIMEOUT": labels[L.RESPONSE_TIMEOUT_S]}


def serving_containers(rendered: dict[str, list[dict[str, Any]]]
                       ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, container) for every manifest that runs the image."""
    for path, docs in rendered.items():
        for doc in docs:
            kind = doc.get("kind")
            knative = kind == "Service" and doc["apiVersion"].startswith("serving.knative.dev")
            if kind == "Deployment" or knative:  # Cloud Run's service is Knative-shaped too
                yield path, doc["spec"]["template"]["spec"]["containers"][0]
            elif kind == "InferenceService":
                yield path, doc["spec"]["predictor"]["containers"][0]


# -- golden files -------------------------------------------------------------------------------


def test_golden_files(case: str) -> None:
    files = deploy_render.render_files(spec_for(case))
    folder = GOLDEN / case
    if UPDATE:
        for old in folder.rglob("*") if folder.exists() else []:
            if old.is_file():
                old.unlink()
        deploy_render.write_files(files, folder)
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == set(files), "rendered files differ from the golden set; " \
        "regenerate with MKSERVE_UPDATE_GOLDEN=1"
    for path, text in files.items():
        assert (folder / path).read_text(encoding="utf-8") == text, \
            f"{case}/{path} differs from its golden file (MKSERVE_UPDATE_GOLDEN=1 regenerates)"


def test_rendering_is_deterministic(case: str) -> None:
    assert deploy_render.render_files(spec_for(case)) == deploy_render.render_files(spec_for(case))


def test_templates_fail_on_missing_values() -> None:
    env = deploy_render.environment()
    assert env.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("kubernetes-service.yaml.j2").render({})


# -- offline schema validation ------------------------------------------------------------------


def test_kubernetes_objects_validate_against_the_official_schemas(rendered: dict) -> None:
    checked = 0
    for path, docs in rendered.items():
        for doc in docs:
            if not path.startswith("kubernetes/") or (doc["apiVersion"],
                                                      doc["kind"]) in CRD_CHECKS:
                continue
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            checked += 1
    # Deployment, Service, two HorizontalPodAutoscalers, PodDisruptionBudget.
    assert checked == 5


def test_crd_objects_pass_their_documented_field_checks(rendered: dict) -> None:
    for path, docs in rendered.items():
        for doc in docs:
            if path.startswith("knative/"):
                errors = knative_errors(doc)
            elif path.startswith("cloudrun/"):
                errors = cloudrun_errors(doc)
            elif (doc.get("apiVersion"), doc.get("kind")) in CRD_CHECKS:
                errors = CRD_CHECKS[(doc["apiVersion"], doc["kind"])](doc)
            else:
                continue
            assert errors == [], f"{path}: {errors}"


def test_compose_and_prometheus_files_are_well_formed(rendered: dict) -> None:
    compose = one(rendered, "docker-compose.yaml")
    assert set(compose) == {"services"}  # no obsolete `version:` (compose v2 warns on it)
    assert set(compose["services"]) == {spec_for_rendered(rendered).name, "prometheus"}
    prometheus = one(rendered, "prometheus/prometheus.yml")
    assert set(prometheus) == {"global", "scrape_configs"}
    mount = compose["services"]["prometheus"]["volumes"][0]
    assert mount.split(":")[0] == "./prometheus/prometheus.yml"  # the file render writes


def spec_for_rendered(rendered: dict) -> SimpleNamespace:
    deployment = one(rendered, "kubernetes/deployment.yaml")
    return SimpleNamespace(name=deployment["metadata"]["name"])


# -- consistency rules --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The runtime's Flask app with its /metrics exporter, as a worker builds it."""
    from mkserve.runtime.app import create_app
    from mkserve.runtime.server import _attach_exporter

    service = SimpleNamespace(settings=RuntimeSettings(), model_name="m", model_version="1",
                              ready=True, state="ready", reason="")
    old = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path_factory.mktemp("metrics"))
    try:
        app = create_app(service)  # type: ignore[arg-type]
        _attach_exporter(app)
    finally:
        if old is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = old
    return app


def test_every_probed_or_scraped_path_is_a_runtime_route(rendered: dict, runtime_app: Any
                                                         ) -> None:
    paths = set()
    for _, value in walk(rendered):
        if isinstance(value, dict) and isinstance(value.get("httpGet"), dict):
            paths.add(value["httpGet"]["path"])
    for key, value in walk(rendered):
        if key in ("prometheus.io/path", "metrics_path", "path") and isinstance(value, str) \
                and value.startswith("/"):
            paths.add(value)
    compose = one(rendered, "docker-compose.yaml")
    model = next(s for n, s in compose["services"].items() if n != "prometheus")
    paths.add(re.search(r"http://[^/]+(/[^']*)'", model["healthcheck"]["test"][-1]).group(1))
    assert {"/livez", "/readyz", "/metrics"} <= paths
    adapter = runtime_app.url_map.bind("localhost")
    for path in sorted(paths):
        adapter.match(path, method="GET")  # raises NotFound for a path the runtime lacks


def test_startup_budget_covers_the_model_load_timeout(rendered: dict) -> None:
    for path, container in serving_containers(rendered):
        load_s = float(env_of(container)["MKSERVE_STARTUP_TIMEOUT"])
        probe = container.get("startupProbe")
        if probe:  # started = the model is loaded: /readyz, or grpc.health.v1 (the same)
            assert probe.get("httpGet", {}).get("path") == "/readyz" or "grpc" in probe
            assert probe["failureThreshold"] * probe["periodSeconds"] >= load_s, path
        else:  # Knative and KServe: the per-revision progress deadline is the budget
            annotations = (one(rendered, path)["spec"].get("template", {}).get("metadata", {})
                           .get("annotations") or
                           one(rendered, path)["spec"]["predictor"]["annotations"])
            deadline = annotations["serving.knative.dev/progress-deadline"]
            assert int(deadline.rstrip("s")) >= load_s, path
    cloudrun = one(rendered, "cloudrun/service.yaml")["spec"]["template"]["spec"]
    probe = cloudrun["containers"][0]["startupProbe"]
    load_s = float(env_of(cloudrun["containers"][0])["MKSERVE_STARTUP_TIMEOUT"])
    assert probe["failureThreshold"] * probe["periodSeconds"] >= load_s
    compose = one(rendered, "docker-compose.yaml")
    model = next(s for n, s in compose["services"].items() if n != "prometheus")
    start = int(model["healthcheck"]["start_period"].rstrip("s"))
    assert start >= float(model["environment"]["MKSERVE_STARTUP_TIMEOUT"])


def test_grace_period_covers_drain_and_prestop(rendered: dict) -> None:
    deployment = one(rendered, "kubernetes/deployment.yaml")["spec"]["template"]["spec"]
    container = deployment["containers"][0]
    drain_s = float(env_of(container)["MKSERVE_GRACEFUL_TIMEOUT"])
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert deployment["terminationGracePeriodSeconds"] >= drain_s + float(command[1])
    # Knative: the pod's grace period is the revision timeout; its queue-proxy holds SIGTERM.
    for path in ("knative/service.yaml", "knative/canary.yaml"):
        if path in rendered:
            spec = one(rendered, path)["spec"]["template"]["spec"]
            assert spec["timeoutSeconds"] >= float(env_of(spec["containers"][0])
                                                   ["MKSERVE_GRACEFUL_TIMEOUT"])
    # Cloud Run's grace is fixed at 10 s after SIGTERM.
    cloudrun = one(rendered, "cloudrun/service.yaml")["spec"]["template"]["spec"]
    assert float(env_of(cloudrun["containers"][0])["MKSERVE_GRACEFUL_TIMEOUT"]) < 10
    compose = one(rendered, "docker-compose.yaml")
    model = next(s for n, s in compose["services"].items() if n != "prometheus")
    assert int(model["stop_grace_period"].rstrip("s")) >= float(
        model["environment"]["MKSERVE_GRACEFUL_TIMEOUT"])


def _admitted(labels: dict[str, str], container_env: dict[str, str], cpu_limit: str,
              gpus: int) -> int:
    """Concurrency the runtime admits in this container: resolve + plan_workers, as prepare()."""
    env = {**image_env(labels), **container_env}
    settings = resolve(env)
    cores = max(1, math.ceil(deploy.parse_cpu(cpu_limit)))  # devices.cpu_cores under a quota
    plan = plan_workers(settings.workers, settings.threads, settings.intra_op_threads,
                        settings.batch_size, settings.device, cores, gpus)
    return plan.concurrency


def test_containerconcurrency_is_what_the_runtime_admits(case: str, rendered: dict) -> None:
    labels = CASES[case][1]
    checked = 0
    for path in ("knative/service.yaml", "knative/canary.yaml", "cloudrun/service.yaml",
                 "kserve/inferenceservice.yaml"):
        if path not in rendered:
            continue
        doc = one(rendered, path)
        spec = doc["spec"]["predictor"] if path.startswith("kserve") else \
            doc["spec"]["template"]["spec"]
        container = spec["containers"][0]
        limits = container["resources"]["limits"]
        gpus = int(limits.get("nvidia.com/gpu", 0))
        assert spec["containerConcurrency"] == _admitted(labels, env_of(container),
                                                         limits["cpu"], gpus), path
        checked += 1
    assert checked >= 3
    # The in-flight HPA and the Knative soft target stay within what one pod admits.
    knative = one(rendered, "knative/service.yaml")["spec"]["template"]
    target = int(knative["metadata"]["annotations"]["autoscaling.knative.dev/target"])
    assert 1 <= target <= knative["spec"]["containerConcurrency"]


def test_auto_workers_follow_the_rendered_cpu_limit() -> None:
    """Workers "auto" in the image: the plan uses ceil(CPU limit), as the runtime's quota does."""
    for cpu, workers in (("1", 1), ("1500m", 2), ("3", 3), ("16", 4)):
        spec = deploy.from_labels("x:1", CPU_LABELS, {"cpu": cpu})
        expected = plan_workers(0, 0, 0, 32, "cpu", math.ceil(deploy.parse_cpu(cpu)), 0)
        assert (spec.workers, spec.threads) == (workers, 32) == (expected.workers,
                                                                expected.threads)
        assert spec.concurrency == expected.concurrency


def test_the_image_port_is_the_port_everywhere(case: str, rendered: dict) -> None:
    if CASES[case][1].get(L.SETTING_LABELS["protocol"]) == "grpc":
        return  # the HTTP port moves: test_a_grpc_first_image_serves_grpc_on_the_routed_port
    port = int(CASES[case][1][L.PORT])
    grpc_port = int(CASES[case][1].get(L.SETTING_LABELS["grpc_port"], 0))
    seen = 0
    for key, value in walk(rendered):
        if key == "containerPort":
            assert value in (port, grpc_port)
            seen += value == port
        if key == "prometheus.io/port":
            assert value == str(port)
    for path, container in serving_containers(rendered):
        assert container["ports"][0]["containerPort"] == port, path
        assert env_of(container).get("PORT", str(port)) == str(port), path
    service = one(rendered, "kubernetes/service.yaml")["spec"]["ports"][0]
    deployment = one(rendered, "kubernetes/deployment.yaml")["spec"]["template"]["spec"]
    named = {p["name"]: p["containerPort"] for p in deployment["containers"][0]["ports"]}
    assert named[service["targetPort"]] == port
    assert named[one(rendered, "kubernetes/servicemonitor.yaml")["spec"]["endpoints"][0]
                 ["port"]] == port
    for probe in ("startupProbe", "livenessProbe"):
        cloudrun = one(rendered, "cloudrun/service.yaml")["spec"]["template"]["spec"]
        assert cloudrun["containers"][0][probe]["httpGet"]["port"] == port
    compose = one(rendered, "docker-compose.yaml")
    name, model = next((n, s) for n, s in compose["services"].items() if n != "prometheus")
    assert model["ports"][0] == f"{port}:{port}" and model["environment"]["PORT"] == str(port)
    assert f"127.0.0.1:{port}/" in model["healthcheck"]["test"][-1]
    targets = one(rendered, "prometheus/prometheus.yml")["scrape_configs"][0]
    assert targets["static_configs"][0]["targets"] == [f"{name}:{port}"]
    assert seen >= 4


def test_gpu_builds_and_only_gpu_builds_ask_for_gpus(case: str, rendered: dict) -> None:
    gpu = CASES[case][1][L.GPU] == "true"
    asks = [value for key, value in walk(rendered) if key == "nvidia.com/gpu"]
    if gpu:
        # Deployment, Knative service (+ canary), Cloud Run, KServe: all of them.
        assert asks and all(str(v) == "1" for v in asks)
        assert len(asks) == len(list(serving_containers(rendered)))
    else:
        assert asks == []
    cloudrun = one(rendered, "cloudrun/service.yaml")["spec"]["template"]
    assert ("nodeSelector" in cloudrun["spec"]) == gpu
    assert (cloudrun["metadata"]["annotations"]["run.googleapis.com/cpu-throttling"]
            == "false") == gpu
    compose = one(rendered, "docker-compose.yaml")
    model = next(s for n, s in compose["services"].items() if n != "prometheus")
    assert ("deploy" in model) == gpu


def test_pinned_env_is_valid_runtime_configuration(rendered: dict) -> None:
    for _path, container in serving_containers(rendered):
        resolve(env_of(container))  # the runtime refuses what it cannot parse
        assert set(env_of(container)) >= {"MKSERVE_WORKERS", "MKSERVE_THREADS", "MODEL_NAME"}


# -- Knative canary, scale to zero ------------------------------------------------------------


def test_canary_splits_traffic_with_the_previous_revision() -> None:
    files = {p: yaml.safe_load(t) for p, t in deploy_render.render_files(spec_for("gpu")).items()}
    traffic = files["knative/canary.yaml"]["spec"]["traffic"]
    assert traffic == [
        {"revisionName": "text-classifier-00001", "percent": 90, "tag": "current"},
        {"latestRevision": True, "percent": 10, "tag": "v2-0"}]
    assert files["knative/service.yaml"]["spec"]["traffic"] == [
        {"latestRevision": True, "percent": 100}]
    # The canary's revision template is the new image; everything else is the service's.
    canary, service = files["knative/canary.yaml"], files["knative/service.yaml"]
    assert canary["spec"]["template"] == service["spec"]["template"]
    promoted = deploy_render.render_files(spec_for("gpu").replace(canary_percent=100))
    assert yaml.safe_load(promoted["knative/canary.yaml"])["spec"]["traffic"][0]["percent"] == 0
    assert "knative/canary.yaml" not in deploy_render.render_files(spec_for("cpu"))


def test_scale_to_zero() -> None:
    spec = spec_for("scale-to-zero")
    assert spec.scale_to_zero and spec.min_scale == 0
    files = {p: yaml.safe_load(t) for p, t in deploy_render.render_files(spec).items()}
    annotations = files["knative/service.yaml"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] == "300s"
    assert files["kserve/inferenceservice.yaml"]["spec"]["predictor"]["minReplicas"] == 0
    assert files["kubernetes/hpa.yaml"]["spec"]["minReplicas"] == 1  # HPA cannot reach zero


# -- spec construction ----------------------------------------------------------------------


def test_from_source_resolves_like_the_runtime(example: Path) -> None:
    spec = deploy.from_source(example, "ghcr.io/acme/classifier:1.0", {"cpu": "2"})
    config = yaml.safe_load((example / "model-config.yaml").read_text())
    assert spec.batch_size == config["batchSize"]
    assert spec.threads == max(config["batchSize"], 8)
    assert spec.response_timeout_s == float(config["responseTimeout"])
    assert spec.workers == 2 and spec.concurrency == 2 * spec.threads
    assert spec.source == "examples/classifier" or spec.source.endswith("classifier")


def test_missing_labels_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="mkserve build"):
        deploy.from_labels("x:1", {}, {})
    with pytest.raises(UsageError, match="port"):
        deploy.from_labels("x:1", {**CPU_LABELS, L.PORT: "http"}, {})


@pytest.mark.parametrize("overrides, message", [
    ({"replica": 3}, "unknown setting 'replica'"),
    ({"cpu": "two"}, "not a CPU quantity"),
    ({"min_scale": 5, "max_scale": 2}, "min_scale"),
    ({"target": 10_000}, "target"),
    ({"previous_revision": "Not_A_Name"}, "previous_revision"),
    ({"cpu_request": "4", "cpu_limit": "2"}, "above cpu_limit"),
])
def test_bad_values_are_reported_with_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        deploy.from_labels("x:1", CPU_LABELS, overrides)


def test_values_file_and_kebab_case(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("namespace: ml\nmax-scale: 4\ncpu: 3\nlabels: {team: vision}\n")
    spec = deploy.from_labels("x:1", CPU_LABELS, deploy.load_values(values))
    assert (spec.namespace, spec.max_scale, spec.cpu_limit, spec.workers) == ("ml", 4, "3", 3)
    assert spec.labels == {"team": "vision"}
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(UsageError, match="mapping"):
        deploy.load_values(tmp_path / "bad.yaml")


def test_platform_problems_refuse_to_render() -> None:
    spec = deploy.from_labels("x:1", {**CPU_LABELS, L.PORT: "9090"}, {})
    with pytest.raises(UsageError, match="reserved by Knative"):
        deploy_render.render_files(spec)
    files = deploy_render.render_files(spec, frozenset({"kubernetes", "compose"}))
    assert files and all(p.startswith(("kubernetes/", "docker-compose", "prometheus/"))
                         for p in files)
    slow = deploy.from_labels("x:1", {**CPU_LABELS, L.GRACEFUL_TIMEOUT_S: "30"}, {})
    assert any("Cloud Run" in w for w in deploy_render.warnings(slow))


@pytest.mark.parametrize(("image", "why"), [
    ("localhost/classifier:1.0", "on this machine's engine only"),
    ("127.0.0.1:5000/classifier:1.0", "on this machine's engine only"),
    ("classifier:1.0", "docker.io/library/classifier"),
    ("ghcr.io/acme/classifier:1.0", None),
    ("acme/classifier:1.0", None),
])
def test_an_image_a_cluster_cannot_pull_gets_a_warning(image: str, why: str | None) -> None:
    spec = deploy.from_labels(image, CPU_LABELS, {})
    said = [w for w in deploy_render.warnings(spec) if "cannot pull" in w]
    if why is None:
        assert said == []
    else:
        assert len(said) == 1 and why in said[0] and "--push" in said[0]
    assert not [w for w in deploy_render.warnings(spec, frozenset({"compose"}))
                if "cannot pull" in w]  # compose runs on this machine


# -- the GitHub Actions workflow and the docs -------------------------------------------------


def test_workflow_is_a_valid_github_actions_file(rendered: dict, case: str) -> None:
    workflow = one(rendered, "github/workflow.yaml")
    assert {"name", "on", "jobs"} <= set(workflow), "quote `on` so YAML 1.1 keeps it a key"
    assert {"push", "workflow_dispatch"} <= set(workflow["on"])
    for job_id, job in workflow["jobs"].items():
        assert re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", job_id)
        assert isinstance(job["runs-on"], str) and job["steps"]
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert re.match(r"^[\w.-]+/[\w.-]+@v\d+$", step["uses"]), step["uses"]
    gpu = case == "gpu"
    steps = {s["name"]: s for s in workflow["jobs"]["mkserve"]["steps"]}
    assert steps["Build and push with mkserve"]["run"].strip() == \
        (GPU_BUILD_COMMAND if gpu else BUILD_COMMAND)
    assert steps["Render deployment manifests"]["run"].strip() == RENDER_COMMAND
    # The runner's torch is the CPU build at the image's version (build copies the version).
    assert steps["Install mkserve"]["run"].splitlines()[0] == \
        'pip install torch==2.13.0+cpu --extra-index-url "$TORCH_CPU_INDEX"'
    assert workflow["env"]["TORCH_CPU_INDEX"] == "https://download.pytorch.org/whl/cpu"
    buildx = {s["name"]: s for s in workflow["jobs"]["buildx"]["steps"]}
    assert buildx["Write the build context"]["run"].strip() == \
        (GPU_CONTEXT_COMMAND if gpu else CONTEXT_COMMAND)
    assert buildx["Build and push with buildx"]["with"]["context"] == "ctx"


@pytest.mark.parametrize(("given", "requirement"), [
    ("git+https://github.com/acme/mkserve@v0.1.0",
     "mkserve @ git+https://github.com/acme/mkserve@v0.1.0"),
    ("https://example.com/dl/mkserve-0.1.0-py3-none-any.whl",
     "mkserve @ https://example.com/dl/mkserve-0.1.0-py3-none-any.whl"),
    ("./tools/mkserve-0.1.0-py3-none-any.whl", "./tools/mkserve-0.1.0-py3-none-any.whl"),
    ("mkserve==0.1.0", "mkserve==0.1.0"),
])
def test_mkserve_from_takes_a_git_url_a_wheel_or_a_requirement(given: str,
                                                               requirement: str) -> None:
    assert deploy_ci.requirement_from(given) == requirement


def test_mkserve_from_refuses_what_pip_cannot_install_as_mkserve() -> None:
    with pytest.raises(UsageError, match="expected a git URL"):
        deploy_ci.requirement_from("torch==2.13.0")


class _Installed:
    """What importlib.metadata reads of an installed mkserve: its direct_url.json."""

    def __init__(self, direct_url: dict | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return json.dumps(self.direct_url) if self.direct_url is not None else None


def _installed_as(monkeypatch: pytest.MonkeyPatch, direct_url: dict | None) -> None:
    monkeypatch.setattr(deploy_ci.metadata, "distribution", lambda name: _Installed(direct_url))


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


def test_the_workflow_installs_mkserve_the_way_it_was_installed_here(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    version = deploy_ci.__version__
    _installed_as(monkeypatch, None)  # from an index: the same version from it
    assert deploy_ci.installed_requirement() == (f"mkserve=={version}", None)
    _installed_as(monkeypatch, {"url": "https://github.com/acme/mkserve", "vcs_info": {
        "vcs": "git", "commit_id": "0123abc", "requested_revision": "main"}})
    assert deploy_ci.installed_requirement() == \
        ("mkserve @ git+https://github.com/acme/mkserve@0123abc", None)
    # A clone of GitHub's repository (the README's install): its origin at its tag or commit.
    checkout = tmp_path / "mkserve"
    checkout.mkdir()
    _git(checkout, "init", "-q")
    _git(checkout, "commit", "-q", "--allow-empty", "-m", "one")
    _git(checkout, "remote", "add", "origin", "git@github.com:acme/mkserve.git")
    _installed_as(monkeypatch, {"url": checkout.as_uri(), "dir_info": {"editable": True}})
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, check=True,
                            capture_output=True, text=True).stdout.strip()
    assert deploy_ci.installed_requirement() == \
        (f"mkserve @ git+https://github.com/acme/mkserve.git@{commit}", None)
    _git(checkout, "tag", f"v{version}")
    assert deploy_ci.installed_requirement()[0] == \
        f"mkserve @ git+https://github.com/acme/mkserve.git@v{version}"
    # A clone of a clone, or a local wheel: no runner reaches it, and the warning says so.
    _git(checkout, "remote", "set-url", "origin", str(tmp_path / "elsewhere"))
    requirement, warning = deploy_ci.installed_requirement()
    assert requirement == f"mkserve=={version}"
    assert warning and str(checkout) in warning and "--mkserve-from" in warning


def test_docs_show_the_same_commands_and_every_file() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for command in (BUILD_COMMAND, CONTEXT_COMMAND):
        assert command in text, f"docs/deploying.md must show: {command}"
    for path in deploy_render.FILES:
        assert f"`{path}`" in text, f"docs/deploying.md does not explain {path}"
    assert "mkserve render" in text and "--previous-revision" in text


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    cli_render.register(app)
    return app


def test_render_command_from_a_source(cli: typer.Typer, tmp_path: Path, example: Path) -> None:
    result = CliRunner().invoke(cli, ["render", str(example), "--out", str(tmp_path),
                                      "--image", "ghcr.io/acme/classifier:1.0",
                                      "--namespace", "ml", "--only", "kubernetes,knative"])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.yaml")) == \
        sorted(p for p, (g, _) in deploy_render.FILES.items()
               if g in ("kubernetes", "knative") and p != "knative/canary.yaml")
    deployment = yaml.safe_load((tmp_path / "kubernetes/deployment.yaml").read_text())
    assert deployment["metadata"]["namespace"] == "ml"


def test_render_command_from_a_source_matches_mkserve_build(cli: typer.Typer,
                                                            tmp_path: Path, example: Path) -> None:
    """No --image: the tag `mkserve build SOURCE` gives; a GPU image only with --gpu."""
    from mkserve.builder.spec import default_tag

    result = CliRunner().invoke(cli, ["render", str(example), "-o", str(tmp_path / "cpu"),
                                      "--only", "kubernetes"])
    assert result.exit_code == 0, result.output
    deployment = yaml.safe_load((tmp_path / "cpu/kubernetes/deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == default_tag("classifier", "1.0")
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    result = CliRunner().invoke(cli, ["render", str(example), "-o", str(tmp_path / "gpu"),
                                      "--only", "kubernetes", "--gpu"])
    assert result.exit_code == 0, result.output
    deployment = yaml.safe_load((tmp_path / "gpu/kubernetes/deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert env_of(container)["MKSERVE_WORKERS"] == "1"  # one worker per GPU


def test_render_command_from_an_image(cli: typer.Typer, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("cpu_limit: 8\nreplicas: 5\n")
    seen = []

    def labels(ref: str) -> dict[str, str]:
        seen.append(ref)
        return GPU_LABELS

    monkeypatch.setattr(cli_render, "image_labels", labels)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", "registry.example.com/ml/tc:2.0", "-o", str(out),
                                      "--values", str(values), "--cpu", "4", "--max-scale",
                                      "3", "--gpu-type", "nvidia-l4"])
    assert result.exit_code == 0, result.output
    assert seen == ["registry.example.com/ml/tc:2.0"]
    deployment = yaml.safe_load((out / "kubernetes/deployment.yaml").read_text())
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["cpu"] == "4" and limits["nvidia.com/gpu"] == "1"  # the flag beats the file
    assert deployment["spec"]["replicas"] == 5


def test_render_command_errors_are_mkserve_errors(cli: typer.Typer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, example: Path) -> None:
    import docker
    from docker.errors import DockerException, ImageNotFound

    class Images:
        def get(self, ref: str) -> Any:
            raise ImageNotFound(f"no {ref}")

    monkeypatch.setattr(docker, "from_env", lambda: SimpleNamespace(images=Images(),
                                                                    close=lambda: None))
    result = CliRunner().invoke(cli, ["render", "nothing-here:1", "--out", str(tmp_path)])
    assert isinstance(result.exception, UsageError) and "no such image" in str(result.exception)

    def unreachable() -> Any:
        raise DockerException("connection refused")

    monkeypatch.setattr(docker, "from_env", unreachable)
    result = CliRunner().invoke(cli, ["render", "nothing-here:1", "--out", str(tmp_path)])
    assert isinstance(result.exception, EngineError)
    result = CliRunner().invoke(cli, ["render", str(example), "--out", str(tmp_path),
                                      "--only", "helm"])
    assert isinstance(result.exception, UsageError)


def test_a_grpc_image_gets_its_second_port_where_the_platform_has_one() -> None:
    rendered = {path: [d for d in yaml.safe_load_all(text) if d is not None]
                for path, text in deploy_render.render_files(spec_for("grpc")).items()}
    deployment = one(rendered, "kubernetes/deployment.yaml")["spec"]["template"]["spec"]
    container = deployment["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == \
        {"http": 8080, "grpc": 7070}
    assert env_of(container)["MKSERVE_GRPC_PORT"] == "7070"
    service = one(rendered, "kubernetes/service.yaml")["spec"]["ports"]
    assert service[1] == {"name": "grpc", "port": 7070, "targetPort": "grpc",
                          "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}
    compose = one(rendered, "docker-compose.yaml")
    model = next(s for n, s in compose["services"].items() if n != "prometheus")
    assert model["ports"] == ["8080:8080", "7070:7070"]
    assert model["environment"]["MKSERVE_GRPC_PORT"] == "7070"
    # One-port platforms route HTTP: the image's gRPC listener is switched off there.
    for path, served in serving_containers(rendered):
        if path.startswith(("knative", "cloudrun", "kserve")):
            assert [p["containerPort"] for p in served["ports"]] == [8080], path
            assert env_of(served)["MKSERVE_GRPC_PORT"] == "0", path


def test_a_grpc_first_image_serves_grpc_on_the_routed_port() -> None:
    rendered = {path: [d for d in yaml.safe_load_all(text) if d is not None]
                for path, text in deploy_render.render_files(spec_for("grpc-first")).items()}
    for path, container in serving_containers(rendered):
        env = env_of(container)
        assert env["MKSERVE_PROTOCOL"] == "grpc" and env["MKSERVE_HTTP_PORT"] == "8081", path
        if path.startswith(("knative", "cloudrun", "kserve")):
            # One port, cleartext HTTP/2, probed with grpc.health.v1.
            assert container["ports"] == [{"name": "h2c", "containerPort": 8080,
                                           **({"protocol": "TCP"} if "kserve" in path
                                              else {})}], path
            probes = [p for p in ("readinessProbe", "livenessProbe", "startupProbe")
                      if p in container]
            assert probes and all(container[p]["grpc"] == {"port": 8080} for p in probes), path
        else:
            assert {p["name"]: p["containerPort"] for p in container["ports"]} == \
                {"http": 8081, "grpc": 8080}, path
            assert container["readinessProbe"]["httpGet"]["port"] == "http"
    service = one(rendered, "kubernetes/service.yaml")["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in service] == [("http", 8081), ("grpc", 8080)]
    knative = one(rendered, "knative/service.yaml")["spec"]["template"]["metadata"]
    assert knative["annotations"]["prometheus.io/port"] == "8081"  # /metrics is HTTP
    compose = one(rendered, "docker-compose.yaml")
    model = next(s for n, s in compose["services"].items() if n != "prometheus")
    assert model["ports"] == ["8081:8081", "8080:8080"]
    assert "127.0.0.1:8081/readyz" in model["healthcheck"]["test"][-1]
