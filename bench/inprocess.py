"""The model's own batched throughput, in-process: the physical limit a server is compared to.

`python -m mkserve.bench.inprocess ARCHIVE BODY.json --threads T --batch B --duration D`
loads the archive's handler exactly as an mkserve worker does (same `ts`
shim, same Context, same allocator tuning and TorchScript executor setting,
MKSERVE_JIT_OPTIMIZE) and calls `handler.handle(rows, context)` on batches of
B already-decoded rows for D seconds on T intra-op threads; no HTTP, no
queueing. Prints "ready" after warm-up, waits for a line on stdin (so that
several copies can run at once, one per core), then prints one JSON line.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any


def measure(archive: str, body: bytes, threads: int, batch: int, duration: float,
            precision: str = "fp32", wait_for_go: bool = False) -> dict:
    from mkserve.runtime.memory import tune_allocator

    tune_allocator()
    import torch

    torch.set_num_threads(threads)
    from mkserve.runtime import __version__
    from mkserve.runtime.handlers import load_handler
    from mkserve.runtime.precision import autocast
    from mkserve.runtime.service import set_jit_optimize
    from mkserve.runtime.settings import BY_NAME, resolve
    from mkserve.runtime.source import open_source
    from mkserve.runtime.ts.context import Context, RequestProcessor

    workdir = tempfile.mkdtemp(prefix="mkserve-inproc-")
    try:
        source = open_source(archive, workdir)
        # The caller's jit setting only: the rest from the model, as an image would have it.
        jit = BY_NAME["jit_optimize"].env
        settings = resolve({jit: os.environ.get(jit, "")}, source.model_config)
        context = Context(source.name, str(source.model_dir), source.manifest,
                          settings.batch_size, None, __version__,
                          model_yaml_config=source.model_config)
        context.system_properties["precision"] = precision
        set_jit_optimize(settings.jit_optimize, None)
        handle = load_handler(source, context)
        payload = json.loads(body)

        def cpu_autocast() -> contextlib.AbstractContextManager[Any]:
            return autocast(precision, "cpu")

        def run(n: int) -> None:
            rows = [{"body": payload} for _ in range(n)]
            context._begin_batch([RequestProcessor(f"r{i}", {}) for i in range(n)])
            with cpu_autocast():
                out = handle(rows, context)
            if not isinstance(out, list) or len(out) != n:
                raise RuntimeError(f"handler returned {type(out).__name__} for {n} rows")

        # TorchScript's profiling executor specialises over the first calls.
        warm_until = time.monotonic() + max(1.0, duration / 5)
        while time.monotonic() < warm_until:
            run(batch)
        for _ in range(3):
            run(1)
        one = []
        for _ in range(20):
            started = time.perf_counter()
            run(1)
            one.append(time.perf_counter() - started)
        if wait_for_go:
            print("ready", flush=True)
            sys.stdin.readline()
        iterations = 0
        cpu_started = time.process_time()
        started = time.perf_counter()
        deadline = started + duration
        while True:
            run(batch)
            iterations += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        elapsed = now - started
        cpu = time.process_time() - cpu_started
        one.sort()
        return {"threads": threads, "batch": batch, "precision": precision,
                "rows_per_s": iterations * batch / elapsed,
                "ms_per_batch": elapsed * 1000.0 / iterations,
                "cpu_ms_per_row": cpu * 1000.0 / (iterations * batch),
                "ms_batch_1": one[len(one) // 2] * 1000.0}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("body", help="file holding one request body (JSON)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=0, help="default: the archive's batchSize")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--wait", action="store_true", help="print ready, wait for stdin")
    args = parser.parse_args(argv)
    with open(args.body, "rb") as fh:
        body = fh.read()
    batch = args.batch
    if not batch:
        from mkserve.runtime.settings import resolve
        from mkserve.runtime.source import open_source

        workdir = tempfile.mkdtemp(prefix="mkserve-inproc-")
        try:
            batch = resolve({}, open_source(args.archive, workdir).model_config).batch_size
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    result = measure(args.archive, body, args.threads, batch, args.duration, args.precision,
                     args.wait)
    print("INPROC " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
