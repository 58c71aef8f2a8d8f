"""Faults on the real process tree: killed workers, stuck handlers, handlers that raise."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from archives import make_archive
from server import Server, plain_model

pytestmark = pytest.mark.slow

GUIDE_INPUT = {"features": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}


def worker_pids(master: int) -> list[int]:
    """Children of the gunicorn master (the `mkserve serve` process execs into it)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def wait_for_workers(master: int, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(master)
        if len(pids) == count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"expected {count} workers, have {worker_pids(master)}")


def test_kill_9_of_a_worker_under_load(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store")
    with Server(source, tmp_path, env={"MKSERVE_WORKERS": "2"}) as server:
        server.wait_ready()
        victim = wait_for_workers(server.proc.pid, 2)[0]
        outcomes: list[object] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    # A fresh connection each time, so clients spread over both workers.
                    r = requests.post(server.url + "/predictions/classifier", json=GUIDE_INPUT,
                                      timeout=10)
                    outcomes.append(r.status_code)
                except requests.ConnectionError:
                    outcomes.append("reset")
                except requests.Timeout:
                    outcomes.append("hung")

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(1)
        os.kill(victim, signal.SIGKILL)
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join()
        assert "hung" not in outcomes
        assert set(outcomes) <= {200, "reset", 503}, set(outcomes)
        assert outcomes.count(200) > 20
        # gunicorn replaced the worker; the new one loads the model and serves.
        pids = wait_for_workers(server.proc.pid, 2)
        assert victim not in pids
        for _ in range(10):
            assert server.post("/predictions/classifier", json=GUIDE_INPUT).status_code == 200
        server.wait_ready()


SOMETIMES = """
import time

class Sometimes:
    def initialize(self, context):
        pass

    def handle(self, data, context):
        out = []
        for row in data:
            body = row["body"]
            if body.get("sleep"):
                time.sleep(body["sleep"])
            if body.get("raise"):
                raise RuntimeError("handler bug triggered by this input")
            out.append({"ok": body.get("i")})
        return out
"""


def test_handler_that_raises_only_for_some_inputs(tmp_path: Path):
    source = plain_model(tmp_path / "m", SOMETIMES)
    env = {"MKSERVE_BATCH_SIZE": "8", "MKSERVE_WORKERS": "1"}
    with Server(source, tmp_path, env=env) as server:
        server.wait_ready()
        results: dict[int, requests.Response] = {}

        def call(i: int) -> None:
            body = {"i": i, "raise": i % 4 == 0, "sleep": 0.01}
            results[i] = server.post("/predictions/plain", json=body)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, r in results.items():
            if i % 4 == 0:
                assert r.status_code == 500
                assert "handler bug triggered" in r.json()["message"]
            else:
                assert r.status_code == 200 and r.json() == {"ok": i}
        assert "Traceback" not in str([r.text for r in results.values()])
        assert "handler bug triggered" in server.log()  # the traceback goes to the log


def test_handler_stuck_past_the_timeout_gets_504_and_the_worker_is_replaced(tmp_path: Path):
    source = plain_model(tmp_path / "m", SOMETIMES)
    env = {"MKSERVE_RESPONSE_TIMEOUT": "1", "MKSERVE_WORKERS": "1",
           "MKSERVE_GRACEFUL_TIMEOUT": "2"}
    with Server(source, tmp_path, env=env) as server:
        server.wait_ready()
        first = wait_for_workers(server.proc.pid, 1)[0]
        started = time.monotonic()
        r = server.post("/predictions/plain", json={"sleep": 600})
        assert r.status_code == 504 and r.json()["type"] == "RequestTimeoutException"
        assert time.monotonic() - started < 5
        # Queued behind the stuck batch: answered 504 at its deadline, never run.
        assert server.post("/predictions/plain", json={"i": 1}).status_code == 504
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            pids = worker_pids(server.proc.pid)
            if pids and first not in pids:
                break
            time.sleep(0.2)
        assert first not in worker_pids(server.proc.pid), "stuck worker was not replaced"
        server.wait_ready()
        r = server.post("/predictions/plain", json={"i": 7})
        assert r.status_code == 200 and r.json() == {"ok": 7}
        assert "replacing this worker" in server.log()
