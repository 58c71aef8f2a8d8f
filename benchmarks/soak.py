"""Soak test: mixed valid and invalid traffic against `mkserve serve` for minutes.

Reports requests served, answers by status, lost requests (connection errors
or timeouts on a request the server accepted), and the memory (PSS) of the
whole process tree at start and end. Exits 1 when a request was lost, a
server error (5xx other than shedding) appeared, or memory grew past the
bound. Traffic goes to 127.0.0.1 only and stops by itself.

    python benchmarks/soak.py --duration 180 [--source model.mar]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from mkserve.bench.bench import archive_example
from mkserve.bench.procs import free_port, pss_kb, tree

GUIDE_INPUT = {"features": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}


def pss_kib(pid: int) -> int:
    """PSS of a process and all its descendants (kB)."""
    return sum(pss_kb(p) for p in tree(pid))


# Each entry: (label, method, path suffix, kwargs, expected statuses)
def traffic(url: str, name: str) -> list[tuple[str, str, str, dict, set[int]]]:
    p = f"/predictions/{name}"
    return [
        ("single", "POST", p, {"json": GUIDE_INPUT}, {200}),
        ("single", "POST", p, {"json": GUIDE_INPUT}, {200}),
        ("single", "POST", p, {"json": GUIDE_INPUT}, {200}),
        ("client-batch", "POST", p, {"json": [GUIDE_INPUT] * 5}, {200}),
        ("malformed-json", "POST", p, {"data": "{oops", "headers": {
            "Content-Type": "application/json"}}, {400}),
        ("wrong-shape", "POST", p, {"json": {"features": [1.0, 2.0]}}, {400}),
        ("missing-key", "POST", p, {"json": {"x": 1}}, {400}),
        ("unknown-model", "POST", "/predictions/nope", {"json": GUIDE_INPUT}, {404}),
        ("oversized", "POST", p, {"data": b"x" * 7_000_000, "headers": {
            "Content-Type": "application/octet-stream"}}, {413}),
        ("wrong-method", "GET", p, {}, {405}),
        ("binary", "POST", p, {"data": os.urandom(64), "headers": {
            "Content-Type": "application/octet-stream"}}, {400}),
        ("kserve-v1", "POST", f"/v1/models/{name}:predict",
         {"json": {"instances": [GUIDE_INPUT, GUIDE_INPUT]}}, {200}),
        ("probe", "GET", "/readyz", {}, {200}),
    ]


# Over the complexity ceiling: goes with the bench package's process helpers (issue 14).
def main() -> int:  # noqa: C901
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=180, help="seconds of traffic")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--source", help="archive to serve (default: the guide's classifier)")
    parser.add_argument("--name", default="classifier")
    parser.add_argument("--growth-mib", type=float, default=64,
                        help="allowed PSS growth from start to end")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mkserve-soak-"))
    source = Path(args.source) if args.source else archive_example("classifier", work / "store")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed at the end
    env = {**os.environ, "PORT": str(port), "MKSERVE_MODEL": str(source),
           "MKSERVE_HOST": "127.0.0.1", "MKSERVE_ACCESS_LOG": "false"}
    server = subprocess.Popen([sys.executable, "-m", "mkserve.runtime"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                print("server did not become ready; log in", work / "server.log")
                return 1
            time.sleep(0.1)
        plan = traffic(url, args.name)
        for _ in range(200):  # warm-up, so that the start figure is the steady state
            requests.post(url + f"/predictions/{args.name}", json=GUIDE_INPUT, timeout=10)
        start_pss = pss_kib(server.pid)
        counts: collections.Counter[tuple[str, object]] = collections.Counter()
        unexpected: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        stop_at = time.monotonic() + args.duration

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with requests.Session() as session:
                while time.monotonic() < stop_at:
                    label, method, path, kwargs, expected = rng.choice(plan)
                    try:
                        r = session.request(method, url + path, timeout=30, **kwargs)
                        outcome: object = r.status_code
                        ok = r.status_code in expected or r.status_code == 503
                        if r.status_code >= 400:
                            body = r.json()  # every error has the documented JSON shape
                            ok = ok and ("code" in body or "error" in body)
                    except requests.Timeout:
                        outcome, ok = "lost (timeout)", False
                    except requests.ConnectionError:
                        outcome, ok = "lost (connection)", False
                    except ValueError:
                        outcome, ok = "non-JSON error body", False
                    with lock:
                        counts[(label, outcome)] += 1
                        if not ok:
                            unexpected[f"{label}: {outcome}"] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        end_pss = pss_kib(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()

    served = sum(n for (_, outcome), n in counts.items() if outcome == 200)
    total = sum(counts.values())
    growth = (end_pss - start_pss) / 1024
    print(f"soak: {args.duration:.0f}s, {args.clients} clients, {total} requests, "
          f"{served} answered 200")
    print(f"{'traffic':<16} {'answer':<20} {'count':>8}")
    for (label, outcome), n in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"{label:<16} {outcome!s:<20} {n:>8}")
    print(f"memory (PSS, whole tree): start {start_pss / 1024:.1f} MiB, end "
          f"{end_pss / 1024:.1f} MiB, growth {growth:+.1f} MiB (bound {args.growth_mib} MiB)")
    lost = sum(n for key, n in unexpected.items() if "lost" in key)
    print(f"lost requests: {lost}; unexpected answers: {json.dumps(dict(unexpected))}")
    failed = bool(unexpected) or growth > args.growth_mib
    print("RESULT:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
