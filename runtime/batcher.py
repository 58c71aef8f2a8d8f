"""A thread-based micro-batcher: other threads submit rows, one model thread runs batches."""
from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import ServingError


@dataclass(slots=True, eq=False)  # identity, as before: rows are tracked, not compared
class Outcome:
    """What a row came back with: a value and response details, or an error."""

    value: Any = None
    status: int = 200
    content_type: str | None = None
    headers: dict[str, str] | None = None
    error: ServingError | None = None


class Group:
    """The rows of one HTTP request, done once every row has an outcome.

    Two ways to learn that: `wait()`, for a thread that blocks on it (a plain
    lock that the last resolution releases: one futex wake per request, where
    an Event costs a Condition, a fresh waiter lock and a notify_all), or
    `on_done`, called once by whichever thread resolves the last row (the
    event-loop worker's way: it queues the answer for its loop thread).

    Streaming: a handler's intermediate results (send_intermediate_predict_response)
    are appended to `parts` by `stream()` until the row resolves, and `on_part`,
    if set, is called after each; the loop sends them as they come, or the final
    answer carries them in front of the last value.
    """

    __slots__ = ("_done", "_lock", "on_done", "on_part", "outcomes", "parts", "remaining")

    def __init__(self, size: int, on_done: Callable[[Group], None] | None = None) -> None:
        self.outcomes: list[Outcome | None] = [None] * size
        self.remaining = size
        self.on_done = on_done
        self.on_part: Callable[[Group], None] | None = None
        self.parts: collections.deque[tuple[Any, str | None]] | None = None
        self._lock = threading.Lock()
        self._done = threading.Lock()
        self._done.acquire()  # released by the last resolve()

    def resolve(self, index: int, outcome: Outcome) -> None:
        with self._lock:
            if self.outcomes[index] is not None:
                return  # a row resolves once (a late result after a timeout is dropped)
            self.outcomes[index] = outcome
            self.remaining -= 1
            done = self.remaining == 0
        if done:
            self._done.release()
            if self.on_done is not None:
                self.on_done(self)

    def stream(self, index: int, value: Any, content_type: str | None = None) -> None:
        """One intermediate result for row `index` (dropped once the row has resolved)."""
        with self._lock:
            if self.outcomes[index] is not None:
                return
            if self.parts is None:
                self.parts = collections.deque()
            self.parts.append((value, content_type))
        on_part = self.on_part
        if on_part is not None:
            on_part(self)

    def take_parts(self) -> list[tuple[Any, str | None]]:
        """The intermediate results not taken yet, oldest first."""
        with self._lock:
            parts = self.parts
            if not parts:
                return []
            self.parts = collections.deque()
        return list(parts)

    def wait(self, timeout: float) -> bool:
        """True once every row has an outcome; False if `timeout` seconds pass first."""
        if self.remaining == 0:
            return True
        if self._done.acquire(timeout=max(0.0, timeout)):
            self._done.release()  # and it stays done for any later wait
            return True
        return False

    @property
    def event(self) -> Group:
        """Event-style spelling, `group.event.wait(timeout)`."""
        return self


@dataclass(slots=True, eq=False)  # identity, as before: rows are tracked, not compared
class Job:
    """One row waiting for the model."""

    row: Any
    headers: dict[str, str]
    request_id: str
    enqueued: float
    deadline: float
    group: Group
    index: int

    def resolve(self, outcome: Outcome) -> None:
        self.group.resolve(self.index, outcome)


class Batcher:
    """Collects rows from other threads (the event loop, request threads) into batches
    for one model thread.

    Lifecycle: `start()` launches the model thread, which first runs
    `before_start` (the model load, so that CUDA is initialised in the thread
    that uses it), then serves batches; `submit(jobs)` is called by request
    threads and never blocks; `stop(timeout)` lets queued rows finish and
    answers what is still queued at the deadline with `on_dropped`.

    Policy: when the model thread is idle, whatever is queued runs at once (a
    lone request never waits for company). While a batch runs, arrivals
    accumulate; the next batch takes up to `batch_size` of them. One refinement
    for busy servers: right after a batch of k > 1 requests, those k clients are
    on their way back, so the next batch waits for up to k rows, for at most
    `max_delay` after its first row arrived (see _wait_for_company). Rows past
    their deadline are answered by `on_expired` and never reach the model.
    Once the model has been idle for `idle_after` seconds after some work, the
    model thread calls `on_idle` (once per idle spell; the worker returns freed
    memory to the OS there).
    """

    def __init__(self, run_batch: Callable[[list[Job]], None], batch_size: int, queue_size: int,
                 on_expired: Callable[[Job], None], on_dropped: Callable[[Job], None],
                 before_start: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic, max_delay: float = 0.0,
                 on_idle: Callable[[], None] | None = None, idle_after: float = 1.0) -> None:
        self._run_batch = run_batch
        self._on_idle = on_idle
        self.idle_after = idle_after
        self._worked = False  # a batch ran since on_idle was last called
        self.max_delay = max_delay
        self.batch_size = batch_size
        self.queue_size = queue_size
        self._on_expired = on_expired
        self._on_dropped = on_dropped
        self._before_start = before_start
        self._clock = clock
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.busy = False
        self.running_since: float | None = None  # when the running batch started
        self._want = 1  # queued rows at which submit() wakes the model thread
        self._returning = 0  # requests the last batch answered
        self._finished = float("-inf")  # when the last batch finished
        self._ran_for = 0.0  # how long the last batch ran

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="mkserve-model", daemon=True)
        self._thread.start()

    def submit(self, jobs: Iterable[Job], count: int) -> bool:
        """Queue all of a request's rows, or none if they do not fit (caller sheds)."""
        with self._cond:
            if self._stopping or len(self._queue) + count > self.queue_size:
                return False
            self._queue.extend(jobs)
            if not self.busy and len(self._queue) >= self._want:
                self._cond.notify()
        return True

    def stop(self, timeout: float) -> int:
        """Finish queued rows within `timeout`; drop (answer) the rest. Returns rows dropped."""
        deadline = self._clock() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - self._clock()))
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
        for job in left:
            self._on_dropped(job)
        return len(left)

    def _main(self) -> None:
        if self._before_start is not None and not self._before_start():
            return
        while True:
            with self._cond:
                self.busy = False
                while not self._queue and not self._stopping:
                    if self._worked and self._on_idle is not None:
                        if not self._cond.wait(self.idle_after) and not self._queue:
                            self._worked = False
                            self._on_idle()
                    else:
                        self._cond.wait()
                if not self._queue:
                    return
                self._wait_for_company()
                self.busy = True
                batch, expired = self._take()
            for job in expired:
                self._on_expired(job)
            if batch:
                started = self.running_since = self._clock()
                try:
                    self._run_batch(batch)
                finally:
                    self.running_since = None
                self._worked = True
                self._returning = sum(1 for job in batch if job.index == 0)
                self._finished = self._clock()
                self._ran_for = self._finished - started

    def _wait_for_company(self) -> None:
        """After a batch of k > 1 requests, wait a little until k rows are queued.

        Those k clients were just answered and are on their way back; without
        this the first of them finds the model idle and runs alone, the next
        ones queue behind it, and a busy server runs batches of a few rows
        (on a compute-bound model, the same work in more, slower passes). The
        wait is at most max_delay and at most half the last batch's run time,
        so it only buys batching where a batch is worth waiting for, and a
        request that merely follows a burst loses little. A lone client (last
        batch of one request) or a model idle for longer than that never
        waits. Called with the lock held.
        """
        want = min(self._returning, self.batch_size)
        if want <= 1 or self.max_delay <= 0 or self._stopping:
            return
        first = self._queue[0].enqueued
        window = min(self.max_delay, self._ran_for / 2)
        if first - self._finished > window:
            return  # the model sat idle: this request is not part of the last wave
        deadline = first + window
        self._want = want
        try:
            while len(self._queue) < want and not self._stopping:
                left = deadline - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
        finally:
            self._want = 1

    def _take(self) -> tuple[list[Job], list[Job]]:
        now = self._clock()
        queue = self._queue
        batch: list[Job] = []
        expired: list[Job] = []
        while queue and len(batch) < self.batch_size:
            job = queue.popleft()
            (expired if job.deadline <= now else batch).append(job)
        return batch, expired
