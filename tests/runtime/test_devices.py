"""CPU quota and GPU detection from simulated hosts; the worker plan made from them."""
from __future__ import annotations

from pathlib import Path

from mkserve.runtime.devices import cpu_cores, gpu_count, gpu_for_worker, plan_workers


def test_cgroup_v2_quota_caps_cores(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_cores(tmp_path, affinity=lambda: 8) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_cores(tmp_path, affinity=lambda: 8) == 8


def test_cgroup_v1_quota(tmp_path: Path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cpu_cores(tmp_path, affinity=lambda: 16) == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert cpu_cores(tmp_path, affinity=lambda: 16) == 16


def nodes(tmp_path: Path, n: int) -> Path:
    for i in range(n):
        (tmp_path / f"nvidia{i}").touch()
    (tmp_path / "nvidiactl").touch()
    return tmp_path


def test_no_gpu_host(tmp_path: Path):
    assert gpu_count({}, dev=tmp_path, nvml=lambda: None) == 0


def test_device_nodes_and_nvml(tmp_path: Path):
    dev = nodes(tmp_path, 2)
    assert gpu_count({}, dev=dev, nvml=lambda: None) == 2
    assert gpu_count({}, dev=dev, nvml=lambda: 4) == 4


def test_cuda_visible_devices_wins(tmp_path: Path):
    dev = nodes(tmp_path, 4)
    assert gpu_count({"CUDA_VISIBLE_DEVICES": "1,3"}, dev=dev, nvml=lambda: 4) == 2
    assert gpu_count({"CUDA_VISIBLE_DEVICES": ""}, dev=dev, nvml=lambda: 4) == 0
    assert gpu_count({"CUDA_VISIBLE_DEVICES": "-1"}, dev=dev, nvml=lambda: 4) == 0


def test_nvidia_visible_devices(tmp_path: Path):
    assert gpu_count({"NVIDIA_VISIBLE_DEVICES": "none"}, dev=nodes(tmp_path, 2),
                     nvml=lambda: 2) == 0
    assert gpu_count({"NVIDIA_VISIBLE_DEVICES": "0,1"}, dev=tmp_path, nvml=lambda: 2) == 2
    assert gpu_count({"NVIDIA_VISIBLE_DEVICES": "all"}, dev=tmp_path, nvml=lambda: 3) == 3


def test_plan_cpu_sizes_workers_and_intra_op_threads():
    plan = plan_workers(0, 0, 0, batch_size=32, device="auto", cores=2, gpus=0)
    assert (plan.workers, plan.threads, plan.intra_op_threads, plan.gpus) == (2, 32, 1, 0)
    assert plan.concurrency == 64
    plan = plan_workers(0, 0, 0, batch_size=1, device="auto", cores=16, gpus=0)
    assert plan.workers == 4 and plan.intra_op_threads == 4 and plan.threads == 8


def test_plan_gpu_one_worker_per_gpu_and_round_robin():
    plan = plan_workers(0, 0, 0, batch_size=8, device="auto", cores=8, gpus=3)
    assert plan.workers == 3 and plan.gpus == 3
    assert [gpu_for_worker(i, 3) for i in range(5)] == [0, 1, 2, 0, 1]
    assert gpu_for_worker(0, 0) is None
    assert plan_workers(0, 0, 0, 8, "cpu", 8, 3).gpus == 0


def test_plan_honours_explicit_and_model_config_hints():
    assert plan_workers(3, 4, 2, 8, "auto", 2, 0).workers == 3
    assert plan_workers(0, 0, 0, 8, "auto", 8, 0, min_workers=1, max_workers=1).workers == 1


def test_device_ids_of_the_model_config_choose_the_gpus_in_turn():
    assert [gpu_for_worker(i, 4, [2, 3]) for i in range(4)] == [2, 3, 2, 3]
    # Ids this host lacks are skipped; none usable falls back to every GPU.
    assert [gpu_for_worker(i, 2, [1, 7]) for i in range(2)] == [1, 1]
    assert [gpu_for_worker(i, 2, [9]) for i in range(2)] == [0, 1]
    assert gpu_for_worker(0, 0, [0]) is None
