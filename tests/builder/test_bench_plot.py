"""`mkserve bench --plot`: the chart and the summary drawn from a run's JSON."""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from mkserve.bench import plot as charts
from mkserve.builder.cli import app
from mkserve.builder.errors import UsageError
from typer.testing import CliRunner

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "results-2026-11-25.json"


def _load(connections: int, rps: float, p50: float, p99: float) -> dict:
    return {"connections": connections, "rps": rps, "p50_ms": p50, "p99_ms": p99}


def report_with(ts_runs: dict, mk_runs: dict) -> dict:
    return {"header": "test run", "connections": [1, 64], "results": [{
        "label": "tiny", "servers": {
            "torchserve": {"cold_start_s": 2.0, "pss_mb": 600.0, "loads": ts_runs},
            "mkserve": {"cold_start_s": 1.0, "pss_mb": 200.0, "loads": mk_runs}}}]}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_each_point_is_the_median_run_as_in_the_table() -> None:
    report = report_with(
        {"1": [_load(1, 100, 9, 20)], "64": [_load(64, 1000, 50, 90)]},
        {"1": [_load(1, 300, 3, 7), _load(1, 200, 4, 8), _load(1, 900, 1, 2)],
         "64": [_load(64, 4000, 10, 30)]})
    lines = charts.series(report)["tiny"]
    assert [run["rps"] for run in lines["mkserve"]] == [300, 4000]  # median of 200/300/900
    assert [run["connections"] for run in lines["torchserve"]] == [1, 64]
    table = charts.summary_table(report)
    assert "| tiny | c=1 req/s | 100 | 300 | 3.00× |" in table
    assert "| tiny | c=64 p50 / p99 ms | 50.0 / 90.0 | 10.0 / 30.0 | 0.20× / 0.33× |" in table
    assert "| tiny | memory, PSS (MB) | 600 | 200 | 0.33× |" in table


def test_plot_draws_both_servers_for_every_model(tmp_path: Path) -> None:
    report = charts.load_report(RUN)
    out = charts.plot(report, tmp_path / "chart.png")
    width, height = png_size(out)
    models = len(charts.series(report))
    assert models == 2 and width > 800 and height > 300 * models


def test_bench_replots_a_saved_run_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "bench.png"
    result = CliRunner().invoke(app, ["bench", str(RUN), "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert "| classifier | c=64 req/s |" in result.output
    png_size(out)


def test_a_file_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(UsageError, match="not a report of `mkserve bench --json FILE`"):
        charts.load_report(bad)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"results": [{"label": "x", "servers": {}}]}))
    with pytest.raises(UsageError, match="no mkserve or TorchServe runs"):
        charts.plot(charts.load_report(empty), tmp_path / "x.png")


def test_without_matplotlib_the_message_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'mkserve\[plot\]'"):
        charts.plot(charts.load_report(RUN), tmp_path / "x.png")
    # Refused before the benchmark starts, not after minutes of it.
    result = CliRunner().invoke(app, ["bench", "classifier", "--plot", str(tmp_path / "y.png")])
    assert isinstance(result.exception, UsageError) and "mkserve[plot]" in str(result.exception)
