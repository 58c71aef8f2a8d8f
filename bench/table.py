"""The benchmark's table: one row per measure, TorchServe next to mkserve, ratios and targets.

Pure: it reads the figures `bench.bench_target` recorded (a result dict per archive,
its `_runs` the ServerRun of each server) and returns text. The targets marked ✓/✗
are performance.md's, chosen by what the example is for (OVERHEAD_BOUND,
COMPUTE_BOUND); an archive of unknown kind gets ratios without targets.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import loadgen
from .servers import Server

# What each example is for, and so which targets of performance.md apply to it.
OVERHEAD_BOUND, COMPUTE_BOUND = "overhead-bound", "compute-bound"
# Memory is read this long after the warm-up load stops (every server alike): what an
# idle replica holds. mkserve gives freed heap back after a second idle (release_memory).
PSS_SETTLE_S = 2.0
HEAD = ["model", "measure", "TorchServe", "mkserve", "mkserve/TS", "ceilings", "target"]
INPROCESS_KEYS = ("inprocess", "inprocess_bf16", "inprocess_fp16", "inprocess_optimized")


@dataclass
class ServerRun:
    """What one server did in the benchmark: its start, its memory, its loads."""

    key: str
    server: Server
    cold_start_s: float | None = None
    pss_mb: float | None = None
    pss_detail: dict[str, float] = field(default_factory=dict)
    pss_busy_mb: float | None = None  # right after the warm-up load, before PSS_SETTLE_S
    loads: dict[int, list[loadgen.LoadResult]] = field(default_factory=dict)

    def load(self, connections: int) -> loadgen.LoadResult | None:
        runs = self.loads.get(connections)
        if not runs:
            return None
        if len(runs) == 1:
            return runs[0]
        return sorted(runs, key=lambda r: r.rps)[len(runs) // 2]  # the median run

    def cpu(self, connections: int) -> float | None:
        """Median server CPU per request (ms) over the runs at `connections`."""
        values = sorted(r.cpu_ms_per_req for r in self.loads.get(connections, [])
                        if r.cpu_ms_per_req is not None)
        return values[len(values) // 2] if values else None

    def to_dict(self) -> dict[str, Any]:
        return {"cold_start_s": self.cold_start_s, "pss_mb": self.pss_mb,
                "pss_busy_mb": self.pss_busy_mb,
                "pss_detail": self.pss_detail,
                "loads": {str(c): [r.to_dict() for r in runs] for c, runs in self.loads.items()}}


# -- cells ------------------------------------------------------------------------

def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _check(value: float | None, bound: float, at_least: bool) -> str:
    if value is None:
        return "?"
    ok = value >= bound if at_least else value <= bound
    return "✓" if ok else "✗"


def _rps(load: loadgen.LoadResult | None) -> float | None:
    return load.rps if load else None


def _cpu(run: ServerRun | None, conns: int) -> float | None:
    return run.cpu(conns) if run else None


def _attr(run: ServerRun | None, name: str) -> float | None:
    return getattr(run, name) if run else None


def paired_efficiency(result: dict[str, Any], mk: ServerRun | None) -> float | None:
    """Median over rounds of mkserve's req/s over the in-process rows/s of the same round."""
    limits = result.get("inprocess", {}).get("rounds") or []
    if mk is None or not limits or not mk.loads:
        return None
    served = [r.rps for r in mk.loads[max(mk.loads)]]
    ratios = sorted(s / lim for s, lim in zip(served, limits, strict=False) if lim)
    return ratios[len(ratios) // 2] if ratios else None


# -- rows -------------------------------------------------------------------------

@dataclass
class _Rows:
    """The rows of one archive's result; each method adds one group of them."""

    result: dict[str, Any]
    connections: Sequence[int]
    rows: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runs: dict[str, ServerRun] = {r.key: r for r in self.result["_runs"]}
        self.label: str = self.result["label"]
        self.kind: str | None = self.result.get("kind")
        self.ts, self.mk = self.runs.get("torchserve"), self.runs.get("mkserve")
        self.triv, self.fast = self.runs.get("trivial"), self.runs.get("trivial-fast")
        best = self.result.get("inprocess", {}).get("best", {})
        self.limit, self.limit_cpu = best.get("rows_per_s"), best.get("cpu_ms_per_row")
        self.top = max(self.connections)

    def add(self, measure: str, ts: str, mk: str, ratio: str, ceilings: str = "",
            target: str = "") -> None:
        self.rows.append([self.label, measure, ts, mk, ratio, ceilings, target])

    def at(self, run: ServerRun | None, conns: int) -> loadgen.LoadResult | None:
        return run.load(conns) if run else None

    def is_top(self, conns: int, kind: str) -> bool:
        return conns == self.top and self.kind == kind

    # One connection count: throughput, latency, errors, CPU.

    def throughput(self, conns: int) -> None:
        t, m = self.at(self.ts, conns), self.at(self.mk, conns)
        ratio = _ratio(_rps(m), _rps(t))
        ceilings, targets = self._ceilings(conns, m)
        if self.is_top(conns, OVERHEAD_BOUND):
            targets.insert(0, f"≥1.0× {_check(ratio, 1.0, True)}")
        if self.is_top(conns, COMPUTE_BOUND):
            targets.insert(0, f"≥1.4× {_check(ratio, 1.4, True)}")
        self.add(f"c={conns} req/s", _fmt(_rps(t)), _fmt(_rps(m)), _x(ratio),
                 " · ".join(ceilings), " ".join(targets))

    def _ceilings(self, conns: int, m: loadgen.LoadResult | None) -> tuple[list[str], list[str]]:
        """mkserve's req/s against what bounds it: the trivial endpoints, the in-process limit."""
        ceilings: list[str] = []
        targets: list[str] = []
        if m is None:
            return ceilings, targets
        trivial, fast = self.at(self.triv, conns), self.at(self.fast, conns)
        if trivial:
            ceilings.append(f"trivial {_fmt(trivial.rps)} → {_x(m.rps / trivial.rps)}")
            if self.is_top(conns, OVERHEAD_BOUND):
                targets.append(f"≥0.8× trivial {_check(m.rps / trivial.rps, 0.8, True)}")
        if fast:
            ceilings.append(f"no-model {_fmt(fast.rps)} → {_x(m.rps / fast.rps)}")
        if self.limit:
            ceilings.append(f"in-proc {_fmt(self.limit)} → {_x(m.rps / self.limit)}")
            if self.is_top(conns, COMPUTE_BOUND):
                paired = paired_efficiency(self.result, self.mk)
                if paired is not None:
                    ceilings.append(f"same rounds {_x(paired)}")
                efficiency = paired or m.rps / self.limit
                targets.append(f"≥0.9× in-proc {_check(efficiency, 0.9, True)}")
        return ceilings, targets

    def latency(self, conns: int) -> None:
        t, m = self.at(self.ts, conns), self.at(self.mk, conns)
        p50 = _ratio(m.p50_ms if m else None, t.p50_ms if t else None)
        p99 = _ratio(m.p99_ms if m else None, t.p99_ms if t else None)
        targets = []
        if self.kind == OVERHEAD_BOUND and conns == 1:
            targets.append(f"p50 ≤0.2× {_check(p50, 0.2, False)}")
        if self.is_top(conns, OVERHEAD_BOUND):
            targets.append(f"p99 ≤1.0× {_check(p99, 1.0, False)}")

        def cell(load: loadgen.LoadResult | None) -> str:
            return f"{_fmt(load.p50_ms, 1)} / {_fmt(load.p99_ms, 1)}" if load else "–"

        self.add(f"c={conns} p50 / p99 ms", cell(t), cell(m), f"{_x(p50)} / {_x(p99)}", "",
                 " ".join(targets))

    def errors(self, conns: int) -> None:
        t, m = self.at(self.ts, conns), self.at(self.mk, conns)
        cells = [f"{x.non_2xx} / {x.socket_errors}" if x else "–" for x in (t, m)]
        target = ""
        if m and self.is_top(conns, OVERHEAD_BOUND):
            target = f"zero {_check(float(m.non_2xx + m.socket_errors), 0, False)}"
        self.add(f"c={conns} non-2xx / socket errors", cells[0], cells[1], "", "", target)

    def cpu(self, conns: int) -> None:
        t_cpu, m_cpu = _cpu(self.ts, conns), _cpu(self.mk, conns)
        notes = []
        for name, run in (("trivial", self.triv), ("no-model", self.fast)):
            value = _cpu(run, conns)
            if value:
                notes.append(f"{name} {value:.3f}")
        if self.limit_cpu and m_cpu:
            notes.append(f"in-proc {self.limit_cpu:.3f}/row → efficiency "
                         f"{_x(self.limit_cpu / m_cpu)}")
        self.add(f"c={conns} server CPU ms/req", _fmt(t_cpu, 3), _fmt(m_cpu, 3),
                 _x(_ratio(m_cpu, t_cpu)), " · ".join(notes))

    # The variants: TorchServe tuned, mkserve in another precision or optimised.

    def torchserve_variant(self, key: str, other: ServerRun) -> None:
        for conns in self.connections:
            o, m = other.load(conns), self.at(self.mk, conns)
            ratio = _ratio(_rps(m), _rps(o))
            goal = ""
            if self.is_top(conns, COMPUTE_BOUND):
                goal = f"(≥1.4× {_check(ratio, 1.4, True)})"
            elif self.is_top(conns, OVERHEAD_BOUND):
                goal = f"(≥1.0× {_check(ratio, 1.0, True)})"
            note = (f"p50 {_fmt(o.p50_ms if o else None, 1)} / "
                    f"{_fmt(m.p50_ms if m else None, 1)} ms, CPU/req "
                    f"{_x(_ratio(_cpu(self.mk, conns), other.cpu(conns)))}")
            self.add(f"c={conns} req/s vs {key}", _fmt(_rps(o)), _fmt(_rps(m)), _x(ratio),
                     note, goal)
        mk_cold, mk_pss = _attr(self.mk, "cold_start_s"), _attr(self.mk, "pss_mb")
        self.add(f"cold start / PSS vs {key}",
                 f"{_fmt(other.cold_start_s, 2)} s / {_fmt(other.pss_mb)} MB",
                 f"{_fmt(mk_cold, 2)} s / {_fmt(mk_pss)} MB",
                 f"{_x(_ratio(mk_cold, other.cold_start_s))} / "
                 f"{_x(_ratio(mk_pss, other.pss_mb))}")

    def mkserve_variant(self, key: str, variant: ServerRun) -> None:
        for conns in self.connections:
            v, base, t = variant.load(conns), self.at(self.mk, conns), self.at(self.ts, conns)
            note = (f"vs mkserve: {_x(_ratio(_rps(v), _rps(base)))}"
                    f", CPU/req {_x(_ratio(variant.cpu(conns), _cpu(self.mk, conns)))}"
                    f"; p50 {_fmt(v.p50_ms if v else None, 1)} ms")
            self.add(f"c={conns} req/s, {key}", _fmt(_rps(t)), _fmt(_rps(v)),
                     _x(_ratio(_rps(v), _rps(t))), note)

    # Once per archive: cold start, memory, the optimiser, the in-process limits.

    def cold_start(self) -> None:
        ts, mk = _attr(self.ts, "cold_start_s"), _attr(self.mk, "cold_start_s")
        cold = _ratio(mk, ts)
        self.add("cold start to first 200 (s)", _fmt(ts, 2), _fmt(mk, 2), _x(cold),
                 f"trivial {_fmt(self.triv.cold_start_s, 2)}" if self.triv else "",
                 f"≤0.8× {_check(cold, 0.8, False)}" if self.ts and self.mk else "")

    def memory(self) -> None:
        ts, mk = _attr(self.ts, "pss_mb"), _attr(self.mk, "pss_mb")
        pss = _ratio(mk, ts)
        busy = (f"right after the load: {_fmt(_attr(self.ts, 'pss_busy_mb'))} / "
                f"{_fmt(_attr(self.mk, 'pss_busy_mb'))}")
        notes = [busy]
        if self.triv:
            notes.append(f"trivial {_fmt(self.triv.pss_mb)}")
        self.add(f"PSS {PSS_SETTLE_S:g}s after warm-up (MB)", _fmt(ts), _fmt(mk), _x(pss),
                 " · ".join(notes), f"≤0.5× {_check(pss, 0.5, False)}" if self.ts and self.mk
                 else "")

    def optimizer(self) -> None:
        info = self.result.get("optimize")
        if info:
            self.add("--optimize (builder.optimize)", "",
                     info["stage"] if info["optimized"] else "kept the original", "",
                     info["text"][:160])

    def inprocess(self, key: str) -> None:
        info = self.result.get(key)
        if not info:
            return
        best = info["best"]
        summary = (f"batch {info['batch']}, {best['processes']} proc × {best['threads']} thr, "
                   f"jit {best.get('jit_optimize', 'off')}, "
                   f"{best['ms_per_batch']:.2f} ms/batch, {best['ms_batch_1']:.2f} ms at batch 1, "
                   f"CPU {best['cpu_ms_per_row']:.3f} ms/row")
        if info.get("rounds"):
            summary += ("; again in each round at the top connection count: "
                        + " / ".join(_fmt(r) for r in info["rounds"]))
        if key != "inprocess" and self.result.get("inprocess"):
            base = self.result["inprocess"]["best"]
            summary += (f"; vs fp32 {_x(best['rows_per_s'] / base['rows_per_s'])} rows/s, "
                        f"CPU/row {_x(best['cpu_ms_per_row'] / base['cpu_ms_per_row'])}")
        self.add(key.replace("inprocess", "in-process rows/s").replace("_", " "), "",
                 _fmt(best["rows_per_s"]), "", summary)


def _variants(runs: dict[str, ServerRun], prefix: str) -> list[tuple[str, ServerRun]]:
    """The runs whose key starts with prefix ("torchserve-omp1", "mkserve-bf16"), by key."""
    return [(key, runs[key]) for key in sorted(runs) if key.startswith(prefix)]


def table_rows(result: dict[str, Any], connections: Sequence[int]) -> list[list[str]]:
    table = _Rows(result, connections)
    for conns in connections:
        table.throughput(conns)
        table.latency(conns)
        table.errors(conns)
        table.cpu(conns)
    for key, run in _variants(table.runs, "torchserve-"):
        table.torchserve_variant(key, run)
    for key, run in _variants(table.runs, "mkserve-"):
        table.mkserve_variant(key, run)
    table.cold_start()
    table.memory()
    table.optimizer()
    for key in INPROCESS_KEYS:
        table.inprocess(key)
    return table.rows


def render(results: list[dict[str, Any]], connections: Sequence[int], header: str) -> str:
    # A "|" inside a cell (the optimizer's "max |diff|") would split it in Markdown.
    body = [[str(c).replace("|", "\\|") for c in row]
            for result in results for row in table_rows(result, connections)]
    widths = [max(len(str(r[i])) for r in [HEAD] + body) for i in range(len(HEAD))]

    def line(cells: list[str]) -> str:
        padded = (str(c).ljust(w) for c, w in zip(cells, widths, strict=False))
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([header, "", line(HEAD), sep] + [line(r) for r in body])
