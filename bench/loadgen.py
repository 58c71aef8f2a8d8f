"""wrk as the load generator: keep-alive connections, POST bodies from a Lua script, JSON out."""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

# wrk calls done() once at the end; latencies are in microseconds. wrk counts
# responses with status > 399 in errors.status; socket errors are separate.
_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
wrk.body = [==[{body}]==]
done = function(summary, latency, requests)
  io.write(string.format(
    '\\nWRKJSON {{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout))
end
"""


class LoadError(RuntimeError):
    pass


@dataclass
class LoadResult:
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    cpu_ms_per_req: float | None = None  # server CPU (all its processes) per request

    def to_dict(self) -> dict:
        return asdict(self)


def wrk_path() -> str:
    path = shutil.which("wrk")
    if not path:
        raise LoadError("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    return path


def write_script(folder: Path, body: bytes, content_type: str = "application/json") -> Path:
    text = body.decode()
    if "]==]" in text:
        raise LoadError("request body contains ']==]', which the Lua script cannot quote")
    path = folder / "post.lua"
    path.write_text(_LUA.format(content_type=content_type, body=text))
    return path


def run_wrk(url: str, script: Path, connections: int, duration: float,
            threads: int = 1, timeout_s: float = 10.0) -> LoadResult:
    """One fixed-duration wrk run; `threads` wrk threads (1 keeps the load generator light)."""
    threads = max(1, min(threads, connections))
    cmd = [wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
           f"--timeout={max(1, round(timeout_s))}s", "-s", str(script), url]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"wrk did not finish: {' '.join(cmd)}") from exc
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise LoadError(f"wrk failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                        f"{proc.stdout}\n{proc.stderr}")
    data = json.loads(line[len("WRKJSON "):])
    seconds = data["duration_us"] / 1e6
    return LoadResult(
        connections=connections, duration_s=round(seconds, 3), requests=data["requests"],
        rps=data["requests"] / seconds if seconds else 0.0,
        p50_ms=data["p50_us"] / 1000.0, p90_ms=data["p90_us"] / 1000.0,
        p99_ms=data["p99_us"] / 1000.0, max_ms=data["max_us"] / 1000.0,
        non_2xx=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"])
