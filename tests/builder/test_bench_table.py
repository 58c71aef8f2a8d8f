"""The benchmark's table from recorded figures: every row, ratio and target mark.

No server runs here: the figures are written out below, as `bench_target` would
have recorded them, and the rendered table is compared with
tests/builder/golden/bench/table.md (regenerate with MKSERVE_UPDATE_GOLDEN=1
after an intended change, and read the diff).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from mkserve.bench.loadgen import LoadResult
from mkserve.bench.servers import Server
from mkserve.bench.table import COMPUTE_BOUND, OVERHEAD_BOUND, ServerRun, render

GOLDEN = Path(__file__).resolve().parent / "golden" / "bench" / "table.md"
UPDATE = os.environ.get("MKSERVE_UPDATE_GOLDEN") == "1"


def load(conns: int, rps: float, p50: float, p99: float, cpu: float | None,
         non_2xx: int = 0) -> LoadResult:
    return LoadResult(connections=conns, duration_s=5.0, requests=int(rps * 5), rps=rps,
                      p50_ms=p50, p90_ms=p50 * 2, p99_ms=p99, max_ms=p99 * 2,
                      non_2xx=non_2xx, socket_errors=0, cpu_ms_per_req=cpu)


def run(key: str, cold: float, pss: float, loads: dict[int, list[LoadResult]]) -> ServerRun:
    return ServerRun(key, cast(Server, None), cold_start_s=cold, pss_mb=pss,
                     pss_busy_mb=pss * 1.1, loads=loads)


def inprocess(rows_per_s: float, cpu_ms: float, rounds: list[float] | None = None
              ) -> dict[str, Any]:
    info: dict[str, Any] = {"batch": 16, "best": {
        "rows_per_s": rows_per_s, "cpu_ms_per_row": cpu_ms, "processes": 2, "threads": 1,
        "jit_optimize": "off", "ms_per_batch": 16_000 / rows_per_s, "ms_batch_1": 1.5}}
    if rounds:
        info["rounds"] = rounds
    return info


def classifier() -> dict[str, Any]:
    runs = [
        run("torchserve", 9.5, 900, {1: [load(1, 700, 1.4, 3.0, 1.9)],
                                     64: [load(64, 2600, 24.0, 40.0, 0.77)]}),
        run("torchserve-omp1", 9.0, 880, {1: [load(1, 720, 1.3, 2.9, 1.8)],
                                          64: [load(64, 3100, 20.0, 35.0, 0.64)]}),
        # Three rounds: the median one (by req/s) is the one reported.
        run("mkserve", 1.8, 260, {1: [load(1, 2400, 0.38, 0.9, 0.41),
                                      load(1, 2600, 0.37, 0.8, 0.40),
                                      load(1, 2500, 0.39, 0.7, 0.42)],
                                  64: [load(64, 14_000, 4.0, 11.0, 0.13)]}),
        run("mkserve-bf16", 1.9, 270, {1: [load(1, 2300, 0.40, 1.0, 0.43)],
                                       64: [load(64, 13_000, 4.4, 12.0, 0.14)]}),
        run("trivial", 0.9, 120, {1: [load(1, 4000, 0.22, 0.5, 0.25)],
                                  64: [load(64, 16_000, 3.6, 9.0, 0.12)]}),
        run("trivial-fast", 0.8, 110, {1: [load(1, 9000, 0.10, 0.3, 0.1)],
                                       64: [load(64, 50_000, 1.2, 3.0, 0.03, non_2xx=0)]}),
    ]
    return {"label": "classifier", "kind": OVERHEAD_BOUND, "_runs": runs,
            "inprocess": inprocess(400_000, 0.004),
            "optimize": {"optimized": True, "stage": "optimize_for_inference",
                         "text": "optimized: max |diff| 1e-7, model 1.3x faster"}}


def transformer() -> dict[str, Any]:
    runs = [
        run("torchserve", 12.0, 2100, {1: [load(1, 60, 16.0, 20.0, 30.0)],
                                       64: [load(64, 150, 420.0, 600.0, 12.0, non_2xx=3)]}),
        run("mkserve", 4.0, 1300, {1: [load(1, 90, 11.0, 13.0, 20.0)],
                                   64: [load(64, 240, 260.0, 300.0, 8.0),
                                        load(64, 250, 255.0, 290.0, 7.9)]}),
    ]
    return {"label": "transformer", "kind": COMPUTE_BOUND, "_runs": runs,
            "inprocess": inprocess(260, 7.5, rounds=[270.0, 265.0]),
            "inprocess_bf16": inprocess(300, 6.4)}


def test_the_table_from_recorded_figures() -> None:
    text = render([classifier(), transformer()], [1, 64], "header line")
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text + "\n")
    assert text + "\n" == GOLDEN.read_text()


def cells(text: str, model: str, measure: str) -> list[str]:
    for line in text.splitlines():
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if row[:2] == [model, measure]:
            return row
    raise AssertionError(f"no row {model} / {measure}")


def test_targets_are_marked_from_the_figures() -> None:
    text = render([classifier(), transformer()], [1, 64], "")
    # c=64 classifier: 14,000 vs 2,600 req/s is ≥1.0×; 14,000 / 16,000 trivial ≥0.8×.
    top = cells(text, "classifier", "c=64 req/s")
    assert top[2:5] == ["2,600", "14,000", "5.38×"]
    assert top[6] == "≥1.0× ✓ ≥0.8× trivial ✓"
    # The median of three rounds at c=1 is the 2,500 req/s one.
    assert cells(text, "classifier", "c=1 req/s")[3] == "2,500"
    # The p50 target at one connection: 0.39 / 1.4 = 0.28× misses ≤0.2×.
    assert cells(text, "classifier", "c=1 p50 / p99 ms")[6] == "p50 ≤0.2× ✗"
    # Transformer: 250/150 ≥1.4×; paired against the same rounds' in-process limit.
    t_top = cells(text, "transformer", "c=64 req/s")
    assert t_top[6].startswith("≥1.4× ✓") and "same rounds" in t_top[5]
    # Errors at the top count are shown, and the cold start and PSS targets are judged.
    assert cells(text, "transformer", "c=64 non-2xx / socket errors")[2] == "3 / 0"
    assert cells(text, "classifier", "cold start to first 200 (s)")[6] == "≤0.8× ✓"
    assert cells(text, "classifier", "PSS 2s after warm-up (MB)")[6] == "≤0.5× ✓"
