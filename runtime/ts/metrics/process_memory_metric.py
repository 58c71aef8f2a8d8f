"""`ts.metrics.process_memory_metric`: a process's resident memory and CPU use."""
from __future__ import annotations

from typing import Any


def get_cpu_usage(pid: int) -> float:
    """Resident memory of process `pid` in bytes (0 when it is gone), as TorchServe's
    worker memory figure reads it."""
    try:
        import psutil

        return float(psutil.Process(int(pid)).memory_info().rss)
    except Exception:  # noqa: BLE001 - a process that exited reports 0
        return 0.0


def check_process_mem_usage(stdin: Any) -> None:
    """Print `pid:rss` for each pid read from `stdin` until an empty line."""
    for line in stdin:
        pid = line.strip()
        if not pid:
            break
        print(f"{pid}:{get_cpu_usage(int(pid)):.0f}", flush=True)
