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


class Tally:
    """Answers by traffic kind, and the ones that break the contract."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, object]] = collections.Counter()
        self.unexpected: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def add(self, label: str, outcome: object, ok: bool) -> None:
        with self.lock:
            self.counts[(label, outcome)] += 1
            if not ok:
                self.unexpected[f"{label}: {outcome}"] += 1


def one_request(session: requests.Session, url: str, method: str, path: str,
                kwargs: dict, expected: set[int]) -> tuple[object, bool]:
    """The outcome of one request (a status or how it was lost), and whether it was right."""
    try:
        r = session.request(method, url + path, timeout=30, **kwargs)
        ok = r.status_code in expected or r.status_code == 503
        if r.status_code >= 400:
            body = r.json()  # every error has the documented JSON shape
            ok = ok and ("code" in body or "error" in body)
        return r.status_code, ok
    except requests.Timeout:
        return "lost (timeout)", False
    except requests.ConnectionError:
        return "lost (connection)", False
    except ValueError:
        return "non-JSON error body", False


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    return False


def soak(url: str, name: str, clients: int, duration: float) -> Tally:
    """`clients` threads sending the mixed traffic for `duration` seconds."""
    plan = traffic(url, name)
    tally = Tally()
    stop_at = time.monotonic() + duration

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with requests.Session() as session:
            while time.monotonic() < stop_at:
                label, method, path, kwargs, expected = rng.choice(plan)
                tally.add(label, *one_request(session, url, method, path, kwargs, expected))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally


def report(tally: Tally, args: argparse.Namespace, start_pss: int, end_pss: int) -> bool:
    """Print the figures; True when the run failed."""
    served = sum(n for (_, outcome), n in tally.counts.items() if outcome == 200)
    total = sum(tally.counts.values())
    growth = (end_pss - start_pss) / 1024
    print(f"soak: {args.duration:.0f}s, {args.clients} clients, {total} requests, "
          f"{served} answered 200")
    print(f"{'traffic':<16} {'answer':<20} {'count':>8}")
    for (label, outcome), n in sorted(tally.counts.items(),
                                      key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"{label:<16} {outcome!s:<20} {n:>8}")
    print(f"memory (PSS, whole tree): start {start_pss / 1024:.1f} MiB, end "
          f"{end_pss / 1024:.1f} MiB, growth {growth:+.1f} MiB (bound {args.growth_mib} MiB)")
    lost = sum(n for key, n in tally.unexpected.items() if "lost" in key)
    print(f"lost requests: {lost}; unexpected answers: {json.dumps(dict(tally.unexpected))}")
    failed = bool(tally.unexpected) or growth > args.growth_mib
    print("RESULT:", "FAIL" if failed else "PASS")
    return failed


def main() -> int:
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
        if not wait_ready(url, server):
            print("server did not become ready; log in", work / "server.log")
            return 1
        for _ in range(200):  # warm-up, so that the start figure is the steady state
            requests.post(url + f"/predictions/{args.name}", json=GUIDE_INPUT, timeout=10)
        start_pss = pss_kib(server.pid)
        tally = soak(url, args.name, args.clients, args.duration)
        end_pss = pss_kib(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
    return 1 if report(tally, args, start_pss, end_pss) else 0


if __name__ == "__main__":
    sys.exit(main())
