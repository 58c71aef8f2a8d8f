"""CPU quota and GPU detection without touching CUDA, and the worker/thread plan made from them.

Everything here runs in the gunicorn master, before fork: CUDA does not
survive fork, so GPUs are counted from the environment, device nodes and NVML.
Each input is a parameter so tests can simulate hosts.
"""
from __future__ import annotations

import ctypes
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_CPU_WORKERS = 4


def cpu_cores(cgroup_root: Path = Path("/sys/fs/cgroup"),
              affinity: Callable[[], int] | None = None) -> int:
    """Cores this container may use: the CPU affinity, capped by a cgroup CPU quota."""
    if affinity is None:
        def affinity() -> int:
            return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
                os.cpu_count() or 1)
    cores = max(1, affinity())
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return cores


def _cgroup_quota(root: Path) -> float | None:
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct", root):  # cgroup v1
        try:
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def _visible_list(value: str) -> int | None:
    """Count entries of a *_VISIBLE_DEVICES value; None when it means 'all'."""
    value = value.strip().lower()
    if value in ("", "none", "void", "-1"):
        return 0
    if value == "all":
        return None
    return len([v for v in value.split(",") if v.strip() and v.strip() != "-1"])


def nvml_device_count(library: str = "libnvidia-ml.so.1") -> int | None:
    """GPUs NVML sees, or None when NVML is not installed (no CUDA context is created)."""
    try:
        nvml = ctypes.CDLL(library)
    except OSError:
        return None
    count = ctypes.c_uint(0)
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
        return int(count.value)
    finally:
        nvml.nvmlShutdown()


def gpu_count(env: Mapping[str, str] | None = None, dev: Path = Path("/dev"),
              nvml: Callable[[], int | None] = nvml_device_count) -> int:
    """GPUs this process may use, decided without initialising CUDA."""
    env = os.environ if env is None else env
    for name in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
        if name in env:
            listed = _visible_list(env[name])
            if listed is not None:
                if listed == 0:
                    return 0
                if name == "CUDA_VISIBLE_DEVICES":
                    return listed
                # NVIDIA_VISIBLE_DEVICES lists what the runtime mounts; the nodes confirm it.
                return listed if _device_nodes(dev) else 0
            break
    nodes = _device_nodes(dev)
    if not nodes:
        return 0
    counted = nvml()
    return counted if counted is not None else nodes


def _device_nodes(dev: Path) -> int:
    try:
        return len([p for p in dev.iterdir() if re.fullmatch(r"nvidia\d+", p.name)])
    except OSError:
        return 0


@dataclass(frozen=True)
class WorkerPlan:
    """How many processes and threads, and where the model runs."""

    workers: int
    threads: int
    intra_op_threads: int
    gpus: int

    @property
    def concurrency(self) -> int:
        """Requests the server admits at once (what Knative's containerConcurrency should be)."""
        return self.workers * self.threads


def worker_bounds(model_config: Mapping[str, Any]) -> dict[str, int | None]:
    """TorchServe's minWorkers/maxWorkers from a model-config, as plan_workers' bounds (an
    unreadable value is no bound; the settings layer warns about it)."""
    def whole(value: Any) -> int | None:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    return {"min_workers": whole(model_config.get("minWorkers")),
            "max_workers": whole(model_config.get("maxWorkers"))}


def plan_workers(requested_workers: int, requested_threads: int, requested_intra: int,
                 batch_size: int, device: str, cores: int, gpus: int,
                 min_workers: int | None = None, max_workers: int | None = None) -> WorkerPlan:
    """Workers: one per GPU; on CPU up to MAX_CPU_WORKERS sized from the quota.

    Threads per worker are at least the batch size (or batches never fill)
    and intra-op threads are sized so that workers × intra-op ≤ cores.
    """
    use_gpu = gpus > 0 and device != "cpu"
    if requested_workers:
        workers = requested_workers
    elif use_gpu:
        workers = gpus
    else:
        workers = min(cores, MAX_CPU_WORKERS)
        if min_workers:
            workers = max(workers, min_workers)
        if max_workers:
            workers = min(workers, max_workers)
    workers = max(1, workers)
    threads = requested_threads or max(batch_size, 8)
    intra = requested_intra or max(1, cores // workers)
    return WorkerPlan(workers, threads, intra, gpus if use_gpu else 0)


def gpu_for_worker(slot: int, gpus: int, device_ids: Any = None) -> int | None:
    """Worker slot i uses GPU i mod n, or model-config.yaml's `deviceIds` in turn (the
    ones this host has); None on CPU."""
    if gpus <= 0:
        return None
    chosen = [int(d) for d in device_ids if 0 <= int(d) < gpus] if isinstance(
        device_ids, list) else []
    return chosen[slot % len(chosen)] if chosen else slot % gpus
