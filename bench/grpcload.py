"""A gRPC load generator and `mkserve bench --grpc`: TorchServe's gRPC next to mkserve's.

wrk speaks HTTP/1.1 only, so gRPC load comes from Python: `run_grpc` keeps
`connections` unary Predictions calls in flight, each caller a thread with its
own channel (threads split across client processes, one call each at a time,
closed loop), recording each call's latency. Both servers get the same client, in the same
run, on the same archive; the client's own CPU is part of the figure for both.
"""
from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .loadgen import LoadResult
from .procs import free_port
from .servers import Mkserve, Server, TorchServe


def _client(port: int, model: str, body: bytes, threads: int, duration: float,
            queue: Any) -> None:
    """One client process: `threads` closed-loop callers, each on its own channel (its
    own connection, as wrk's connections are: each worker serves the connections the
    kernel hands it, so one channel would reach one worker)."""
    import threading

    import grpc
    from mkserve.runtime.rpc import stubs

    modules = stubs.load()
    pb, pb_grpc = modules["torchserve_inference_pb2"], modules["torchserve_inference_pb2_grpc"]
    # A local subchannel pool: without it, channels with the same target share one
    # connection.
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}",
                                      options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(threads)]
    stubs_ = [pb_grpc.InferenceAPIsServiceStub(channel) for channel in channels]
    request = pb.PredictionsRequest(model_name=model, input={"body": body})
    stop = time.monotonic() + duration
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads

    def caller(index: int) -> None:
        mine = latencies[index]
        stub = stubs_[index]
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                stub.Predictions(request, timeout=30)
            except grpc.RpcError:
                errors[index] += 1
                continue
            mine.append((time.perf_counter() - started) * 1000.0)

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for channel in channels:
        channel.close()
    queue.put(([x for per in latencies for x in per], sum(errors)))


def run_grpc(port: int, model: str, body: bytes, connections: int, duration: float,
             processes: int = 2) -> LoadResult:
    """`connections` calls in flight for `duration` seconds: throughput and latency."""
    processes = max(1, min(processes, connections))
    shares = [connections // processes + (i < connections % processes)
              for i in range(processes)]
    context = multiprocessing.get_context("spawn")  # grpc and fork do not mix
    queue = context.Queue()
    clients = [context.Process(target=_client, args=(port, model, body, share, duration,
                                                     queue)) for share in shares]
    for client in clients:
        client.start()
    results = [queue.get(timeout=duration + 120) for _ in clients]
    for client in clients:
        client.join(30)
    latencies = sorted(x for lats, _ in results for x in lats)
    errors = sum(e for _, e in results)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return LoadResult(connections=connections, duration_s=duration, requests=len(latencies),
                      rps=len(latencies) / duration, p50_ms=pct(0.50), p90_ms=pct(0.90),
                      p99_ms=pct(0.99), max_ms=latencies[-1] if latencies else 0.0,
                      non_2xx=errors, socket_errors=0)


def _warm(port: int, model: str, body: bytes, connections: int, seconds: float) -> None:
    if seconds > 0:
        run_grpc(port, model, body, connections, seconds)


def bench_grpc(archive: Path, model: str, body: bytes, workdir: Path,
               connections: Sequence[int], duration: float, warmup: float, rounds: int,
               ts_workers: int, mk_env: dict[str, str], out: TextIO) -> dict[str, Any]:
    """TorchServe and mkserve on one archive, each driven over gRPC at each connection
    count, round-robin; returns {"torchserve-grpc"|"mkserve-grpc": {conns: [results]}}."""
    grpc_port = free_port()
    servers: list[tuple[str, Server, int]] = []
    torchserve = TorchServe(workdir, model, body, archive, ts_workers, 0)
    servers.append(("torchserve-grpc", torchserve, torchserve.grpc_ports[0]))
    mkserve = Mkserve(workdir, model, body, archive,
                      {**mk_env, "MKSERVE_GRPC_PORT": str(grpc_port)}, label="mkserve-grpc")
    servers.append(("mkserve-grpc", mkserve, grpc_port))
    loads: dict[str, dict[int, list[LoadResult]]] = {key: {} for key, _, _ in servers}
    try:
        for key, server, port in servers:
            print(f"grpc: starting {key}", file=out, flush=True)
            server.start()
            _warm(port, model, body, max(connections), warmup)
        for conns in connections:
            for round_no in range(rounds):
                order = servers[round_no % 2:] + servers[:round_no % 2]
                for key, _, port in order:
                    res = run_grpc(port, model, body, conns, duration)
                    loads[key].setdefault(conns, []).append(res)
                    print(f"grpc: {key:<16} c={conns:<3} {res.rps:9.1f} req/s p50 "
                          f"{res.p50_ms:7.2f} ms p99 {res.p99_ms:7.2f} ms errors "
                          f"{res.non_2xx}", file=out, flush=True)
    finally:
        for _, server, _ in servers:
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the other
                print(f"grpc: stopping: {exc}", file=out, flush=True)
    return loads


def grpc_table(loads: dict[str, dict[int, list[LoadResult]]]) -> str:
    """Markdown rows: the median round of each server at each connection count."""
    def median(results: list[LoadResult]) -> LoadResult:
        return sorted(results, key=lambda r: r.rps)[len(results) // 2]

    lines = ["| server, over gRPC | c | req/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|"]
    ratios = []
    for conns in sorted(next(iter(loads.values()))):
        picked = {key: median(per[conns]) for key, per in loads.items() if conns in per}
        for key, res in picked.items():
            lines.append(f"| {key} | {conns} | {res.rps:,.0f} | {res.p50_ms:.2f} | "
                         f"{res.p99_ms:.2f} | {res.non_2xx} |")
        ts, mk = picked.get("torchserve-grpc"), picked.get("mkserve-grpc")
        if ts and mk and ts.rps:
            ratios.append(f"c={conns}: {mk.rps / ts.rps:.2f}x req/s, p50 "
                          f"{mk.p50_ms / ts.p50_ms if ts.p50_ms else 0:.2f}x")
    return "\n".join(lines) + ("\n\nmkserve vs TorchServe over gRPC: " + "; ".join(ratios)
                               if ratios else "")


def run_grpc_benchmark(targets: Sequence[str], *, body: bytes | None, duration: float,
                       warmup: float, connections: Sequence[int], rounds: int,
                       ts_workers: int | None, mkserve_env: dict[str, str],
                       out: TextIO) -> dict[str, Any]:
    """`mkserve bench --grpc`: each archive or example over gRPC on both servers."""
    import shutil
    import tempfile

    from .bench import DEFAULT_EXAMPLES, prepare_target

    workdir = Path(tempfile.mkdtemp(prefix="mkserve-bench-grpc-"))
    report: dict[str, Any] = {"grpc": {}}
    try:
        for spec in list(targets) or list(DEFAULT_EXAMPLES[:1]):
            target = prepare_target(spec, workdir / "store", body)
            loads = bench_grpc(target.archive, target.model_name, target.body, workdir,
                               sorted(set(connections)), duration, warmup, rounds,
                               ts_workers or 0, mkserve_env, out)
            print(f"\n{target.label}, {duration:g}s per run, median of {rounds} round(s):\n"
                  + grpc_table(loads), file=out, flush=True)
            report["grpc"][target.label] = {
                key: {str(c): [r.to_dict() for r in runs] for c, runs in per.items()}
                for key, per in loads.items()}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report
