"""`mkserve build` end to end: real archives, the real engine (Podman's Docker API), real requests.

The dependency layers are built once per session and then come from the
engine's cache; images are shared between tests through session fixtures and
removed at the end.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import torch
from archives import EXAMPLES_DIR, archiver_command, build_model_files, make_archive
from imagetools import BASE_IMAGE, SESSION, Built, Images
from mkserve.builder import labels as L

pytestmark = [pytest.mark.engine, pytest.mark.slow]

INPUT = json.loads((EXAMPLES_DIR / "classifier" / "input.json").read_text())
BATCH = json.loads((EXAMPLES_DIR / "classifier" / "batch.json").read_text())
LABELS = json.loads((EXAMPLES_DIR / "classifier" / "index_to_name.json").read_text())
SECRET = "s3cr3t-index-t0ken"


# -- what the guide's classifier answers, computed in this process ---------------------------

@pytest.fixture(scope="session")
def expected(tmp_path_factory: pytest.TempPathFactory) -> Any:
    files = build_model_files("classifier", tmp_path_factory.mktemp("model-files"))
    model = torch.jit.load(str(files / "model_scripted.pt")).eval()

    def answer(row: dict[str, Any]) -> dict[str, Any]:
        with torch.no_grad():
            probs = torch.softmax(model(torch.tensor([row["features"]])), dim=1)[0]
        best = int(probs.argmax())
        return {"predicted_class": best, "probabilities": probs.tolist(),
                "class_name": LABELS[str(best)]}

    return answer


def assert_answer(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["predicted_class"] == want["predicted_class"]
    assert got["class_name"] == want["class_name"]
    assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    assert got["confidence"] == pytest.approx(max(want["probabilities"]), abs=1e-6)


def assert_guide_answers(url: str, expected: Any, model: str = "classifier") -> None:
    single = requests.post(f"{url}/predictions/{model}", json=INPUT, timeout=30)
    assert single.status_code == 200, single.text
    assert_answer(single.json(), expected(INPUT))
    batch = requests.post(f"{url}/predictions/{model}", json=BATCH, timeout=30)
    assert batch.status_code == 200, batch.text
    answers = batch.json()
    assert len(answers) == len(BATCH)
    for got, row in zip(answers, BATCH, strict=False):
        assert_answer(got, expected(row))


# -- images shared by several tests ----------------------------------------------------------

@pytest.fixture(scope="session")
def archives_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("archives")


@pytest.fixture(scope="session")
def classifier(images: Images, archives_dir: Path) -> Built:
    """The guide's classifier.mar, built offline from the session wheelhouse.

    A private index URL with a token is in the environment: it must not reach the image.
    """
    mar = make_archive("classifier", archives_dir)
    return images.build(mar, "classifier",
                        env={"PIP_INDEX_URL": f"https://ci:{SECRET}@127.0.0.1:9/simple"})


@pytest.fixture(scope="session")
def no_archive(archives_dir: Path) -> Path:
    return make_archive("classifier", archives_dir / "no-archive", fmt="no-archive")


# -- the guide's classifier --------------------------------------------------------------------

def test_guide_classifier_answers_from_the_container(classifier: Built, images: Images,
                                                     expected: Any) -> None:
    with images.serve(classifier.tag) as (_, url):
        assert_guide_answers(url, expected)
        ready = requests.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["model"] == "classifier"
        ping = requests.get(f"{url}/ping", timeout=10)
        assert ping.status_code == 200 and ping.json() == {"status": "Healthy"}
        metrics = requests.get(f"{url}/metrics", timeout=10)
        assert metrics.status_code == 200
        assert re.search(r'^ts_inference_requests_total\{[^}]*model_name="classifier"',
                         metrics.text, re.MULTILINE), metrics.text[:2000]


def test_the_image_serves_grpc_first_when_run_so(classifier: Built, engine: Any) -> None:
    """MKSERVE_PROTOCOL=grpc in the container (as a Knative h2c port runs it): `mkserve
    run`'s start publishes the gRPC port and the HTTP one beside it, waits on /readyz
    there, and the guide's request answers over TorchServe's gRPC API."""
    import grpc
    from mkserve.builder.run import start
    from mkserve.runtime.rpc import stubs

    started = start(engine, classifier.tag, environment={"MKSERVE_PROTOCOL": "grpc"})
    try:
        assert requests.get(f"{started.url}/readyz", timeout=10).status_code == 200
        grpc_port = started.container.host_port(started.port)
        modules = stubs.load()
        pb, pb_grpc = modules["torchserve_inference_pb2"], \
            modules["torchserve_inference_pb2_grpc"]
        body = (EXAMPLES_DIR / "classifier" / "input.json").read_bytes()
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            answer = pb_grpc.InferenceAPIsServiceStub(channel).Predictions(
                pb.PredictionsRequest(model_name="classifier", input={"body": body}),
                timeout=30)
        http = requests.post(f"{started.url}/predictions/classifier", data=body,
                             headers={"Content-Type": "application/json"}, timeout=30)
        assert json.loads(answer.prediction) == http.json()
    finally:
        started.container.stop(timeout=10)
        started.container.remove()


def test_build_summary_reports_size_and_layers(classifier: Built, engine: Any) -> None:
    info = engine.inspect(classifier.tag)
    match = re.search(r"size:\s+([\d.]+) MB \((\d+) bytes\)", classifier.stdout)
    assert match, classifier.stdout
    assert int(match.group(2)) == info.size
    assert info.size <= 1_000_000_000, f"image is {info.size / 1e6:.0f} MB"
    assert re.search(r"^built [0-9a-f]{12} in [\d.]+s", classifier.stdout, re.MULTILINE)
    assert "COPY dir in /opt/mkserve/venv" in classifier.stdout  # layer sizes are listed
    # Progress was live: steps with elapsed times, Podman's STEP lines understood.
    assert re.search(r"^\[\s*[\d.]+s\] stage 3/3 step \d+/\d+: ENTRYPOINT", classifier.stderr,
                     re.MULTILINE)
    sys.stderr.write(f"\n[e2e] classifier image: {info.size} bytes, built in "
                     f"{classifier.seconds:.1f}s\n")


def test_image_metadata(classifier: Built, engine: Any) -> None:
    info = engine.inspect(classifier.tag)
    labels = info.labels
    assert labels[L.MODEL_NAME] == "classifier" and labels[L.MODEL_VERSION] == "1.0"
    assert labels[L.HANDLER] == "handler.py" and labels[L.SOURCE_KIND] == "mar"
    assert labels[L.BATCH_SIZE] == "32" and labels[L.MAX_BATCH_DELAY_MS] == "5"
    assert labels[L.TORCH_VERSION].endswith("+cpu") and labels[L.GPU] == "false"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", labels[L.OCI_CREATED])
    for key in (L.ARCHIVE_SHA256, L.MKSERVE_VERSION, L.OCI_TITLE, L.OCI_VERSION,
                L.OCI_DESCRIPTION, L.PORT, L.WORKERS, L.THREADS, L.QUEUE_SIZE):
        assert labels.get(key), key
    assert info.user == "1000:0" and info.exposed_ports == ("8080/tcp",)
    assert info.entrypoint == ("/opt/mkserve/venv/bin/python", "-m", "mkserve.runtime")
    # Podman keeps HEALTHCHECK (docker format); the engine wrapper reads it back.
    assert info.healthcheck and "/readyz" in info.healthcheck[-1]


def test_no_index_credentials_in_the_image(classifier: Built, images: Images,
                                           engine: Any) -> None:
    info = engine.inspect(classifier.tag)
    assert SECRET not in json.dumps([info.labels, info.env, info.history])
    with images.serve(classifier.tag) as (container, _):
        found = exec_in(engine, container, ["grep", "-rIl", SECRET, "/opt", "/etc", "/tmp"],
                        user="0")
        assert found == "", found


def exec_in(engine: Any, container: Any, cmd: list[str], user: str = "") -> str:
    result = engine.client.containers.get(container.id).exec_run(cmd, user=user)
    return result.output.decode().strip()


def test_runs_as_non_root_with_gunicorn_as_pid_1_and_no_cuda(classifier: Built, images: Images,
                                                            engine: Any) -> None:
    with images.serve(classifier.tag) as (container, _):
        assert exec_in(engine, container, ["id", "-u"]) == "1000"
        assert exec_in(engine, container, ["id", "-g"]) == "0"
        pid1 = exec_in(engine, container, ["cat", "/proc/1/cmdline"]).replace("\0", " ")
        assert "mkserve.runtime" in pid1
        assert exec_in(engine, container, ["python", "-c",
                                           "import torch; print(torch.version.cuda)"]) \
            .splitlines()[-1] == "None"
        site = exec_in(engine, container, ["ls", "/opt/mkserve/venv/lib/python3.11/site-packages"])
        assert "nvidia" not in site and "pip" not in site.split()
        torch_dir = "/opt/mkserve/venv/lib/python3.11/site-packages/torch"
        assert "No such file" in exec_in(engine, container, ["ls", f"{torch_dir}/include"])
        assert exec_in(engine, container, ["sh", "-c", "ls /tmp/mkserve-build 2>&1"]) \
            .endswith("No such file or directory")


def test_read_only_root_with_a_writable_tmp(classifier: Built, images: Images,
                                            expected: Any) -> None:
    with images.serve(classifier.tag, read_only=True, tmpfs={"/tmp": "rw,mode=1777"}) as (_, url):
        assert_guide_answers(url, expected)


def test_stop_ends_within_the_grace_period(classifier: Built, images: Images,
                                           engine: Any) -> None:
    with images.serve(classifier.tag) as (container, url):
        requests.post(f"{url}/predictions/classifier", json=INPUT, timeout=30).raise_for_status()
        started = time.monotonic()
        container.stop(timeout=10)  # SIGTERM, then SIGKILL after 10 s
        took = time.monotonic() - started
        state = engine.client.containers.get(container.id).attrs["State"]
        assert took < 10, f"stop took {took:.1f}s"
        assert state.get("ExitCode") == 0, state  # a clean exit, not SIGKILL's 137


# -- every archive kind ------------------------------------------------------------------------

def plain_model_dir(dest: Path) -> Path:
    """A model folder with no manifest: the runtime infers handler and weights."""
    dest.mkdir(parents=True, exist_ok=True)
    files = build_model_files("classifier", dest.parent / "plain-files")
    shutil.copy(files / "model_scripted.pt", dest / "model_scripted.pt")
    for name in ("handler.py", "index_to_name.json"):
        shutil.copy(EXAMPLES_DIR / "classifier" / name, dest / name)
    return dest


@pytest.mark.parametrize("kind", ["tgz", "no-archive", "plain"])
def test_every_archive_kind_builds_and_serves(kind: str, images: Images, archives_dir: Path,
                                              no_archive: Path, classifier: Built,
                                              expected: Any, engine: Any) -> None:
    if kind == "tgz":
        source = make_archive("classifier", archives_dir / "tgz", fmt="tgz")
    elif kind == "no-archive":
        source = no_archive
    else:
        source = plain_model_dir(archives_dir / "plain" / "plainclassifier")
    built = images.build(source, f"classifier-{kind}")
    info = engine.inspect(built.tag)
    model = info.labels[L.MODEL_NAME]
    assert model == ("plainclassifier" if kind == "plain" else "classifier")
    assert info.labels[L.SOURCE_KIND] == {"tgz": "tgz", "no-archive": "folder",
                                          "plain": "plain"}[kind]
    with images.serve(built.tag) as (_, url):
        assert_guide_answers(url, expected, model)


# -- requirements, layer reuse, --context-only -------------------------------------------------

def test_archive_requirements_are_installed_and_imported(images: Images, archives_dir: Path,
                                                         classifier: Built, engine: Any) -> None:
    work = archives_dir / "needsdep"
    files = build_model_files("classifier", work / "files")
    (work / "handler.py").write_text(
        "import tinydep\n\n\ndef handle(data, context):\n    if data is None:\n"
        "        return None\n    return [{'tinydep': tinydep.VALUE} for _ in data]\n")
    (work / "requirements.txt").write_text("mkserve-tinydep==1.2.3\n")
    subprocess.run(archiver_command() + [
        "--model-name", "needsdep", "--version", "1.0",
        "--serialized-file", str(files / "model_scripted.pt"),
        "--handler", str(work / "handler.py"), "--requirements-file",
        str(work / "requirements.txt"), "--export-path", str(work), "--force"], check=True)
    built = images.build(work / "needsdep.mar", "needsdep")
    assert "checked again inside the image" in built.stderr
    assert "1 of them the model's" in built.stderr
    with images.serve(built.tag) as (_, url):
        answer = requests.post(f"{url}/predictions/needsdep", json=INPUT, timeout=30)
        assert answer.status_code == 200 and answer.json() == {"tinydep": 42}
    # The model's packages have their own layer; the torch layer is the classifier's.
    mine, theirs = engine.inspect(built.tag).layers, engine.inspect(classifier.tag).layers
    assert mine[:2] == theirs[:2]  # base, venv
    assert mine[2] != theirs[2]  # model-deps


def test_handler_change_rebuilds_only_small_layers(images: Images, no_archive: Path,
                                                   archives_dir: Path, engine: Any) -> None:
    before = images.build(no_archive, "layers-a")
    changed = archives_dir / "changed" / "classifier"
    shutil.copytree(no_archive, changed)
    handler = changed / "handler.py"
    handler.write_text(handler.read_text() + "\n# a handler-only change\n")
    after = images.build(changed, "layers-b")
    a, b = engine.inspect(before.tag), engine.inspect(after.tag)
    # RootFS: base, venv, model deps, runtime, weights, handler code, check.
    assert len(a.layers) == len(b.layers) == 7
    assert a.layers[:5] == b.layers[:5], "dependency, runtime or weight layers were rebuilt"
    assert a.layers[5] != b.layers[5]
    new = [size for size, by in b.history if (size, by) not in set(a.history)]
    assert sum(new) < 1_000_000, b.history  # what a push has to upload: kilobytes
    cached = re.search(r"\((\d+) of (\d+) steps from cache\)", after.stdout)
    assert cached and int(cached.group(1)) >= 9, after.stdout
    sys.stderr.write(f"\n[e2e] handler-only rebuild took {after.seconds:.1f}s "
                     f"({cached.group(0)})\n")


def test_context_only_output_builds_with_podman(images: Images, archives_dir: Path,
                                                classifier: Built, expected: Any,
                                                tmp_path: Path) -> None:
    mar = archives_dir / "classifier.mar"
    context = tmp_path / "context"
    proc = subprocess.run([sys.executable, "-m", "mkserve.builder.cli", "build", str(mar),
                           "--base-image", BASE_IMAGE, "--wheelhouse", str(images.wheelhouse),
                           # mkserve fills the wheelhouse itself (pip download, on this host).
                           "--fill-wheelhouse", "--context-only", str(context)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "podman build --format docker" in proc.stdout
    assert "wheelhouse ready:" in proc.stderr
    tag = images.tag("context-only")
    images.tags.append(tag)
    podman = subprocess.run(["podman", "build", "--format", "docker", "--build-arg",
                             "MKSERVE_CREATED=2026-01-01T00:00:00Z", "-t", tag, str(context)],
                            capture_output=True, text=True, check=False)
    assert podman.returncode == 0, podman.stderr[-4000:]
    with images.serve(tag) as (_, url):
        assert_guide_answers(url, expected)


def test_cli_run_predict_inspect(classifier: Built, engine: Any, expected: Any,
                                 tmp_path: Path) -> None:
    def mkserve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mkserve.builder.cli", *args],
                              capture_output=True, text=True, check=False, timeout=300)

    run = mkserve("run", classifier.tag, "--detach")
    assert run.returncode == 0, run.stderr
    url = re.search(r"ready: (http://\S+)", run.stderr).group(1)  # type: ignore[union-attr]
    container_id = re.search(r"container ([0-9a-f]{12})", run.stderr).group(1)  # type: ignore
    try:
        data = tmp_path / "input.json"
        data.write_text(json.dumps(INPUT))
        answer = mkserve("predict", url, "--data", f"@{data}")
        assert answer.returncode == 0, answer.stderr
        assert_answer(json.loads(answer.stdout), expected(INPUT))
        wrong = mkserve("predict", url, "--data", '{"features": [1, 2]}')
        assert wrong.returncode == 1 and "HTTP 4" in wrong.stderr
    finally:
        container = engine.client.containers.get(container_id)
        container.stop(timeout=10)
        container.remove(force=True)
    by_image = mkserve("predict", classifier.tag, "--data", f"@{data}")
    assert by_image.returncode == 0, by_image.stderr
    assert_answer(json.loads(by_image.stdout), expected(INPUT))
    described = mkserve("inspect", classifier.tag, "--json")
    assert described.returncode == 0, described.stderr
    info = json.loads(described.stdout)
    assert info["model"]["name"] == "classifier" and info["labels"]["mkserve"]["batch.size"] == "32"
    assert SESSION in " ".join(info["tags"])


def test_cli_bench_an_image(classifier: Built, engine: Any, tmp_path: Path) -> None:
    """`mkserve bench IMAGE`: started by the engine, timed to its first 200, driven by wrk,
    stopped and removed."""
    before = {c.id for c in engine.client.containers.list(all=True)}
    data = tmp_path / "input.json"
    data.write_text(json.dumps(INPUT))
    result = subprocess.run([sys.executable, "-m", "mkserve.builder.cli", "bench", classifier.tag,
                             "--data", f"@{data}", "--connections", "1,4", "--duration", "1",
                             "--warmup", "0"], capture_output=True, text=True, check=False,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    cold = re.search(r"cold start to first 200 ([0-9.]+) s", result.stdout)
    assert cold and 0 < float(cold.group(1)) < 300, result.stdout
    for conns in (1, 4):
        row = next(line for line in result.stdout.splitlines() if f"| c={conns} req/s" in line)
        assert float(row.split("|")[4].strip().replace(",", "")) > 0, row
        errors = next(line for line in result.stdout.splitlines()
                      if f"| c={conns} non-2xx / socket errors" in line)
        assert "0 / 0" in errors, errors
    assert {c.id for c in engine.client.containers.list(all=True)} == before  # removed


def test_optimized_image_answers_like_the_model_within_tolerance(
        images: Images, archives_dir: Path, expected: Any, tmp_path: Path) -> None:
    mar = make_archive("classifier", archives_dir / "optimize")
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps([row["features"] for row in BATCH]))
    built = images.build(mar, "classifier-optimized", "--optimize", "--sample-input", str(sample))
    assert "optimize: freeze" in built.stdout + built.stderr
    with images.serve(built.tag) as (_, url):
        for row in BATCH:
            got = requests.post(f"{url}/predictions/classifier", json=row, timeout=30).json()
            want = expected(row)
            assert got["predicted_class"] == want["predicted_class"]
            # The stated tolerance of --optimize: atol 1e-4, rtol 1e-3.
            assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-4,
                                                         rel=1e-3)


def test_optimized_transformer_image_answers_like_the_original_model(
        images: Images, archives_dir: Path, tmp_path: Path) -> None:
    """--optimize on the compute-heavy example (a TorchScript transformer called with
    token ids and a padding mask): the image's answers match the unoptimised archive
    served by `mkserve serve`, within the stated tolerance."""
    from server import Server

    mar = make_archive("transformer", archives_dir / "optimize-transformer")
    gen = torch.Generator().manual_seed(1)
    calls = [(torch.randint(1, 1000, (n, 64), generator=gen), torch.zeros(n, 64, dtype=torch.bool))
             for n in (1, 16)]
    sample = tmp_path / "sample.pt"
    torch.save({"forward": calls}, sample)
    built = images.build(mar, "transformer-optimized", "--optimize", "--sample-input", str(sample))
    assert "optimize: freeze" in built.stdout + built.stderr, built.stderr[-3000:]
    rows = [{"tokens": [int(t) for t in torch.randint(1, 1000, (n,), generator=gen)]}
            for n in (64, 64, 10, 1, 40)]
    with Server(mar, tmp_path) as original:
        original.wait_ready(120)
        want = [original.post("/predictions/transformer", json=row).json() for row in rows]
    with images.serve(built.tag) as (_, url):
        got = [requests.post(f"{url}/predictions/transformer", json=row, timeout=60).json()
               for row in rows]
        batch = requests.post(f"{url}/predictions/transformer", json=rows, timeout=60).json()
    for answer in (got, batch):
        for g, w in zip(answer, want, strict=True):
            assert g["predicted_class"] == w["predicted_class"]
            assert g["probabilities"] == pytest.approx(w["probabilities"], abs=1e-4, rel=1e-3)


# -- docker stop drains ------------------------------------------------------------------------

SLOW_HANDLER = """
import time


def handle(data, context):
    if data is None:
        return None
    time.sleep(2.0)
    return [{"slept": 2.0} for _ in data]
"""


@pytest.fixture(scope="session")
def slow_image(images: Images, archives_dir: Path) -> Built:
    folder = archives_dir / "slowpoke"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handler.py").write_text(SLOW_HANDLER)
    (folder / "mkserve.yaml").write_text("modelName: slowpoke\nhandler: handler.py\n")
    return images.build(folder, "slowpoke")


def stop_while_busy(engine: Any, container_id: str, url: str) -> tuple[list[int], int, float]:
    """Two requests in flight, then `docker stop` with no -t: their statuses, the exit
    code, and how long the stop took."""
    answers: list[int] = []

    def ask() -> None:
        answer = requests.post(f"{url}/predictions/slowpoke", json={"x": 1}, timeout=30)
        answers.append(answer.status_code)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # both are with the model now
    started = time.monotonic()
    engine.client.api.stop(container_id)  # as `docker stop` without -t sends it
    took = time.monotonic() - started
    for thread in threads:
        thread.join(30)
    state = engine.client.api.inspect_container(container_id)["State"]
    return answers, state["ExitCode"], took


def test_docker_stop_drains_a_container_from_mkserve_run(slow_image: Built, engine: Any) -> None:
    """`mkserve run -d` gives the container a stop timeout that covers the drain (Podman's
    Docker API gives 0 otherwise: SIGKILL at once, exit 137, answers lost)."""
    run = subprocess.run([sys.executable, "-m", "mkserve.builder.cli", "run", slow_image.tag,
                          "--detach"], capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, run.stderr
    url = re.search(r"ready: (http://\S+)", run.stderr).group(1)  # type: ignore[union-attr]
    container_id = re.search(r"container ([0-9a-f]{12})", run.stderr).group(1)  # type: ignore
    try:
        config = engine.client.api.inspect_container(container_id)["Config"]
        assert config["StopTimeout"] == 8 + 4 and config["StopSignal"] in ("SIGTERM", 15, "15")
        answers, code, took = stop_while_busy(engine, container_id, url)
        assert answers == [200, 200] and code == 0, (answers, code)
        assert took < 12
    finally:
        engine.client.api.remove_container(container_id, force=True)


def test_docker_run_with_a_stop_timeout_drains_too(slow_image: Built, engine: Any) -> None:
    """A plain `docker run --stop-timeout 12` (what the README says to pass on Podman)."""
    api = engine.client.api
    created = api.create_container(
        slow_image.tag, ports=["8080/tcp"], stop_timeout=12,
        host_config=api.create_host_config(port_bindings={"8080/tcp": None}))
    container_id = created["Id"]
    try:
        api.start(container_id)
        port = api.inspect_container(container_id)["NetworkSettings"]["Ports"]["8080/tcp"][0]
        url = f"http://127.0.0.1:{port['HostPort']}"
        from mkserve.builder.run import wait_ready

        wait_ready(url, 120)
        answers, code, _ = stop_while_busy(engine, container_id, url)
        assert answers == [200, 200] and code == 0, (answers, code)
    finally:
        api.remove_container(container_id, force=True)


def test_run_on_a_port_in_use_says_so_and_leaves_no_container(classifier: Built,
                                                              engine: Any) -> None:
    import socket

    before = {c["Id"] for c in engine.client.api.containers(all=True)}
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "mkserve.builder.cli", "run",
                              classifier.tag, "-p", f"{port}:8080", "--detach"],
                             capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 4 and "Traceback" not in run.stderr, run.stderr
    assert f"port {port} is already in use" in run.stderr and "--port" in run.stderr
    assert {c["Id"] for c in engine.client.api.containers(all=True)} == before
