"""Spreading connections across workers through a table of connections per worker.

All workers wait on the one listening socket and the kernel wakes whichever it
likes (measured here: one of two workers took 48 to 63 of 64 connections while
the other idled, leaving a core unused). Each worker publishes how many
connections it holds in a table the master shares with all of them (one slot
per worker, NOT_READY while its model loads, it drains, or it has not started);
a worker holding more than the least loaded ready one leaves the next
connection to it for a moment (the server pauses accepting), then takes one
anyway, so a busy or stuck peer never keeps a connection waiting long. A
worker whose model is still loading accepts nothing while another is ready: it
could only answer 503.
"""
from __future__ import annotations

import array
import mmap
from collections.abc import Callable

# A slot's value while its worker should get no connections.
NOT_READY = 1 << 30


def connection_table(workers: int) -> memoryview:
    """A table of `workers` counts in anonymous shared memory: made before any fork."""
    size = max(1, workers)
    table = memoryview(mmap.mmap(-1, 4 * size)).cast("i")
    table[:] = array.array("i", [NOT_READY] * size)
    return table


class Balancer:
    """One worker's view of the table: what it publishes, whether to leave a connection.

    Without a table (one worker) it never leaves one. `forced` is set by the
    server when a pause has passed: the next connection is taken whatever the
    table says.
    """

    __slots__ = ("forced", "ready", "slot", "table")

    def __init__(self, table: memoryview | None, slot: int, ready: Callable[[], bool]) -> None:
        self.table = table
        self.slot = slot
        self.ready = ready
        self.forced = False

    def publish(self, connections: int) -> None:
        if self.table is not None:
            self.table[self.slot] = connections if self.ready() else NOT_READY

    def crowded(self, connections: int) -> bool:
        """True if the next connection should be left to another worker: one that is ready
        while this one is not, or a ready one holding fewer connections (unless forced)."""
        table = self.table
        if table is None:
            return False
        slot = self.slot
        if not self.ready():
            return any(count < NOT_READY for i, count in enumerate(table) if i != slot)
        if self.forced:
            return False
        return any(count < connections for i, count in enumerate(table) if i != slot)
