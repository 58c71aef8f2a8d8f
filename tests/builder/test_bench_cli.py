"""`mkserve bench` against a running server and an archive: real wrk, real servers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from archives import make_archive
from mkserve.runtime.devices import cpu_cores
from server import Server

pytestmark = pytest.mark.slow

GUIDE_INPUT = {"features": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}


def mkserve(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mkserve.builder.cli", *args],
                          capture_output=True, text=True, check=False, timeout=timeout)


def table_row(text: str, measure: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[1] == measure:
            return cells
    raise AssertionError(f"no row {measure!r} in:\n{text}")


def test_bench_a_running_server_by_its_base_url(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store")
    body = tmp_path / "input.json"
    body.write_text(json.dumps(GUIDE_INPUT))
    with Server(source, tmp_path) as server:
        server.wait_ready()
        result = mkserve("bench", server.url, "--data", f"@{body}", "--connections", "1,4",
                         "--duration", "1", "--warmup", "0", "--json", str(tmp_path / "o.json"))
        assert result.returncode == 0, result.stderr
        # The model's name came from /readyz; both connection counts were driven.
        for conns in (1, 4):
            row = table_row(result.stdout, f"c={conns} req/s")
            assert float(row[3].replace(",", "")) > 0, row
            assert table_row(result.stdout, f"c={conns} non-2xx / socket errors")[3] == "0 / 0"
        figures = json.loads((tmp_path / "o.json").read_text())
        assert "/predictions/classifier" in json.dumps(figures)
        # The server kept serving after the benchmark.
        assert server.post("/predictions/classifier", json=GUIDE_INPUT).status_code == 200


def test_bench_an_archive_mkserve_and_trivial(tmp_path: Path):
    source = make_archive("classifier", tmp_path / "store")
    body = tmp_path / "input.json"
    body.write_text(json.dumps(GUIDE_INPUT))
    out = tmp_path / "figures.json"
    result = mkserve("bench", str(source), "--data", f"@{body}", "--only", "mkserve,trivial",
                     "--connections", "2", "--duration", "1", "--warmup", "0",
                     "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert float(table_row(result.stdout, "c=2 req/s")[3].replace(",", "")) > 0
    ceilings = table_row(result.stdout, "c=2 req/s")[5]
    assert "trivial" in ceilings and "no-model" in ceilings  # the Flask route and the fast path
    figures = json.loads(out.read_text())
    servers = figures["results"][0]["servers"]
    assert set(servers) == {"mkserve", "trivial", "trivial-fast"}
    assert servers["trivial-fast"]["loads"]["2"][0]["non_2xx"] == 0
    mk = servers["mkserve"]
    assert mk["cold_start_s"] > 0 and mk["pss_mb"] > 50
    assert mk["loads"]["2"][0]["non_2xx"] == 0


def test_bench_errors_say_what_to_do(tmp_path: Path):
    missing = mkserve("bench", str(tmp_path / "nope.mar"), timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    bad = mkserve("bench", "http://127.0.0.1:9/predictions/x", "--data", "{}",
                  "--connections", "1", "--duration", "1", timeout=60)
    assert bad.returncode != 0 and "error:" in bad.stderr and "Traceback" not in bad.stderr
    counts = mkserve("bench", "http://127.0.0.1:9", "--connections", "x", timeout=60)
    assert counts.returncode == 2 and "--connections" in counts.stderr


def test_compute_bound_limit_is_measured_again_in_every_round(tmp_path: Path):
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(Path(__file__).parents[2] / "benchmarks" / "bench.py"), "transformer",
         "--only", "mkserve,inprocess", "--connections", "2", "--duration", "1",
         "--warmup", "0", "--rounds", "2", "--inprocess-duration", "1", "--json", str(out)],
        capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr
    transformer = json.loads(out.read_text())["results"][0]
    limit = transformer["inprocess"]
    # the search: both process/thread shapes, each with TorchScript optimisation off and on
    cores = cpu_cores()
    shapes = {(1, cores), (cores, 1)}
    assert {(c["processes"], c["threads"], c["jit_optimize"]) for c in limit["configs"]} == {
        (p, t, jit) for p, t in shapes for jit in ("off", "on")}
    # then the best again next to mkserve, once per round
    assert len(limit["rounds"]) == 2 and all(r > 0 for r in limit["rounds"])
    served = [r["rps"] for r in transformer["servers"]["mkserve"]["loads"]["2"]]
    expected = sorted(s / r for s, r in zip(served, limit["rounds"], strict=False))[1]
    row = table_row(result.stdout, "c=2 req/s")
    assert f"same rounds {expected:.2f}×" in row[5]
    assert "≥0.9× in-proc " + ("✓" if expected >= 0.9 else "✗") in row[6]


def test_benchmarks_bench_py_is_mkserve_bench() -> None:
    """One command line: the checkout's script and the installed command answer alike."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"
    for args in (["--help"], ["classifier", "--only", "nope"]):
        ours = subprocess.run([sys.executable, str(script), *args], capture_output=True,
                              text=True, check=False, env={**os.environ, "COLUMNS": "100"})
        theirs = subprocess.run([sys.executable, "-m", "mkserve.builder.cli", "bench", *args],
                                capture_output=True, text=True, check=False,
                                env={**os.environ, "COLUMNS": "100"})
        assert (ours.returncode, ours.stdout, ours.stderr) == \
            (theirs.returncode, theirs.stdout, theirs.stderr), args
    assert theirs.returncode == 2 and "--only nope: expected some of" in theirs.stderr
