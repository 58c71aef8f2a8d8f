"""The C heap tuning (runtime/memory.py), observed in fresh processes through glibc itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from glibc_probe import ARENAS
from mkserve.runtime import memory

pytestmark = pytest.mark.skipif(memory._libc is None, reason="needs glibc (the image's libc)")

# Runs in a fresh interpreter: optionally tune, then let threads allocate, and
# report what glibc says: arenas in use, bytes in mmapped blocks, resident memory.
PROBE = ARENAS + textwrap.dedent("""
    import ctypes, json, os, sys, threading
    from mkserve.runtime import memory

    tuned = memory.tune_allocator() if sys.argv[1] == "tune" else []
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = MallInfo2

    def rss_mb():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    # Four threads alive at once, each allocating: glibc would give each its own arena.
    barrier = threading.Barrier(4)
    mmapped = []

    def work():
        before = libc.mallinfo2().hblkhd
        block = libc.malloc(1 << 20)  # 1 MiB: above glibc's initial mmap threshold
        mmapped.append(libc.mallinfo2().hblkhd - before >= 1 << 20)
        barrier.wait()
        libc.free(block)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # 40 MiB allocated then freed by one thread: kept while busy, returned on release.
    blocks = [libc.malloc(1 << 20) for _ in range(40)]
    for b in blocks:
        ctypes.memset(b, 1, 1 << 20)
    held = rss_mb()
    for b in blocks:
        libc.free(b)
    after_free = rss_mb()
    memory.release_memory()
    print(json.dumps({"tuned": tuned, "arenas": arenas(), "mmapped": any(mmapped),
                      "held": held, "after_free": after_free, "released": rss_mb()}))
""")


def probe(mode: str, env: dict[str, str] | None = None) -> dict:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run_env.pop("GLIBC_TUNABLES", None)
    run_env.update(env or {})
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=False,
                         capture_output=True, text=True, env=run_env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_tuned_threads_share_one_heap_and_keep_large_blocks_in_it():
    plain, tuned = probe("plain"), probe("tune")
    assert plain["tuned"] == []
    assert tuned["tuned"] == ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_",
                              "MALLOC_TRIM_THRESHOLD_"]
    # glibc untuned: an arena per concurrent thread, 1 MiB blocks as fresh mmaps
    assert plain["arenas"] > 1 and plain["mmapped"]
    # tuned: one arena, and the block comes from the heap (no mapping to fault in again)
    assert tuned["arenas"] == 1 and not tuned["mmapped"]


def test_tuned_heap_keeps_freed_memory_until_released():
    result = probe("tune")
    assert result["held"] - result["released"] > 30  # MB: release_memory gave it back
    assert result["after_free"] - result["released"] > 30  # free() alone kept it mapped


def test_operator_settings_win():
    env = {"MALLOC_ARENA_MAX": "4"}
    result = probe("tune", env)
    assert result["tuned"] == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
    assert result["arenas"] > 1
    assert memory.tune_allocator({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == []
    assert memory.tune_allocator({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}) == []
