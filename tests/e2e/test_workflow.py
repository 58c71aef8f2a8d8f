"""The rendered GitHub workflow's install, tag and build-and-push steps, run as a runner runs them.

A model repository with the guide's archive; `mkserve render --only github`; then the
steps' own `run:` scripts, in order, in `bash -eo pipefail` with the variables Actions
sets, in a fresh virtualenv: the install step installs mkserve from the wheel this
checkout builds (what mkserve's CI publishes), the build step builds on the engine and
pushes to a real registry (Debian's docker-registry). The image is then pulled back from
the registry and answers a prediction.

What differs from a GitHub runner, and why: the build step gets `--base-image` (this
machine cannot pull python:3.11-slim) and TORCH_CPU_INDEX names an empty local index
(download.pytorch.org is unreachable; this machine's pip configuration serves the same
CPU wheel).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from archives import make_archive
from imagetools import BASE_IMAGE, REPO, SESSION, Images

pytestmark = [pytest.mark.slow, pytest.mark.engine]

STEPS = ("Install mkserve", "Tag from the git ref", "Build and push with mkserve")


@pytest.fixture(scope="module")
def registry(engine_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[str]:
    """Debian's docker-registry on the address the engine treats as plain HTTP."""
    address = engine_env.get("MKSERVE_TEST_REGISTRY") or os.environ.get("MKSERVE_TEST_REGISTRY")
    exe = shutil.which("docker-registry")
    if not address or not exe:
        why = ("docker-registry is not installed (apt-get install docker-registry)" if not exe
               else ".ci/engine.sh printed no MKSERVE_TEST_REGISTRY")
        if os.environ.get("CI") == "true" or os.environ.get("MKSERVE_REQUIRE_ENGINE"):
            pytest.fail(f"no test registry in CI: {why}")
        pytest.skip(why)
    root = tmp_path_factory.mktemp("registry")
    config = root / "config.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": address.replace("localhost", "127.0.0.1")}}))
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://{address}/v2/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                f"docker-registry did not start on {address}: {(root / 'registry.log').read_text()}"
            time.sleep(0.2)
        yield address
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _run_step(name: str, script: str, env: dict[str, str], cwd: Path) -> str:
    # What Actions runs for `run:` on Linux: bash --noprofile --norc -eo pipefail {0}.
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=1500)
    assert proc.returncode == 0, \
        f"step {name!r} failed ({proc.returncode}):\n{script}\n{proc.stdout[-3000:]}\n" \
        f"{proc.stderr[-6000:]}"
    return proc.stdout + proc.stderr


def test_the_rendered_workflow_installs_builds_and_pushes(
        registry: str, images: Images, wheelhouse: Path, tmp_path: Path) -> None:
    # mkserve's CI job "wheel": the wheel users install and workflows name.
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = dist.glob("mkserve-*.whl")

    repo = tmp_path / "model-repo"
    make_archive("classifier", repo / "models")
    image = f"{registry}/acme/classifier-{SESSION}"
    rendered = subprocess.run(
        [sys.executable, "-m", "mkserve.builder.cli", "render", "models/classifier.mar",
         "--image", image, "--only", "github", "--out", "manifests",
         "--mkserve-from", str(wheel)],
        cwd=repo, capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    assert "--mkserve-from" not in rendered.stderr  # named: nothing to warn about
    workflow = yaml.safe_load((repo / "manifests/github/workflow.yaml").read_text())
    steps = {step["name"]: step for step in workflow["jobs"]["mkserve"]["steps"]}
    assert str(wheel) in steps["Install mkserve"]["run"]

    venv = tmp_path / "runner-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    empty_index = tmp_path / "no-index"
    empty_index.mkdir()
    cache = tmp_path / "cache"
    (cache / "mkserve" / "wheelhouse").mkdir(parents=True)
    # The default wheelhouse (under XDG_CACHE_HOME), already filled by this session.
    (cache / "mkserve" / "wheelhouse" / "x86_64-cp311").symlink_to(wheelhouse)
    github_env = tmp_path / "github_env"
    github_env.touch()
    env = {
        **os.environ, **{k: str(v) for k, v in workflow["env"].items()},
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
        "TORCH_CPU_INDEX": empty_index.as_uri(), "XDG_CACHE_HOME": str(cache),
        "GITHUB_ENV": str(github_env), "GITHUB_REF_TYPE": "tag", "GITHUB_REF_NAME": "v1.2.0",
        "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
    }
    env.pop("PYTHONPATH", None)
    for name in STEPS:
        script = steps[name]["run"]
        if name == "Build and push with mkserve":
            script = script.rstrip() + f" --base-image {BASE_IMAGE}"
        _run_step(name, script, env, repo)
        if name == "Install mkserve":
            # The runner's mkserve is the wheel, not this checkout.
            where = subprocess.run([str(venv / "bin/python"), "-c",
                                    "import mkserve.builder, sys; print(mkserve.builder.__file__)"],
                                   capture_output=True, text=True, check=True).stdout
            assert str(venv) in where and str(REPO) not in where
        if name == "Tag from the git ref":
            env.update(line.split("=", 1) for line in github_env.read_text().splitlines())
            assert env["TAG"] == "1.2.0"
    images.tags.append(f"{image}:1.2.0")

    tags = requests.get(f"http://{registry}/v2/acme/classifier-{SESSION}/tags/list", timeout=10)
    assert tags.json()["tags"] == ["1.2.0"]
    # What a cluster does: pull it from the registry, run it, ask it.
    import docker

    client = docker.from_env()
    try:
        client.images.remove(f"{image}:1.2.0", force=True)
        client.images.pull(image, tag="1.2.0")
    finally:
        client.close()
    with images.serve(f"{image}:1.2.0") as (_, url):
        answer = requests.post(f"{url}/predictions/classifier",
                               json={"features": [0.1 * i for i in range(1, 11)]}, timeout=30)
        assert answer.status_code == 200, answer.text


def test_prune_removes_the_stage_images_builds_leave_and_keeps_the_image(
        images: Images, engine, tmp_path: Path) -> None:
    """Podman keeps every build stage as an untagged image (the 1 GB virtualenv stage among
    them); the build says so, `mkserve prune` removes them, the built image still runs."""
    built = images.build(make_archive("classifier", tmp_path), "prune")
    assert "`mkserve prune` removes them" in built.stderr
    assert engine.stage_images() > 0
    pruned = subprocess.run([sys.executable, "-m", "mkserve.builder.cli", "prune"],
                            capture_output=True, text=True, check=False)
    assert pruned.returncode == 0, pruned.stderr
    assert re.match(r"removed \d+ untagged build-stage images$", pruned.stdout.strip()), \
        pruned.stdout
    assert engine.stage_images() == 0
    with images.serve(built.tag) as (_, url):
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
