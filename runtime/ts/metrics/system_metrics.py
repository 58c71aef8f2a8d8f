"""`ts.metrics.system_metrics`: host figures (CPU, memory, disk, GPU) as TorchServe names
them; mkserve exports the same at /metrics, and these return each value."""
from __future__ import annotations

import shutil
from typing import Any

from mkserve.runtime.ts.metrics.dimension import Dimension

system_metrics: list[Any] = []
dimension = [Dimension("Level", "Host")]


def _psutil() -> Any:
    import psutil

    return psutil


def cpu_utilization() -> float:
    return float(_psutil().cpu_percent())


def memory_used() -> float:
    return _psutil().virtual_memory().used / (1024 * 1024)


def memory_available() -> float:
    return _psutil().virtual_memory().available / (1024 * 1024)


def memory_utilization() -> float:
    return float(_psutil().virtual_memory().percent)


def disk_used() -> float:
    return shutil.disk_usage("/").used / 1024**3


def disk_utilization() -> float:
    usage = shutil.disk_usage("/")
    return 100.0 * usage.used / usage.total


def disk_available() -> float:
    return shutil.disk_usage("/").free / 1024**3


def gpu_utilization(num_of_gpu: int) -> list[float]:
    """Per GPU memory use in %, through NVML; [] without GPUs or NVML."""
    if num_of_gpu <= 0:
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
        used = []
        for index in range(num_of_gpu):
            info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index))
            used.append(100.0 * info.used / info.total)
        return used
    except Exception:  # noqa: BLE001 - no NVML: no GPU figures
        return []


def collect_all(mod: Any = None, num_of_gpu: int = 0) -> dict[str, Any]:
    return {"CPUUtilization": cpu_utilization(), "MemoryUsed": memory_used(),
            "MemoryAvailable": memory_available(), "MemoryUtilization": memory_utilization(),
            "DiskUsage": disk_used(), "DiskUtilization": disk_utilization(),
            "DiskAvailable": disk_available(), "GPUMemoryUtilization": gpu_utilization(num_of_gpu)}
