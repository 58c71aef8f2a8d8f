"""Batcher policy: no waiting when idle, accumulation while busy, shedding, deadlines, stop."""
from __future__ import annotations

import threading
import time

from mkserve.runtime.batcher import Batcher, Group, Job, Outcome


def make_jobs(n: int, deadline: float = float("inf")) -> tuple[Group, list[Job]]:
    group = Group(n)
    now = time.monotonic()
    return group, [Job(i, {}, f"r{i}", now, deadline, group, i) for i in range(n)]


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, jobs: list[Job]) -> None:
        self.gate.wait()
        self.batches.append([j.row for j in jobs])
        time.sleep(self.delay)
        for job in jobs:
            job.resolve(Outcome(value=job.row * 10))


def expired(job: Job) -> None:
    job.resolve(Outcome(error=TimeoutError("late")))


def dropped(job: Job) -> None:
    job.resolve(Outcome(error=RuntimeError("dropped")))


def test_lone_request_runs_at_once_without_waiting_for_company():
    run = Recorder()
    batcher = Batcher(run, batch_size=32, queue_size=100, on_expired=expired, on_dropped=dropped)
    batcher.start()
    group, jobs = make_jobs(1)
    started = time.monotonic()
    assert batcher.submit(jobs, 1)
    assert group.event.wait(2)
    assert time.monotonic() - started < 0.05
    assert group.outcomes[0].value == 0
    batcher.stop(1)


def test_arrivals_accumulate_while_busy_and_respect_batch_size():
    run = Recorder()
    run.gate.clear()  # hold the first batch so that the rest queue up behind it
    batcher = Batcher(run, batch_size=4, queue_size=100, on_expired=expired, on_dropped=dropped)
    batcher.start()
    groups = []
    for _ in range(9):
        group, jobs = make_jobs(1)
        groups.append(group)
        assert batcher.submit(jobs, 1)
        time.sleep(0.01)
    run.gate.set()
    for group in groups:
        assert group.event.wait(2)
    sizes = [len(b) for b in run.batches]
    assert sum(sizes) == 9 and max(sizes) == 4 and sizes[0] == 1
    assert sizes[1] == 4  # everything that arrived while the first ran, up to batch size
    batcher.stop(1)


def test_client_batch_larger_than_batch_size_is_split_and_kept_in_order():
    run = Recorder()
    batcher = Batcher(run, batch_size=3, queue_size=100, on_expired=expired, on_dropped=dropped)
    batcher.start()
    group, jobs = make_jobs(10)
    assert batcher.submit(jobs, 10)
    assert group.event.wait(2)
    assert [o.value for o in group.outcomes] == [i * 10 for i in range(10)]
    assert all(len(b) <= 3 for b in run.batches)
    batcher.stop(1)


def test_full_queue_refuses_immediately_without_blocking():
    run = Recorder()
    run.gate.clear()
    batcher = Batcher(run, batch_size=1, queue_size=2, on_expired=expired, on_dropped=dropped)
    batcher.start()
    _first, jobs = make_jobs(1)
    batcher.submit(jobs, 1)
    time.sleep(0.05)  # the first is now running (held at the gate)
    assert batcher.submit(make_jobs(2)[1], 2)
    started = time.monotonic()
    assert not batcher.submit(make_jobs(1)[1], 1)
    assert time.monotonic() - started < 0.05
    run.gate.set()
    batcher.stop(1)


def test_expired_rows_are_answered_and_never_run():
    run = Recorder()
    run.gate.clear()
    batcher = Batcher(run, batch_size=8, queue_size=100, on_expired=expired, on_dropped=dropped)
    batcher.start()
    _, blocker = make_jobs(1)
    batcher.submit(blocker, 1)
    time.sleep(0.05)
    late_group, late = make_jobs(1, deadline=time.monotonic() + 0.01)
    batcher.submit(late, 1)
    time.sleep(0.05)
    run.gate.set()
    assert late_group.event.wait(2)
    assert isinstance(late_group.outcomes[0].error, TimeoutError)
    assert all(0 not in b or len(b) == 1 for b in run.batches[1:])
    assert len(run.batches) == 1
    batcher.stop(1)


def test_stop_finishes_queued_rows_then_drops_the_rest_at_the_deadline():
    run = Recorder(delay=0.2)
    batcher = Batcher(run, batch_size=1, queue_size=100, on_expired=expired, on_dropped=dropped)
    batcher.start()
    groups = []
    for _ in range(5):
        group, jobs = make_jobs(1)
        groups.append(group)
        batcher.submit(jobs, 1)
    dropped_count = batcher.stop(0.3)
    assert dropped_count >= 1
    for group in groups:
        assert group.event.wait(2)
    errors = [g.outcomes[0].error for g in groups]
    assert errors[0] is None
    assert isinstance(errors[-1], RuntimeError)
    assert not batcher.submit(make_jobs(1)[1], 1)


def test_before_start_failure_stops_the_model_thread():
    batcher = Batcher(Recorder(), batch_size=1, queue_size=10, on_expired=expired,
                      on_dropped=dropped, before_start=lambda: False)
    batcher.start()
    batcher._thread.join(1)
    assert not batcher._thread.is_alive()


class Timed(Recorder):
    """A Recorder that notes when each batch started."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.starts: list[float] = []

    def __call__(self, jobs: list[Job]) -> None:
        self.gate.wait()
        self.starts.append(time.monotonic())
        super().__call__(jobs)


def _compute_bound(max_delay: float) -> tuple[Timed, Batcher]:
    """A started batcher of 8 in front of a compute-bound model: 0.4 s per batch."""
    run = Timed(delay=0.4)
    batcher = Batcher(run, batch_size=8, queue_size=100, on_expired=expired, on_dropped=dropped,
                      max_delay=max_delay)
    batcher.start()
    return run, batcher


def _wave(batcher: Batcher, run: Recorder, k: int) -> None:
    """Make the batcher answer one batch of k requests (a busy moment)."""
    run.gate.clear()
    first, jobs = make_jobs(1)
    batcher.submit(jobs, 1)
    time.sleep(0.05)  # running alone, held at the gate
    groups = []
    for _ in range(k):
        group, jobs = make_jobs(1)
        groups.append(group)
        batcher.submit(jobs, 1)
    run.gate.set()
    for group in [first, *groups]:
        assert group.wait(5)
    assert [len(b) for b in run.batches[-2:]] == [1, k]


def _one(batcher: Batcher, run: Timed) -> float:
    """Submit one request; seconds until its batch started."""
    group, jobs = make_jobs(1)
    submitted = time.monotonic()
    batcher.submit(jobs, 1)
    assert group.wait(5)
    return run.starts[-1] - submitted


def test_after_a_busy_batch_the_next_waits_for_its_clients_to_come_back():
    run, batcher = _compute_bound(max_delay=1.0)
    _wave(batcher, run, 4)
    groups = []
    started = time.monotonic()
    for _ in range(4):  # the four clients return one by one
        group, jobs = make_jobs(1)
        groups.append(group)
        batcher.submit(jobs, 1)
        time.sleep(0.03)
    for group in groups:
        assert group.wait(5)
    assert len(run.batches[-1]) == 4  # one batch, not 1 + 3
    assert run.starts[-1] - started < 0.17  # it ran when the fourth came, not at 0.2 s
    batcher.stop(1)


def test_company_is_waited_for_at_most_max_delay_and_half_a_batch():
    run, batcher = _compute_bound(max_delay=0.1)
    _wave(batcher, run, 4)
    assert 0.09 <= _one(batcher, run) < 0.18  # only one of the four came back: max_delay
    batcher.max_delay = 1.0
    _wave(batcher, run, 4)
    assert 0.19 <= _one(batcher, run) < 0.3  # half of the 0.4 s the last batch took
    batcher.stop(1)


def test_a_lone_client_an_idle_model_or_a_fast_one_never_waits_for_company():
    run, batcher = _compute_bound(max_delay=1.0)
    for _ in range(2):  # a lone client: each batch holds one request
        assert _one(batcher, run) < 0.05
    _wave(batcher, run, 4)
    time.sleep(0.25)  # idle for longer than half a batch: the wave is over
    assert _one(batcher, run) < 0.05
    run.delay = 0.0  # a model that answers at once is not worth waiting for
    _wave(batcher, run, 4)
    assert _one(batcher, run) < 0.05
    batcher.stop(1)


def test_on_idle_runs_once_per_idle_spell_after_work_and_never_while_busy():
    calls: list[float] = []
    run = Recorder()
    batcher = Batcher(run, batch_size=4, queue_size=100, on_expired=expired, on_dropped=dropped,
                      on_idle=lambda: calls.append(time.monotonic()), idle_after=0.5)
    batcher.start()
    time.sleep(0.8)
    assert calls == []  # no work yet: nothing to give back
    # Requests closer together than idle_after (with room for a loaded machine's
    # scheduling): no call in between.
    for _ in range(5):
        group, jobs = make_jobs(1)
        assert batcher.submit(jobs, 1) and group.wait(2)
        time.sleep(0.02)
    assert calls == []
    last = time.monotonic()
    time.sleep(1.5)
    assert len(calls) == 1 and calls[0] - last >= 0.45  # once, after idling, not again
    group, jobs = make_jobs(1)
    assert batcher.submit(jobs, 1) and group.wait(2)
    time.sleep(1.5)
    assert len(calls) == 2
    batcher.stop(1)

