"""The rendered docker-compose.yaml on the real engine: the model next to a Prometheus scraping it.

`mkserve render IMAGE --only compose` writes docker-compose.yaml and
prometheus/prometheus.yml for the guide's classifier image; podman-compose runs
them from the output folder (Docker's compose plugin is not installed on these
machines). No registry is reachable, so `prometheus_image` points at a local
image made from the host's Prometheus binary, and the host ports are free ones
picked for this run (`host_port`, `prometheus_host_port` in the values file).
Everything the compose project creates is removed at the end, however the test ends.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from archives import EXAMPLES_DIR, make_archive
from imagetools import Images, build_prometheus_image, built_in_session
from server import free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow]

INPUT = json.loads((EXAMPLES_DIR / "classifier" / "input.json").read_text())
BATCH = json.loads((EXAMPLES_DIR / "classifier" / "batch.json").read_text())
PROJECT_LABEL = "io.podman.compose.project"


@pytest.fixture(scope="session")
def classifier_image(images: Images, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The guide's classifier image: the one test_image.py built this session, if it did."""
    tag = built_in_session(images, "classifier")
    if tag is not None:
        return tag
    mar = make_archive("classifier", tmp_path_factory.mktemp("compose-archives"))
    return images.build(mar, "classifier").tag


@pytest.fixture(scope="session")
def prometheus_image(images: Images, tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_prometheus_image(images, tmp_path_factory.mktemp("prometheus-image"))


def podman(*args: str) -> str:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, check=False,
                          timeout=120)
    assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr}"
    return proc.stdout


class Compose:
    """podman-compose for one project, run from the folder `mkserve render` wrote."""

    def __init__(self, folder: Path, project: str) -> None:
        self.folder = folder
        self.project = project

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        # CONTAINERS_CONF / CONTAINERS_STORAGE_CONF come from the engine_env fixture:
        # podman-compose drives the `podman` CLI, which needs the engine's settings.
        return subprocess.run([sys.executable, "-m", "podman_compose", "-p", self.project,
                               *args], cwd=self.folder, capture_output=True, text=True,
                              check=False, timeout=timeout)

    def up(self) -> None:
        proc = self.run("up", "-d")
        assert proc.returncode == 0, (f"podman-compose up failed ({proc.returncode}):\n"
                                      f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")

    def logs(self) -> str:
        proc = self.run("logs", "--tail", "40", timeout=60)
        return (proc.stdout + proc.stderr)[-8000:]

    def leftovers(self) -> dict[str, list[str]]:
        """What of this project (and only this project) the engine still has."""
        selector = f"label={PROJECT_LABEL}={self.project}"
        return {
            "containers": podman("ps", "-a", "--filter", selector, "--format",
                                 "{{.ID}}").split(),
            "pods": podman("pod", "ps", "--filter", f"name=^pod_{self.project}$", "--format",
                           "{{.ID}}").split(),
            "networks": podman("network", "ls", "--filter", selector, "--format",
                               "{{.Name}}").split(),
            "volumes": podman("volume", "ls", "--filter", selector, "--format",
                              "{{.Name}}").split(),
        }

    def down(self) -> str:
        """`down -v`, then force-remove whatever of this project survived it; report that."""
        proc = self.run("down", "-v", timeout=180)
        left = self.leftovers()
        for container in left["containers"]:
            podman("rm", "-f", "-v", container)
        for pod in left["pods"]:
            podman("pod", "rm", "-f", pod)
        for network in left["networks"]:
            podman("network", "rm", "-f", network)
        for volume in left["volumes"]:
            podman("volume", "rm", "-f", volume)
        if proc.returncode != 0 or any(left.values()):
            return f"down exited {proc.returncode} and left {left}:\n{proc.stderr[-2000:]}"
        return ""


@pytest.fixture
def rendered(classifier_image: str, prometheus_image: str, tmp_path: Path
             ) -> tuple[Path, dict[str, int]]:
    """`mkserve render IMAGE --only compose` with a local Prometheus and free host ports."""
    ports = {"model": free_port(), "prometheus": free_port()}
    while ports["prometheus"] == ports["model"]:
        ports["prometheus"] = free_port()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "prometheus_image": prometheus_image, "host_port": ports["model"],
        "prometheus_host_port": ports["prometheus"], "scrape_interval_s": 1}))
    out = tmp_path / "deploy"
    proc = subprocess.run([sys.executable, "-m", "mkserve.builder.cli", "render",
                           classifier_image, "--out", str(out), "--values", str(values),
                           "--only", "compose"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "docker-compose.yaml", "prometheus/prometheus.yml"]
    return out, ports


def wait_until(what: str, check: Any, timeout: float, explain: Any) -> Any:
    """Call check() until it returns something truthy; fail with explain() after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except (requests.RequestException, KeyError, ValueError):
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g}s\n{explain()}")
        time.sleep(0.5)


def test_rendered_compose_runs_the_image_and_prometheus_scrapes_it(
        engine_env: dict[str, str], rendered: tuple[Path, dict[str, int]]) -> None:
    folder, ports = rendered
    compose_file = yaml.safe_load((folder / "docker-compose.yaml").read_text())
    service = next(name for name in compose_file["services"] if name != "prometheus")
    assert compose_file["services"][service]["ports"] == [f"{ports['model']}:8080"]
    assert compose_file["services"]["prometheus"]["ports"] == [f"{ports['prometheus']}:9090"]
    compose = Compose(folder, f"mkserve-e2e-{uuid.uuid4().hex[:10]}")
    model_url = f"http://127.0.0.1:{ports['model']}"
    prometheus_url = f"http://127.0.0.1:{ports['prometheus']}"
    problem = ""
    try:
        compose.up()

        def ready() -> bool:
            return requests.get(f"{model_url}/readyz", timeout=2).status_code == 200

        wait_until("the model's /readyz did not answer 200", ready, 120, compose.logs)
        # The compose file's hardening took effect on the engine.
        model_id = podman("ps", "--filter", f"label={PROJECT_LABEL}={compose.project}",
                          "--filter", f"label=io.podman.compose.service={service}",
                          "--format", "{{.ID}}").split()
        assert len(model_id) == 1, model_id
        model = json.loads(podman("container", "inspect", model_id[0]))[0]
        assert model["Config"]["User"] == "1000:0"
        assert model["HostConfig"]["ReadonlyRootfs"] is True
        assert "/tmp" in model["HostConfig"]["Tmpfs"]
        sent = 0
        with requests.Session() as session:
            for _ in range(4):
                answer = session.post(f"{model_url}/predictions/classifier", json=INPUT,
                                      timeout=30)
                assert answer.status_code == 200, answer.text
                assert answer.json()["class_name"]
                sent += 1
            answer = session.post(f"{model_url}/predictions/classifier", json=BATCH, timeout=30)
            assert answer.status_code == 200 and len(answer.json()) == len(BATCH), answer.text
            sent += 1  # a batch is one inference request

        def target_up() -> dict[str, Any] | None:
            targets = requests.get(f"{prometheus_url}/api/v1/targets", timeout=3).json()
            for target in targets["data"]["activeTargets"]:
                if target["health"] == "up":
                    return target
            return None

        def explain_targets() -> str:
            try:
                targets = requests.get(f"{prometheus_url}/api/v1/targets", timeout=3).text
            except requests.RequestException as exc:
                targets = f"(Prometheus API not answering: {exc})"
            return f"targets: {targets[:3000]}\n{compose.logs()}"

        target = wait_until("Prometheus never saw the model's scrape target up", target_up, 60,
                            explain_targets)
        # The target is the compose service, reached over the project's network by name.
        assert target["labels"]["instance"] == f"{service}:8080"
        assert target["labels"]["job"] == service
        assert target["scrapeUrl"] == f"http://{service}:8080/metrics"

        def counted() -> list[dict[str, Any]] | None:
            result = requests.get(f"{prometheus_url}/api/v1/query", timeout=3, params={
                "query": 'ts_inference_requests_total{model_name="classifier"}'}).json()
            series = result["data"]["result"]
            return series if sum(float(s["value"][1]) for s in series) == sent else None

        series = wait_until(f"ts_inference_requests_total never reached {sent}", counted, 30,
                            explain_targets)
        assert [s["metric"]["job"] for s in series] == [service]
    finally:
        problem = compose.down()
        if problem:
            sys.stderr.write(f"\n[e2e] compose cleanup: {problem}\n")
    assert not problem, problem
