"""The guide's monitoring section, as written, against mkserve and a real Prometheus."""
from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from archives import make_archive
from server import Server, free_port

pytestmark = pytest.mark.slow

GUIDE_INPUT = {"features": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}
# The guide's scrape config, with the target pointed at the server under test.
SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: 'torchserve'
    static_configs:
      - targets: ['{target}']
"""
QUERIES = {
    "requests": 'ts_inference_requests_total{model_name="classifier"}',
    "latency_p95": 'histogram_quantile(0.95, ts_inference_latency_ms_bucket{model_name="classifier"})',
    "queue_p95": 'histogram_quantile(0.95, ts_queue_latency_ms_bucket{model_name="classifier"})',
    "gpu_memory": "ts_gpu_memory_used_bytes",
    "workers": 'ts_model_workers{model_name="classifier"}',
}


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail("prometheus is not installed: `apt-get install prometheus` (.ci/run does)")
    return found


class Prometheus:
    def __init__(self, target: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prometheus.yml").write_text(SCRAPE_CONFIG.format(target=target))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [prometheus_binary(), f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=subprocess.DEVNULL, stderr=open(folder / "prometheus.log", "wb"))  # noqa: SIM115
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    def query(self, promql: str) -> list[dict]:
        r = requests.get(self.url + "/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def wait_for(self, promql: str, predicate, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        result: list[dict] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result and predicate(result):
                return result
            time.sleep(0.5)
        raise AssertionError(f"{promql} never satisfied the check; last result: {result}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def total(result: list[dict]) -> float:
    return sum(float(series["value"][1]) for series in result)


def test_guide_queries_return_the_expected_values_with_two_workers(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store")
    requests_sent = 37
    batch_rows = 2
    with Server(source, tmp_path, env={"MKSERVE_WORKERS": "2"}) as server:
        server.wait_ready()
        prom = Prometheus(f"127.0.0.1:{server.port}", tmp_path / "prom")
        try:
            with requests.Session() as session:
                for _ in range(requests_sent):
                    r = session.post(server.url + "/predictions/classifier", json=GUIDE_INPUT)
                    assert r.status_code == 200
                r = session.post(server.url + "/predictions/classifier",
                                 json=[GUIDE_INPUT] * batch_rows)
                assert r.status_code == 200
            expected_requests = requests_sent + 1
            # Any one scrape (whichever worker answers it) reports the sum over both workers.
            for _ in range(6):
                text = server.get("/metrics").text
                assert f'ts_inference_requests_total{{model_name="classifier",model_version="1.0"}} {expected_requests}.0' in text
                assert 'ts_model_workers{model_name="classifier"} 2.0' in text

            requests_result = prom.wait_for(QUERIES["requests"],
                                            lambda r: total(r) == expected_requests)
            assert requests_result[0]["metric"]["job"] == "torchserve"
            count = prom.wait_for('ts_inference_latency_ms_count{model_name="classifier"}',
                                  lambda r: total(r) == expected_requests)
            assert total(count) == expected_requests
            queued = prom.wait_for('ts_queue_latency_ms_count{model_name="classifier"}',
                                   lambda r: total(r) == requests_sent + batch_rows)
            assert total(queued) == requests_sent + batch_rows
            for key in ("latency_p95", "queue_p95"):
                result = prom.wait_for(QUERIES[key], lambda r: len(r) > 0)
                value = float(result[0]["value"][1])
                assert not math.isnan(value) and value >= 0
            assert total(prom.wait_for(QUERIES["gpu_memory"], lambda r: True)) == 0
            assert total(prom.wait_for(QUERIES["workers"], lambda r: total(r) == 2)) == 2
            legacy = prom.wait_for(
                'ts_inference_latency_microseconds{model_name="classifier"}',
                lambda r: total(r) > 0)
            assert legacy[0]["metric"]["model_version"] == "1.0"
            # The handler's own context.metrics (BaseHandler.handle records HandlerTime).
            handler_time = prom.wait_for('HandlerTime{model_name="classifier"}',
                                         lambda r: len(r) > 0)
            assert float(handler_time[0]["value"][1]) > 0
            by_status = prom.wait_for('flask_http_request_total{status="200"}',
                                      lambda r: total(r) >= expected_requests)
            assert total(by_status) >= expected_requests
        finally:
            prom.stop()


def test_metrics_also_on_a_separate_port_when_asked(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store")
    port = free_port()
    env = {"MKSERVE_METRICS_PORT": str(port), "MKSERVE_WORKERS": "2"}
    with Server(source, tmp_path, env=env) as server:
        server.wait_ready()
        for _ in range(3):
            assert server.post("/predictions/classifier", json=GUIDE_INPUT).status_code == 200
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'ts_inference_requests_total{model_name="classifier",model_version="1.0"} 3.0' in text
        assert server.get("/metrics").status_code == 200  # and still on the serving port
        # TorchServe's metrics query: exactly the series asked for, on both ports.
        for url in (f"http://127.0.0.1:{port}/metrics", f"{server.url}/metrics"):
            answer = requests.get(url, params={"name[]": "ts_inference_requests_total"},
                                  timeout=5)
            assert answer.status_code == 200, answer.text
            families = {line.split()[2] for line in answer.text.splitlines()
                        if line.startswith("# TYPE")}
            assert families == {"ts_inference_requests_total"}, answer.text
            assert 'ts_inference_requests_total{model_name="classifier"' in answer.text
        two = requests.get(f"{server.url}/metrics", timeout=5, params={
            "name[]": ["ts_inference_requests_total", "ts_queue_latency_microseconds"]})
        assert {line.split()[2] for line in two.text.splitlines()
                if line.startswith("# TYPE")} == {"ts_inference_requests_total",
                                                  "ts_queue_latency_microseconds"}
