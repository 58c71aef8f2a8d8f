"""The C heap of a serving process: steady while busy, handed back when idle.

A worker runs its model in a thread of its own. glibc's malloc gives such a
thread an arena of its own, made of 64 MiB heaps that are unmapped the moment
they empty, and it serves blocks above a threshold that it adjusts as it goes
with fresh mmaps. A model that allocates and frees the same activations batch
after batch (8 MiB for the transformer example's feed-forward layer at batch
16) can fall into a cycle where every batch maps new pages and faults each one
in: measured on that example, up to 230 page faults per request in one worker
or the other, about 7 % more CPU per request than the same handler run in a
main thread, which settles and faults no more.

`tune_allocator()` makes the whole process behave like that settled main
thread, from the start: one arena (the model thread's allocations come from
the main heap, whose top is trimmed with a threshold), blocks up to 32 MiB
served from the heap, and the heap trimmed only when more than 64 MiB at its
top is free. The working set of a busy worker then stays mapped; the model
thread returns what is free once idle (`release_memory`). A setting the
operator made through the environment (`MALLOC_ARENA_MAX`,
`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES`) is left
alone, and so is any C library other than glibc, or an allocator preloaded in
its place (jemalloc, tcmalloc: glibc's knobs then govern nothing).
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from typing import Any

# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling for the dynamic threshold on 64-bit
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc pairs with it

# (mallopt parameter, value, environment variable that overrides it)
TUNING = (
    (M_ARENA_MAX, 1, "MALLOC_ARENA_MAX"),
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
    (M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"),
)


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        return libc
    except (OSError, AttributeError):
        return None


_libc = _glibc()


def tune_allocator(env: Mapping[str, str] | None = None) -> list[str]:
    """Apply TUNING with mallopt; the names of the parameters set.

    Call it before the process starts threads (an arena, once a thread has
    it, stays). Does nothing on a C library other than glibc, for parameters
    the environment sets, or when GLIBC_TUNABLES sets any malloc tunable.
    """
    env = os.environ if env is None else env
    if _libc is None or "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        return []
    if "LD_PRELOAD" in env and any(name in env["LD_PRELOAD"] for name in ("jemalloc", "tcmalloc",
                                                                          "mimalloc")):
        return []
    done = []
    for param, value, variable in TUNING:
        if variable not in env and _libc.mallopt(param, value) == 1:
            done.append(variable)
    return done


def release_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc's malloc_trim, under a ms).

    After a burst, torch's freed activations stay in the heap (with
    `tune_allocator`, up to 64 MiB of free top and every free block inside).
    Called by the model thread once the model has loaded, and once it has been
    idle for a second, so a replica at rest holds what it uses, and a busy one
    never pays for it.
    """
    if _libc is not None:
        _libc.malloc_trim(0)
