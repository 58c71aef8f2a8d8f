"""`mkserve bench`: the side-by-side benchmark against an archive, a running server or an image."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from mkserve.runtime import routes

from .errors import MkserveError, UsageError
from .run import env_pairs, read_data


def _connections(text: str) -> list[int]:
    try:
        counts = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise UsageError(f"--connections {text!r}: expected counts like 1,16,64")
    return counts


def _prediction_url(url: str) -> str:
    """A server's base URL becomes its /predictions/{model} URL (the model from /readyz)."""
    from .run import model_at

    url = url.rstrip("/")
    if "/predictions/" in url or "/v1/models/" in url or "/v2/models/" in url:
        return url
    return url + routes.predictions(model_at(url))


def _default_body(url: str, body: bytes | None) -> bytes:
    if body is not None:
        return body
    from mkserve.bench.bench import EXAMPLE_KIND, example_body

    name = url.rstrip("/").rsplit("/", 1)[-1]
    if name in EXAMPLE_KIND:
        return example_body(name)
    raise UsageError("pass one request body with --data @request.json (or - for stdin)")


def _is_example(name: str) -> bool:
    from mkserve.bench.bench import EXAMPLES_DIR

    return "/" not in name and ":" not in name and (EXAMPLES_DIR / name / "make_model.py").exists()


# The command's options, one alias each, so that its signature reads as a list.
TargetsOpt = Annotated[list[str] | None, typer.Argument(
    metavar="[ARCHIVE|URL|IMAGE|RESULTS.json]...",
    help="Archives (.mar) to run mkserve and TorchServe 0.12 side by side on, or example "
         "names in a checkout (default: classifier transformer); http://HOST:PORT of a "
         "running server; an image built by `mkserve build` (started for the benchmark); "
         "or the JSON of an earlier run (--json), to show its summary and --plot it.",
    show_default=False)]
DataOpt = Annotated[str | None, typer.Option(
    "--data", "-d", help="One request body: @file.json, - for stdin, or the text "
                         "(default: the example's own input).")]
BodyOpt = Annotated[Path | None, typer.Option(
    help="A file holding the request body (the same as --data @FILE).")]
UrlOpt = Annotated[str | None, typer.Option(
    help="A running server to drive (the same as giving its URL as the target).")]
ConnectionsOpt = Annotated[str, typer.Option(help="wrk connection counts.")]
DurationOpt = Annotated[float, typer.Option(help="Seconds per wrk run.")]
WarmupOpt = Annotated[float, typer.Option(help="Seconds of warm-up per server.")]
RoundsOpt = Annotated[int, typer.Option(help="wrk runs per server and count (median).")]
OnlyOpt = Annotated[str, typer.Option(
    help="With archives: some of torchserve,mkserve,trivial,inprocess.")]
PrecisionOpt = Annotated[str | None, typer.Option(
    help="With archives: also run mkserve with this precision (bf16, fp16).")]
OptimizeOpt = Annotated[bool, typer.Option(
    "--optimize", help="With archives: also run an --optimize'd copy of the model.")]
EnvOpt = Annotated[list[str] | None, typer.Option(
    "--env", "-e", help="Extra environment for mkserve, NAME=VALUE.")]
TsWorkersOpt = Annotated[int | None, typer.Option(
    help="TorchServe's default_workers_per_model (default: mkserve's worker count).")]
TsIntraOpThreadsOpt = Annotated[int | None, typer.Option(
    help="OMP_NUM_THREADS for TorchServe's workers (default: unset, as it ships).")]
NoTsTunedOpt = Annotated[bool, typer.Option(
    "--no-ts-tuned", help="Skip the second TorchServe run with mkserve's threads per "
                          "worker.")]
InprocessDurationOpt = Annotated[float, typer.Option(
    help="Seconds per in-process measurement.")]
WrkThreadsOpt = Annotated[int, typer.Option(help="wrk threads.")]
KeepWorkdirOpt = Annotated[bool, typer.Option(
    "--keep-workdir", help="Keep the servers' logs for inspection.")]
JsonOutOpt = Annotated[Path | None, typer.Option(
    "--json", help="Also write every figure to this JSON file.")]
GrpcOpt = Annotated[bool, typer.Option(
    "--grpc", help="Drive TorchServe's and mkserve's gRPC inference API instead (a Python "
                   "gRPC load, same archive, same run); prints their table.")]
PlotOpt = Annotated[Path | None, typer.Option(
    "--plot", metavar="FILE.png",
    help="Also draw throughput and latency against connections, mkserve and TorchServe "
         "side by side (needs matplotlib: pip install 'mkserve[plot]').")]


def bench_command(
    targets: TargetsOpt = None,
    data: DataOpt = None,
    body: BodyOpt = None,
    url: UrlOpt = None,
    connections: ConnectionsOpt = "1,16,64",
    duration: DurationOpt = 10.0,
    warmup: WarmupOpt = 3.0,
    rounds: RoundsOpt = 1,
    only: OnlyOpt = "",
    precision: PrecisionOpt = None,
    optimize: OptimizeOpt = False,
    env: EnvOpt = None,
    ts_workers: TsWorkersOpt = None,
    ts_intra_op_threads: TsIntraOpThreadsOpt = None,
    no_ts_tuned: NoTsTunedOpt = False,
    inprocess_duration: InprocessDurationOpt = 5.0,
    wrk_threads: WrkThreadsOpt = 1,
    keep_workdir: KeepWorkdirOpt = False,
    json_out: JsonOutOpt = None,
    plot: PlotOpt = None,
    grpc: GrpcOpt = False,
) -> None:
    """Measure throughput, p50/p99 latency and errors with wrk at each connection count.

    With archives: TorchServe 0.12 (if installed) and mkserve with the same
    batch settings, a trivial endpoint on mkserve's gunicorn configuration
    and the model's in-process limit, plus cold start and memory (PSS), in
    one table of ratios. With a URL or an image: that server alone (an
    image adds its cold start). `python benchmarks/bench.py ...` is this
    command.
    """
    from mkserve.bench import plot as charts
    from mkserve.bench.bench import DEFAULT_EXAMPLES

    chosen = ([url] if url else []) + list(targets or []) or list(DEFAULT_EXAMPLES)
    if data is None and body is not None:
        data = f"@{body}"
    if len(chosen) == 1 and chosen[0].endswith(".json"):
        report = charts.load_report(chosen[0])
        typer.echo(charts.summary_table(report))
        if plot is not None:
            typer.echo(f"wrote {charts.plot(report, plot)}", err=True)
        return
    if plot is not None:
        try:
            import matplotlib  # noqa: F401  (fail before a long run, not after it)
        except ImportError as exc:
            raise UsageError("--plot needs matplotlib: pip install 'mkserve[plot]'") from exc
    if grpc:
        from mkserve.bench.grpcload import run_grpc_benchmark

        run_grpc_benchmark(
            list(targets or []), body=read_data(data) if data is not None else None,
            duration=duration, warmup=warmup, connections=_connections(connections),
            rounds=rounds, ts_workers=ts_workers, mkserve_env=env_pairs(env or []),
            out=sys.stdout)
        return
    if precision not in (None, "bf16", "fp16"):
        raise UsageError(f"--precision {precision}: expected bf16 or fp16")
    common: dict[str, Any] = {"duration": duration, "warmup": warmup, "rounds": rounds,
                              "connections": _connections(connections), "json_out": json_out,
                              "wrk_threads": wrk_threads}
    archives = {"precision": precision, "optimize": optimize, "mkserve_env": env_pairs(env or []),
                "only": [k.strip() for k in only.split(",") if k.strip()] or None,
                "ts_workers": ts_workers, "ts_intra_op_threads": ts_intra_op_threads,
                "ts_tuned": not no_ts_tuned, "inprocess_duration": inprocess_duration,
                "keep_workdir": keep_workdir}
    report = _run(chosen, read_data(data) if data is not None else None, common, archives)
    if plot is not None:
        typer.echo(f"wrote {charts.plot(report, plot)}", err=True)


def _run(targets: list[str], body: bytes | None, common: dict[str, Any],
         archives: dict[str, Any]) -> dict[str, Any]:
    """Benchmark archives/examples side by side, or one URL or image alone."""
    from mkserve.bench import loadgen
    from mkserve.bench.bench import run_benchmark
    from mkserve.bench.servers import ServerError

    try:
        loadgen.wrk_path()
    except loadgen.LoadError as exc:
        raise MkserveError(str(exc)) from exc
    local = [t for t in targets if Path(t).exists() or _is_example(t)]
    for target in targets:
        if target not in local and target.endswith((".mar", ".tar.gz", ".tgz", ".json")) \
                or target.startswith((".", "/")) and target not in local:
            raise UsageError(f"{target}: no such file or folder")
    if len(targets) > 1 and len(local) != len(targets):
        raise UsageError("several targets must all be archives or example names; benchmark "
                         "a URL or an image on its own")
    try:
        if local:
            return run_benchmark(local, body=body, **archives, **common)
        target = targets[0]
        if target.startswith(("http://", "https://")):
            url = _prediction_url(target)
            return run_benchmark(url=url, body=_default_body(url, body), **common)
        return _bench_image(target, body, archives["mkserve_env"], common)
    except (ServerError, loadgen.LoadError) as exc:
        raise MkserveError(str(exc)) from exc


def _bench_image(image: str, body: bytes | None, env: dict[str, str],
                 common: dict[str, Any]) -> dict[str, Any]:
    from mkserve.bench.bench import run_benchmark

    from .engine import connect
    from .run import start

    engine = connect()
    typer.echo(f"starting {image} ...", err=True)
    began = time.monotonic()
    started = start(engine, image, environment=env)
    try:
        url = started.url + routes.predictions(started.model)
        body = _default_body(url, body)
        from mkserve.bench.servers import post_once

        status, answer = post_once(url, body, timeout=60)
        cold = time.monotonic() - began
        if status != 200:
            raise MkserveError(f"{url} answered {status}: {answer[:300]!r}")
        typer.echo(f"{image}: cold start (container start to first 200) {cold:.2f} s", err=True)
        report = run_benchmark(url=url, body=body, **common)
        typer.echo(f"\n{image}: cold start to first 200 {cold:.2f} s (container start included); "
                   "memory is measured with an archive (PSS of the process tree)")
    finally:
        started.container.stop(timeout=15)
        started.container.remove()
    return report


def register(app: typer.Typer) -> None:
    app.command(name="bench")(bench_command)
