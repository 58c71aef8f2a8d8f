"""The side-by-side benchmark: TorchServe 0.12 and mkserve on one archive, one table of ratios.

Entry points: `mkserve bench` (builder/cli_bench.py) and, in a checkout,
`python benchmarks/bench.py` (this module's main(), where example names work).

For each archive: the model's in-process batched throughput (the physical
limit), then TorchServe, mkserve (`python -m mkserve.runtime`, as the image
runs it) and two trivial endpoints under mkserve's gunicorn configuration (a
Flask route, and the predictions fast path with no model: bench/trivial.py)
are started one after the other (cold start to the first 200), warmed up, their
PSS summed over each process tree, and driven by wrk at each connection
count, interleaved server by server so that noise on this shared machine hits
all of them alike. Everything started is killed at the end, also on errors.
See benchmarks/README.md for the method and what each number means.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mkserve.builder.errors import UsageError

from . import loadgen, procs
from .servers import (
    External,
    Mkserve,
    Server,
    ServerError,
    TorchServe,
    Trivial,
    TrivialFast,
)

# Example names work in a checkout of mkserve (examples/NAME/archive.sh).
REPO = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO / "examples"
SERVER_KINDS = ("torchserve", "mkserve", "trivial", "inprocess")
# Memory is read this long after the warm-up load stops (every server alike): what an
# idle replica holds. mkserve gives freed heap back after a second idle (release_memory).
PSS_SETTLE_S = 2.0
DEFAULT_EXAMPLES = ("classifier", "transformer")
# What each example is for, and so which targets of performance.md apply to it.
OVERHEAD_BOUND, COMPUTE_BOUND = "overhead-bound", "compute-bound"
EXAMPLE_KIND = {"classifier": OVERHEAD_BOUND, "transformer": COMPUTE_BOUND}


def example_body(example: str) -> bytes:
    if example == "transformer":
        return json.dumps({"tokens": list(range(1, 65))}).encode()
    path = EXAMPLES_DIR / example / "input.json"
    if path.exists():
        return path.read_bytes().strip()
    raise UsageError(f"no request body known for example {example!r}; pass --body FILE")


@dataclass
class Target:
    label: str
    archive: Path
    model_name: str
    body: bytes
    batch_size: int
    kind: str | None


def _manifest(archive: Path) -> dict[str, Any]:
    if archive.is_dir():
        return json.loads((archive / "MAR-INF" / "MANIFEST.json").read_text())
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return json.loads(zf.read("MAR-INF/MANIFEST.json"))
    import tarfile

    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.endswith("MAR-INF/MANIFEST.json"):
                return json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    raise UsageError(f"{archive}: no MAR-INF/MANIFEST.json; is it a model archive?")


def _batch_size(archive: Path) -> int:
    from mkserve.runtime.settings import resolve
    from mkserve.runtime.source import open_source

    workdir = tempfile.mkdtemp(prefix="mkserve-bench-src-")
    try:
        return resolve({}, open_source(archive, workdir).model_config).batch_size
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def archive_example(name: str, store: Path) -> Path:
    """examples/NAME/NAME.mar, made by the example's own archive.sh (the real
    torch-model-archiver, as the README's Quick start makes it)."""
    script = EXAMPLES_DIR / name / "archive.sh"
    if not script.exists():
        raise UsageError(f"{name}: example names work in a checkout of mkserve; pass the path "
                         "of a .mar (and --body FILE) instead")
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(script), str(store)], capture_output=True, text=True,
                          env=env, check=False)
    archive = store / f"{name}.mar"
    if proc.returncode != 0 or not archive.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise UsageError(f"{script} failed ({proc.returncode}): {' / '.join(tail)}; is "
                         "torch-model-archiver installed (pip install -e '.[examples]')?")
    return archive


def prepare_target(spec: str, store: Path, body: bytes | None) -> Target:
    """An example name (archived with the real torch-model-archiver) or an archive path."""
    if spec in EXAMPLE_KIND or (EXAMPLES_DIR / spec / "make_model.py").exists():
        archive = archive_example(spec, store)
        body = body or example_body(spec)
        kind = EXAMPLE_KIND.get(spec)
    else:
        archive = Path(spec).resolve()
        if not archive.exists():
            raise UsageError(f"{spec}: neither an example ({', '.join(DEFAULT_EXAMPLES)}) "
                             "nor an archive path")
        if body is None:
            raise UsageError(f"{spec}: pass --body FILE (one request body) for this archive")
        if archive.suffix != ".mar":
            raise UsageError(f"{spec}: TorchServe takes .mar archives; pass a .mar")
        kind = None
    name = _manifest(archive)["model"]["modelName"]
    return Target(Path(spec).name, archive, name, body, _batch_size(archive), kind)


# -- in-process limit -------------------------------------------------------

def inprocess_limit(target: Target, workdir: Path, duration: float, cores: int,
                    precision: str = "fp32", archive: Path | None = None) -> dict[str, Any]:
    """Best batched rows/s in-process over every way to run the model here.

    1 process × all cores or one process per core, each with TorchScript's graph
    optimisation off (what a CPU worker runs, MKSERVE_JIT_OPTIMIZE=auto) and on
    (slightly faster on some models, at a memory cost): the limit is the best of all.
    """
    body_file = _body_file(target, workdir)
    shapes = [(1, cores)] + ([(cores, 1)] if cores > 1 else [])
    results = []
    for jit in ("off", "on"):
        for copies, threads in shapes:
            rows = _inprocess_run(target, archive or target.archive, body_file, copies, threads,
                                  duration, precision, jit)
            results.append({"processes": copies, "threads": threads, "jit_optimize": jit,
                            "rows_per_s": sum(r["rows_per_s"] for r in rows),
                            "ms_per_batch": statistics.mean(r["ms_per_batch"] for r in rows),
                            "cpu_ms_per_row": statistics.mean(r["cpu_ms_per_row"] for r in rows),
                            "ms_batch_1": statistics.mean(r["ms_batch_1"] for r in rows)})
    best = max(results, key=lambda r: r["rows_per_s"])
    return {"batch": target.batch_size, "precision": precision, "best": best,
            "configs": results}


def _body_file(target: Target, workdir: Path) -> Path:
    """The request body, in the file the in-process measurement reads."""
    path = workdir / f"{target.label}-body.json"
    path.write_bytes(target.body)
    return path


def _inprocess_run(target: Target, archive: Path, body_file: Path, copies: int, threads: int,
                   duration: float, precision: str, jit: str) -> list[dict[str, Any]]:
    """`copies` in-process measurements at once (all warmed up before any measures)."""
    cmd = [sys.executable, "-m", "mkserve.bench.inprocess", str(archive),
           str(body_file), "--threads", str(threads), "--batch", str(target.batch_size),
           "--duration", str(duration), "--precision", precision, "--wait"]
    env = dict(os.environ, MKSERVE_JIT_OPTIMIZE=jit)
    running = [subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
               for _ in range(copies)]
    try:
        for proc in running:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "ready":
                raise ServerError(f"in-process measurement failed: {line}"
                                  f"{proc.stderr.read()}")  # type: ignore[union-attr]
        for proc in running:
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        rows = []
        for proc in running:
            out, err = proc.communicate(timeout=duration + 120)
            line = next((ln for ln in out.splitlines() if ln.startswith("INPROC ")), None)
            if line is None:
                raise ServerError(f"in-process measurement failed:\n{out}\n{err}")
            rows.append(json.loads(line[len("INPROC "):]))
        return rows
    finally:
        for proc in running:
            if proc.poll() is None:
                procs.kill_group(proc, grace=1)


# -- one archive --------------------------------------------------------------

@dataclass
class ServerRun:
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

    def to_dict(self) -> dict[str, Any]:
        return {"cold_start_s": self.cold_start_s, "pss_mb": self.pss_mb,
                "pss_busy_mb": self.pss_busy_mb,
                "pss_detail": self.pss_detail,
                "loads": {str(c): [r.to_dict() for r in runs] for c, runs in self.loads.items()}}


def _log(out: TextIO, message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Over the complexity ceiling: goes with the bench package (issue 14).
def bench_target(target: Target, workdir: Path, *, duration: float, warmup: float,  # noqa: C901
                 connections: Sequence[int], kinds: Sequence[str], precision: str | None,
                 optimized: Path | None, mk_env: dict[str, str], ts_workers: int,
                 ts_intra_op_threads: int, ts_tuned_threads: int, rounds: int,
                 inprocess_duration: float,
                 wrk_threads: int, cores: int, out: TextIO) -> dict[str, Any]:
    result: dict[str, Any] = {"archive": str(target.archive), "model": target.model_name,
                              "batch_size": target.batch_size, "kind": target.kind}
    if "inprocess" in kinds:
        _log(out, f"{target.label}: in-process limit ({inprocess_duration:g}s per config)")
        result["inprocess"] = inprocess_limit(target, workdir, inprocess_duration, cores)
        if precision and precision != "fp32":
            result["inprocess_" + precision] = inprocess_limit(target, workdir,
                                                               inprocess_duration, cores,
                                                               precision)
        if optimized is not None:
            result["inprocess_optimized"] = inprocess_limit(target, workdir, inprocess_duration,
                                                            cores, archive=optimized)
    runs: list[ServerRun] = []
    script = loadgen.write_script(workdir, target.body)
    try:
        wanted: list[tuple[str, Server]] = []
        if "torchserve" in kinds:
            wanted.append(("torchserve", TorchServe(workdir, target.model_name, target.body,
                                                    target.archive, ts_workers,
                                                    ts_intra_op_threads)))
            if ts_tuned_threads and ts_tuned_threads != ts_intra_op_threads:
                tuned = TorchServe(workdir, target.model_name, target.body, target.archive,
                                   ts_workers, ts_tuned_threads)
                tuned.label = f"torchserve-omp{ts_tuned_threads}"
                tuned.log_path = workdir / f"{tuned.label}.log"
                wanted.append((tuned.label, tuned))
        if "mkserve" in kinds:
            wanted.append(("mkserve", Mkserve(workdir, target.model_name, target.body,
                                              target.archive, mk_env)))
            if precision and precision != "fp32":
                wanted.append((f"mkserve-{precision}", Mkserve(
                    workdir, target.model_name, target.body, target.archive,
                    {**mk_env, "MKSERVE_PRECISION": precision}, label=f"mkserve-{precision}")))
            if optimized is not None:
                wanted.append(("mkserve-optimized", Mkserve(
                    workdir, target.model_name, target.body, optimized, mk_env,
                    label="mkserve-optimized")))
        if "trivial" in kinds:
            wanted.append(("trivial", Trivial(workdir, target.model_name, target.body,
                                              target.archive, mk_env)))
            wanted.append(("trivial-fast", TrivialFast(workdir, target.model_name, target.body,
                                                       target.archive, mk_env)))
        for key, server in wanted:
            run = ServerRun(key, server)
            runs.append(run)
            _log(out, f"{target.label}: starting {key}")
            run.cold_start_s = server.start()
            _log(out, f"{target.label}: {key} answered 200 after {run.cold_start_s:.2f}s; "
                      f"warming up {warmup:g}s")
            if warmup > 0:
                loadgen.run_wrk(server.url, script, max(connections), warmup, wrk_threads)
            run.pss_busy_mb = server.pss_mb()[0]
            time.sleep(PSS_SETTLE_S)
            run.pss_mb, run.pss_detail = server.pss_mb()
            _log(out, f"{target.label}: {key} PSS {run.pss_busy_mb:.0f} MB right after the "
                      f"load, {run.pss_mb:.0f} MB {PSS_SETTLE_S:g}s later")
        limit = result.get("inprocess", {}).get("best")
        for conns in connections:
            # A compute-bound model's limit is measured again in every round at the
            # top connection count, next to the servers: this machine's speed drifts
            # by more than the target's margin over the minutes between the
            # in-process search and these runs.
            paired = bool(limit) and target.kind == COMPUTE_BOUND and conns == max(connections)
            for round_no in range(rounds):
                order = runs[round_no % len(runs):] + runs[:round_no % len(runs)]
                if paired:
                    rows = _inprocess_run(target, target.archive, _body_file(target, workdir),
                                          limit["processes"], limit["threads"], duration, "fp32",
                                          limit["jit_optimize"])
                    rps = sum(r["rows_per_s"] for r in rows)
                    result["inprocess"].setdefault("rounds", []).append(rps)
                    _log(out, f"{target.label}: in-process (round {round_no + 1}) "
                              f"{rps:9.1f} rows/s")
                for run in order:
                    cpu_before = run.server.cpu_seconds()
                    res = loadgen.run_wrk(run.server.url, script, conns, duration, wrk_threads)
                    cpu_after = run.server.cpu_seconds()
                    if cpu_before is not None and cpu_after is not None and res.requests:
                        res.cpu_ms_per_req = (cpu_after - cpu_before) * 1000.0 / res.requests
                    run.loads.setdefault(conns, []).append(res)
                    _log(out, f"{target.label}: {run.key:<18} c={conns:<3} {res.rps:9.1f} req/s "
                              f"p50 {res.p50_ms:7.2f} ms p99 {res.p99_ms:7.2f} ms "
                              f"non-2xx {res.non_2xx} socket errors {res.socket_errors} "
                              f"CPU {res.cpu_ms_per_req or 0:.3f} ms/req")
    finally:
        for run in runs:
            try:
                run.server.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                _log(out, f"stopping {run.key}: {exc}")
    result["servers"] = {run.key: run.to_dict() for run in runs}
    result["_runs"] = runs
    return result


# -- the table ------------------------------------------------------------------

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


def _cpu(run: ServerRun | None, conns: int) -> float | None:
    """Median server CPU per request (ms) over the runs at `conns` connections."""
    values = sorted(r.cpu_ms_per_req for r in (run.loads.get(conns, []) if run else [])
                    if r.cpu_ms_per_req is not None)
    return values[len(values) // 2] if values else None


def paired_efficiency(result: dict[str, Any], mk: ServerRun | None) -> float | None:
    """Median over rounds of mkserve's req/s over the in-process rows/s of the same round."""
    limits = result.get("inprocess", {}).get("rounds") or []
    if mk is None or not limits or not mk.loads:
        return None
    served = [r.rps for r in mk.loads[max(mk.loads)]]
    ratios = sorted(s / lim for s, lim in zip(served, limits, strict=False) if lim)
    return ratios[len(ratios) // 2] if ratios else None


# Over the complexity ceiling: goes with the bench package (issue 14).
def table_rows(result: dict[str, Any], connections: Sequence[int]) -> list[list[str]]:  # noqa: C901
    runs: dict[str, ServerRun] = {r.key: r for r in result["_runs"]}
    label = result["label"]
    kind = result.get("kind")
    ts, mk, triv = runs.get("torchserve"), runs.get("mkserve"), runs.get("trivial")
    fast = runs.get("trivial-fast")
    best = result.get("inprocess", {}).get("best", {})
    limit, limit_cpu = best.get("rows_per_s"), best.get("cpu_ms_per_row")
    rows: list[list[str]] = []
    top = max(connections)
    for conns in connections:
        t = ts.load(conns) if ts else None
        m = mk.load(conns) if mk else None
        r_rps = _ratio(m.rps if m else None, t.rps if t else None)
        ceiling, target = [], []
        if triv and triv.load(conns) and m:
            trivial_rps = triv.load(conns).rps  # type: ignore[union-attr]
            ceiling.append(f"trivial {_fmt(trivial_rps)} → {_x(m.rps / trivial_rps)}")
            if kind == OVERHEAD_BOUND and conns == top:
                target.append(f"≥0.8× trivial {_check(m.rps / trivial_rps, 0.8, True)}")
        if fast and fast.load(conns) and m:
            fast_rps = fast.load(conns).rps  # type: ignore[union-attr]
            ceiling.append(f"no-model {_fmt(fast_rps)} → {_x(m.rps / fast_rps)}")
        if limit and m:
            ceiling.append(f"in-proc {_fmt(limit)} → {_x(m.rps / limit)}")
            if kind == COMPUTE_BOUND and conns == top:
                paired = paired_efficiency(result, mk)
                if paired is not None:
                    ceiling.append(f"same rounds {_x(paired)}")
                target.append(f"≥0.9× in-proc {_check(paired or m.rps / limit, 0.9, True)}")
        if conns == top and kind == OVERHEAD_BOUND:
            target.insert(0, f"≥1.0× {_check(r_rps, 1.0, True)}")
        if conns == top and kind == COMPUTE_BOUND:
            target.insert(0, f"≥1.4× {_check(r_rps, 1.4, True)}")
        rows.append([label, f"c={conns} req/s", _fmt(t.rps if t else None),
                     _fmt(m.rps if m else None), _x(r_rps), " · ".join(ceiling),
                     " ".join(target)])
        p50 = _ratio(m.p50_ms if m else None, t.p50_ms if t else None)
        p99 = _ratio(m.p99_ms if m else None, t.p99_ms if t else None)
        target = []
        if kind == OVERHEAD_BOUND and conns == 1:
            target.append(f"p50 ≤0.2× {_check(p50, 0.2, False)}")
        if kind == OVERHEAD_BOUND and conns == top:
            target.append(f"p99 ≤1.0× {_check(p99, 1.0, False)}")
        rows.append([label, f"c={conns} p50 / p99 ms",
                     f"{_fmt(t.p50_ms, 1)} / {_fmt(t.p99_ms, 1)}" if t else "–",
                     f"{_fmt(m.p50_ms, 1)} / {_fmt(m.p99_ms, 1)}" if m else "–",
                     f"{_x(p50)} / {_x(p99)}", "", " ".join(target)])
        errs = [f"{x.non_2xx} / {x.socket_errors}" if x else "–" for x in (t, m)]
        target = []
        if m and kind == OVERHEAD_BOUND and conns == top:
            target.append(f"zero {_check(float(m.non_2xx + m.socket_errors), 0, False)}")
        rows.append([label, f"c={conns} non-2xx / socket errors", errs[0], errs[1], "", "",
                     " ".join(target)])
        t_cpu, m_cpu = _cpu(ts, conns), _cpu(mk, conns)
        note = []
        if triv and _cpu(triv, conns):
            note.append(f"trivial {_cpu(triv, conns):.3f}")
        if fast and _cpu(fast, conns):
            note.append(f"no-model {_cpu(fast, conns):.3f}")
        if limit_cpu and m_cpu:
            note.append(f"in-proc {limit_cpu:.3f}/row → efficiency {_x(limit_cpu / m_cpu)}")
        rows.append([label, f"c={conns} server CPU ms/req", _fmt(t_cpu, 3), _fmt(m_cpu, 3),
                     _x(_ratio(m_cpu, t_cpu)), " · ".join(note), ""])
    for key, other in _variants(runs, "torchserve-"):
        for conns in connections:
            o = other.load(conns)
            m = mk.load(conns) if mk else None
            r = _ratio(m.rps if m else None, o.rps if o else None)
            goal = ""
            if conns == top and kind == COMPUTE_BOUND:
                goal = f"(≥1.4× {_check(r, 1.4, True)})"
            elif conns == top and kind == OVERHEAD_BOUND:
                goal = f"(≥1.0× {_check(r, 1.0, True)})"
            rows.append([label, f"c={conns} req/s vs {key}", _fmt(o.rps if o else None),
                         _fmt(m.rps if m else None), _x(r),
                         (f"p50 {_fmt(o.p50_ms if o else None, 1)} / "
                         f"{_fmt(m.p50_ms if m else None, 1)} ms, CPU/req "
                         f"{_x(_ratio(_cpu(mk, conns), _cpu(other, conns)))}"), goal])
        rows.append([label, f"cold start / PSS vs {key}",
                     f"{_fmt(other.cold_start_s, 2)} s / {_fmt(other.pss_mb)} MB",
                     (f"{_fmt(mk.cold_start_s if mk else None, 2)} s / "
                     f"{_fmt(mk.pss_mb if mk else None)} MB"),
                     (f"{_x(_ratio(mk.cold_start_s if mk else None, other.cold_start_s))} / "
                     f"{_x(_ratio(mk.pss_mb if mk else None, other.pss_mb))}"), "", ""])
    for key, variant in _variants(runs, "mkserve-"):
        for conns in connections:
            v = variant.load(conns)
            base = mk.load(conns) if mk else None
            t = ts.load(conns) if ts else None
            rows.append([label, f"c={conns} req/s, {key}", _fmt(t.rps if t else None),
                         _fmt(v.rps if v else None),
                         _x(_ratio(v.rps if v else None, t.rps if t else None)),
                         (f"vs mkserve: "
                          f"{_x(_ratio(v.rps if v else None, base.rps if base else None))}"
                         f", CPU/req {_x(_ratio(_cpu(variant, conns), _cpu(mk, conns)))}"
                         f"; p50 {_fmt(v.p50_ms if v else None, 1)} ms"), ""])
    cold = _ratio(mk.cold_start_s if mk else None, ts.cold_start_s if ts else None)
    rows.append([label, "cold start to first 200 (s)",
                 _fmt(ts.cold_start_s if ts else None, 2), _fmt(mk.cold_start_s if mk else None, 2),
                 _x(cold), f"trivial {_fmt(triv.cold_start_s, 2)}" if triv else "",
                 f"≤0.8× {_check(cold, 0.8, False)}" if ts and mk else ""])
    pss = _ratio(mk.pss_mb if mk else None, ts.pss_mb if ts else None)
    busy = (f"right after the load: {_fmt(ts.pss_busy_mb if ts else None)} / "
            f"{_fmt(mk.pss_busy_mb if mk else None)}")
    rows.append([label, f"PSS {PSS_SETTLE_S:g}s after warm-up (MB)",
                 _fmt(ts.pss_mb if ts else None), _fmt(mk.pss_mb if mk else None), _x(pss),
                 " · ".join([busy] + ([f"trivial {_fmt(triv.pss_mb)}"] if triv else [])),
                 f"≤0.5× {_check(pss, 0.5, False)}" if ts and mk else ""])
    if result.get("optimize"):
        info = result["optimize"]
        rows.append([label, "--optimize (builder.optimize)", "",
                     info["stage"] if info["optimized"] else "kept the original", "",
                     info["text"][:160], ""])
    for key in ("inprocess", "inprocess_bf16", "inprocess_fp16", "inprocess_optimized"):
        info = result.get(key)
        if not info:
            continue
        best = info["best"]
        summary = (f"batch {info['batch']}, {best['processes']} proc × {best['threads']} thr, "
                f"jit {best.get('jit_optimize', 'off')}, "
                f"{best['ms_per_batch']:.2f} ms/batch, {best['ms_batch_1']:.2f} ms at batch 1, "
                f"CPU {best['cpu_ms_per_row']:.3f} ms/row")
        if info.get("rounds"):
            summary += ("; again in each round at the top connection count: "
                     + " / ".join(_fmt(r) for r in info["rounds"]))
        if key != "inprocess" and result.get("inprocess"):
            base = result["inprocess"]["best"]
            summary += (f"; vs fp32 {_x(best['rows_per_s'] / base['rows_per_s'])} rows/s, "
                     f"CPU/row {_x(best['cpu_ms_per_row'] / base['cpu_ms_per_row'])}")
        rows.append([label, key.replace("inprocess", "in-process rows/s").replace("_", " "),
                     "", _fmt(best["rows_per_s"]), "", summary, ""])
    return rows


def _variants(runs: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """The runs whose key starts with prefix ("torchserve-omp1", "mkserve-bf16"), by key."""
    return [(key, runs[key]) for key in sorted(runs) if key.startswith(prefix)]


def render(results: list[dict[str, Any]], connections: Sequence[int], header: str) -> str:
    head = ["model", "measure", "TorchServe", "mkserve", "mkserve/TS", "ceilings", "target"]
    # A "|" inside a cell (the optimizer's "max |diff|") would split it in Markdown.
    body = [[str(c).replace("|", "\\|") for c in row]
            for result in results for row in table_rows(result, connections)]
    widths = [max(len(str(r[i])) for r in [head] + body) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        padded = (str(c).ljust(w) for c, w in zip(cells, widths, strict=False))
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([header, "", line(head), sep] + [line(r) for r in body])


# -- entry points ------------------------------------------------------------------

def _machine() -> str:
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) / 1024 / 1024
    except OSError:
        mem = 0
    import platform

    from mkserve.runtime.devices import cpu_cores

    return (f"{cpu_cores()} cores, {mem:.0f} GiB, {platform.machine()}, "
            f"Python {platform.python_version()}")


def run_benchmark(archives: Sequence[str] | None = None, *, duration: float = 10.0,
                  warmup: float = 3.0, connections: Sequence[int] = (1, 16, 64),
                  only: Sequence[str] | None = None, url: str | None = None,
                  body: bytes | None = None, precision: str | None = None,
                  optimize: bool = False, mkserve_env: dict[str, str] | None = None,
                  ts_workers: int | None = None, ts_intra_op_threads: int | None = None,
                  ts_tuned: bool = True,
                  rounds: int = 1, inprocess_duration: float = 5.0, wrk_threads: int = 1,
                  json_out: str | os.PathLike[str] | None = None, keep_workdir: bool = False,
                  out: TextIO = sys.stdout) -> dict[str, Any]:
    """Run the side-by-side benchmark; print the table to `out`; return all figures.

    archives: example names ("classifier", "transformer") or .mar paths; default both
    examples. only: a subset of torchserve, mkserve, trivial, inprocess (default all).
    url: drive an already-running server instead (no start, cold start or memory).
    precision: also run mkserve with MKSERVE_PRECISION set to it (bf16/fp16).
    optimize: also run mkserve on a copy of the archive whose TorchScript model went
    through builder.optimize (freeze + optimize_for_inference).
    ts_workers: TorchServe's default_workers_per_model (default: mkserve's worker count,
    which is also TorchServe's own default on CPU: one per core).
    ts_intra_op_threads: OMP_NUM_THREADS for TorchServe's workers (default: unset, so each
    worker uses every core, as TorchServe ships). ts_tuned: also run a second TorchServe
    with mkserve's intra-op threads per worker (OMP_NUM_THREADS=cores/workers), reported
    in its own rows, so that nobody has to take the default's word for it.
    """
    from mkserve.runtime.devices import cpu_cores, plan_workers

    cores = cpu_cores()
    kinds = list(only or SERVER_KINDS)
    for kind in kinds:
        if kind not in SERVER_KINDS:
            raise UsageError(f"--only {kind}: expected some of {', '.join(SERVER_KINDS)}")
    connections = sorted({int(c) for c in connections})
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="mkserve-bench-"))
    results: list[dict[str, Any]] = []
    previous = signal.getsignal(signal.SIGTERM)

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    try:
        if url:
            if body is None:
                name = url.rstrip("/").rsplit("/", 1)[-1]
                body = example_body(name) if name in EXAMPLE_KIND else None
            if body is None:
                raise UsageError("--url needs --body FILE (one request body)")
            server = External(url, body)
            server.start()
            script = loadgen.write_script(workdir, body)
            run = ServerRun("mkserve", server)
            if warmup > 0:
                loadgen.run_wrk(url, script, max(connections), warmup, wrk_threads)
            for conns in connections:
                for _ in range(rounds):
                    run.loads.setdefault(conns, []).append(
                        loadgen.run_wrk(url, script, conns, duration, wrk_threads))
            results.append({"label": url, "kind": None, "servers": {"mkserve": run.to_dict()},
                            "_runs": [run]})
        else:
            store = workdir / "store"
            for spec in archives or DEFAULT_EXAMPLES:
                target = prepare_target(spec, store, body)
                plan = plan_workers(0, 0, 0, target.batch_size, "cpu", cores, 0)
                workers = ts_workers or plan.workers
                intra = ts_intra_op_threads or 0
                ts_tuned_threads = plan.intra_op_threads  # what mkserve gives each worker
                optimized = report = None
                if optimize and ("mkserve" in kinds or "inprocess" in kinds):
                    optimized, report = optimized_copy(target,
                                                       workdir / f"{target.label}-optimized")
                res = bench_target(target, workdir, duration=duration, warmup=warmup,
                                   connections=connections, kinds=kinds, precision=precision,
                                   optimized=optimized, mk_env=dict(mkserve_env or {}),
                                   ts_workers=workers, ts_intra_op_threads=intra,
                                   ts_tuned_threads=ts_tuned_threads if ts_tuned else 0,
                                   rounds=rounds,
                                   inprocess_duration=inprocess_duration,
                                   wrk_threads=wrk_threads, cores=cores, out=out)
                res["label"] = target.label
                if report is not None:
                    res["optimize"] = {"optimized": report.optimized, "stage": report.stage,
                                       "reason": report.reason,
                                       "max_abs_diff": report.max_abs_diff,
                                       "model_speedup": report.speedup, "text": str(report)}
                res["torchserve_config"] = {"default_workers_per_model": workers,
                                            "OMP_NUM_THREADS": intra or "unset (its default)",
                                            "tuned_variant": ts_tuned_threads if ts_tuned
                                            else None}
                results.append(res)
        header = (f"mkserve vs TorchServe 0.12 — {time.strftime('%Y-%m-%d')}, {_machine()}; "
                  f"wrk -t{wrk_threads}, {duration:g}s per run after {warmup:g}s warm-up, "
                  f"median of {rounds} round(s), {time.monotonic() - started:.0f}s in all")
        print(render(results, connections, header), file=out, flush=True)
        report = {"header": header, "connections": connections,
                  "results": [{k: v for k, v in r.items() if k != "_runs"} for r in results]}
        if json_out:
            Path(json_out).write_text(json.dumps(report, indent=2, default=str))
        return report
    finally:
        signal.signal(signal.SIGTERM, previous)
        if keep_workdir:
            _log(out, f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def example_sample_inputs(example: str) -> Any:
    """What the example's handler calls its model with (for builder.optimize's check)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    if example == "classifier":
        return [torch.randn(1, 10, generator=gen), torch.randn(32, 10, generator=gen)]
    if example == "transformer":
        calls = []
        for batch in (1, 16):
            mask = torch.zeros(batch, 64, dtype=torch.bool)
            calls.append((torch.randint(1, 1000, (batch, 64), generator=gen), mask))
        return {"forward": calls}
    return None


def optimized_copy(target: Target, folder: Path) -> tuple[Path | None, Any]:
    """The archive unpacked with its TorchScript file through builder.optimize, and the report.

    None (and the report) when the model was kept as it was: nothing to compare then.
    """
    from mkserve.builder.optimize import optimize_torchscript
    from mkserve.runtime.source import open_source

    source = open_source(target.archive, folder)
    model_file = source.model_dir / source.model["serializedFile"]
    report = optimize_torchscript(model_file, model_file,
                                  sample_inputs=example_sample_inputs(target.label))
    _log(sys.stderr, f"{target.label}: optimize: {report}")
    return (source.model_dir if report.optimized else None), report
