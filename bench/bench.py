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
from dataclasses import dataclass, field, replace
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
from .table import COMPUTE_BOUND, OVERHEAD_BOUND, PSS_SETTLE_S, ServerRun, render

# Example names work in a checkout of mkserve (examples/NAME/archive.sh).
REPO = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO / "examples"
SERVER_KINDS = ("torchserve", "mkserve", "trivial", "inprocess")
DEFAULT_EXAMPLES = ("classifier", "transformer")
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

def _log(out: TextIO, message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    """How every server is driven; the same for each archive of one benchmark."""

    duration: float
    warmup: float
    connections: Sequence[int]
    kinds: Sequence[str]
    rounds: int
    wrk_threads: int
    cores: int
    precision: str | None = None
    mk_env: dict[str, str] = field(default_factory=dict)
    ts_workers: int = 0  # TorchServe's default_workers_per_model
    ts_intra_op_threads: int = 0  # its OMP_NUM_THREADS; 0: unset, as it ships
    ts_tuned_threads: int = 0  # also a TorchServe with this OMP_NUM_THREADS; 0: none
    inprocess_duration: float = 5.0

    @property
    def other_precision(self) -> str | None:
        return self.precision if self.precision and self.precision != "fp32" else None


def inprocess_limits(target: Target, workdir: Path, opts: Options,
                     optimized: Path | None) -> dict[str, Any]:
    """The in-process limits the servers are compared with: fp32, and each variant run."""
    limits: dict[str, Any] = {}
    limits["inprocess"] = inprocess_limit(target, workdir, opts.inprocess_duration, opts.cores)
    if opts.other_precision:
        limits["inprocess_" + opts.other_precision] = inprocess_limit(
            target, workdir, opts.inprocess_duration, opts.cores, opts.other_precision)
    if optimized is not None:
        limits["inprocess_optimized"] = inprocess_limit(
            target, workdir, opts.inprocess_duration, opts.cores, archive=optimized)
    return limits


def servers_for(target: Target, workdir: Path, opts: Options,
                optimized: Path | None) -> list[tuple[str, Server]]:
    """The servers to compare on this archive, by key, in the order they start."""
    common = (workdir, target.model_name, target.body)
    wanted: list[tuple[str, Server]] = []
    if "torchserve" in opts.kinds:
        wanted.append(("torchserve", TorchServe(*common, target.archive, opts.ts_workers,
                                                opts.ts_intra_op_threads)))
        if opts.ts_tuned_threads and opts.ts_tuned_threads != opts.ts_intra_op_threads:
            tuned = TorchServe(*common, target.archive, opts.ts_workers, opts.ts_tuned_threads)
            tuned.label = f"torchserve-omp{opts.ts_tuned_threads}"
            tuned.log_path = workdir / f"{tuned.label}.log"
            wanted.append((tuned.label, tuned))
    if "mkserve" in opts.kinds:
        wanted.append(("mkserve", Mkserve(*common, target.archive, opts.mk_env)))
        if opts.other_precision:
            key = f"mkserve-{opts.other_precision}"
            env = {**opts.mk_env, "MKSERVE_PRECISION": opts.other_precision}
            wanted.append((key, Mkserve(*common, target.archive, env, label=key)))
        if optimized is not None:
            wanted.append(("mkserve-optimized", Mkserve(*common, optimized, opts.mk_env,
                                                        label="mkserve-optimized")))
    if "trivial" in opts.kinds:
        wanted.append(("trivial", Trivial(*common, target.archive, opts.mk_env)))
        wanted.append(("trivial-fast", TrivialFast(*common, target.archive, opts.mk_env)))
    return wanted


def start_and_weigh(run: ServerRun, label: str, script: Path, opts: Options,
                    out: TextIO) -> None:
    """Start the server (its cold start), warm it up, and read its memory twice."""
    server = run.server
    _log(out, f"{label}: starting {run.key}")
    run.cold_start_s = server.start()
    _log(out, f"{label}: {run.key} answered 200 after {run.cold_start_s:.2f}s; "
              f"warming up {opts.warmup:g}s")
    if opts.warmup > 0:
        loadgen.run_wrk(server.url, script, max(opts.connections), opts.warmup, opts.wrk_threads)
    run.pss_busy_mb = server.pss_mb()[0]
    time.sleep(PSS_SETTLE_S)
    run.pss_mb, run.pss_detail = server.pss_mb()
    _log(out, f"{label}: {run.key} PSS {run.pss_busy_mb:.0f} MB right after the "
              f"load, {run.pss_mb:.0f} MB {PSS_SETTLE_S:g}s later")


def drive(run: ServerRun, label: str, script: Path, conns: int, opts: Options,
          out: TextIO) -> None:
    """One wrk run against the server, with the server's CPU time per request."""
    cpu_before = run.server.cpu_seconds()
    res = loadgen.run_wrk(run.server.url, script, conns, opts.duration, opts.wrk_threads)
    cpu_after = run.server.cpu_seconds()
    if cpu_before is not None and cpu_after is not None and res.requests:
        res.cpu_ms_per_req = (cpu_after - cpu_before) * 1000.0 / res.requests
    run.loads.setdefault(conns, []).append(res)
    _log(out, f"{label}: {run.key:<18} c={conns:<3} {res.rps:9.1f} req/s "
              f"p50 {res.p50_ms:7.2f} ms p99 {res.p99_ms:7.2f} ms "
              f"non-2xx {res.non_2xx} socket errors {res.socket_errors} "
              f"CPU {res.cpu_ms_per_req or 0:.3f} ms/req")


def inprocess_round(target: Target, workdir: Path, limit: dict[str, Any], opts: Options,
                    out: TextIO) -> float:
    """The in-process limit measured again, next to one round of the servers: rows/s."""
    rows = _inprocess_run(target, target.archive, _body_file(target, workdir),
                          limit["processes"], limit["threads"], opts.duration, "fp32",
                          limit["jit_optimize"])
    rps = sum(r["rows_per_s"] for r in rows)
    _log(out, f"{target.label}: in-process (a round) {rps:9.1f} rows/s")
    return float(rps)


def bench_target(target: Target, workdir: Path, opts: Options, optimized: Path | None,
                 out: TextIO) -> dict[str, Any]:
    """Every server on one archive: started, weighed, then driven round by round."""
    result: dict[str, Any] = {"archive": str(target.archive), "model": target.model_name,
                              "batch_size": target.batch_size, "kind": target.kind}
    if "inprocess" in opts.kinds:
        _log(out, f"{target.label}: in-process limit ({opts.inprocess_duration:g}s per config)")
        result.update(inprocess_limits(target, workdir, opts, optimized))
    runs: list[ServerRun] = []
    script = loadgen.write_script(workdir, target.body)
    try:
        for key, server in servers_for(target, workdir, opts, optimized):
            runs.append(ServerRun(key, server))
            start_and_weigh(runs[-1], target.label, script, opts, out)
        limit = result.get("inprocess", {}).get("best")
        for conns in opts.connections:
            # A compute-bound model's limit is measured again in every round at the
            # top connection count, next to the servers: this machine's speed drifts
            # by more than the target's margin over the minutes between the
            # in-process search and these runs.
            paired = bool(limit) and target.kind == COMPUTE_BOUND \
                and conns == max(opts.connections)
            for round_no in range(opts.rounds):
                if paired:
                    result["inprocess"].setdefault("rounds", []).append(
                        inprocess_round(target, workdir, limit, opts, out))
                for run in runs[round_no % len(runs):] + runs[:round_no % len(runs)]:
                    drive(run, target.label, script, conns, opts, out)
    finally:
        for run in runs:
            try:
                run.server.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                _log(out, f"stopping {run.key}: {exc}")
    result["servers"] = {run.key: run.to_dict() for run in runs}
    result["_runs"] = runs
    return result


def bench_url(url: str, body: bytes | None, workdir: Path, opts: Options) -> dict[str, Any]:
    """An already-running server, driven alone (no start, cold start or memory)."""
    if body is None:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        body = example_body(name) if name in EXAMPLE_KIND else None
    if body is None:
        raise UsageError("--url needs --body FILE (one request body)")
    server = External(url, body)
    server.start()
    script = loadgen.write_script(workdir, body)
    run = ServerRun("mkserve", server)
    if opts.warmup > 0:
        loadgen.run_wrk(url, script, max(opts.connections), opts.warmup, opts.wrk_threads)
    for conns in opts.connections:
        for _ in range(opts.rounds):
            run.loads.setdefault(conns, []).append(
                loadgen.run_wrk(url, script, conns, opts.duration, opts.wrk_threads))
    return {"label": url, "kind": None, "servers": {"mkserve": run.to_dict()}, "_runs": [run]}


def bench_archive(spec: str, workdir: Path, body: bytes | None, opts: Options, *,
                  optimize: bool, ts_tuned: bool, out: TextIO) -> dict[str, Any]:
    """One archive or example, every server on it, with TorchServe set up as documented."""
    from mkserve.runtime.devices import plan_workers

    target = prepare_target(spec, workdir / "store", body)
    plan = plan_workers(0, 0, 0, target.batch_size, "cpu", opts.cores, 0)
    tuned = plan.intra_op_threads if ts_tuned else 0  # what mkserve gives each worker
    opts = replace(opts, ts_workers=opts.ts_workers or plan.workers, ts_tuned_threads=tuned)
    optimized = report = None
    if optimize and ("mkserve" in opts.kinds or "inprocess" in opts.kinds):
        optimized, report = optimized_copy(target, workdir / f"{target.label}-optimized")
    res = bench_target(target, workdir, opts, optimized, out)
    res["label"] = target.label
    if report is not None:
        res["optimize"] = {"optimized": report.optimized, "stage": report.stage,
                           "reason": report.reason, "max_abs_diff": report.max_abs_diff,
                           "model_speedup": report.speedup, "text": str(report)}
    res["torchserve_config"] = {
        "default_workers_per_model": opts.ts_workers,
        "OMP_NUM_THREADS": opts.ts_intra_op_threads or "unset (its default)",
        "tuned_variant": tuned or None}
    return res


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
    from mkserve.runtime.devices import cpu_cores

    kinds = list(only or SERVER_KINDS)
    for kind in kinds:
        if kind not in SERVER_KINDS:
            raise UsageError(f"--only {kind}: expected some of {', '.join(SERVER_KINDS)}")
    opts = Options(duration=duration, warmup=warmup,
                   connections=sorted({int(c) for c in connections}), kinds=kinds,
                   rounds=rounds, wrk_threads=wrk_threads, cores=cpu_cores(),
                   precision=precision, mk_env=dict(mkserve_env or {}),
                   ts_workers=ts_workers or 0, ts_intra_op_threads=ts_intra_op_threads or 0,
                   inprocess_duration=inprocess_duration)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="mkserve-bench-"))
    previous = signal.getsignal(signal.SIGTERM)

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    try:
        if url:
            results = [bench_url(url, body, workdir, opts)]
        else:
            results = [bench_archive(spec, workdir, body, opts, optimize=optimize,
                                     ts_tuned=ts_tuned, out=out)
                       for spec in archives or DEFAULT_EXAMPLES]
        header = (f"mkserve vs TorchServe 0.12 — {time.strftime('%Y-%m-%d')}, {_machine()}; "
                  f"wrk -t{wrk_threads}, {duration:g}s per run after {warmup:g}s warm-up, "
                  f"median of {rounds} round(s), {time.monotonic() - started:.0f}s in all")
        print(render(results, opts.connections, header), file=out, flush=True)
        report = {"header": header, "connections": opts.connections,
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
