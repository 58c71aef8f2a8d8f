"""The model in one worker: load it, batch requests into it, map results and faults per row."""
from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from . import __version__
from .batcher import Batcher, Group, Job, Outcome
from .codec import encode_parts
from .errors import (
    BadRequest,
    DeadlineExceeded,
    HandlerFailed,
    OutOfMemory,
    Overloaded,
    PayloadTooLarge,
    PredictionFailed,
    ServiceUnavailable,
    ServingError,
)
from .memory import release_memory
from .precision import autocast
from .seams import MetricsSink
from .settings import RuntimeSettings
from .source import ModelSource

log = logging.getLogger("mkserve.service")

LOADING, READY, FAILED, DRAINING = "loading", "ready", "failed", "draining"
INPUT_ERRORS = (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError)
# torch reports shape and dtype mismatches as RuntimeError; these are the input's fault.
SHAPE_ERROR = re.compile(r"shape|size of tensor|sizes of tensors|must match|mat1 and mat2|"
                         r"stack expects|expected .*(dim|dtype|scalar type|size)|dimension",
                         re.IGNORECASE)
PATH_RE = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*")


def _scrub(text: str) -> str:
    """Error bodies never carry file-system paths (they go to the log only)."""
    return PATH_RE.sub("<path>", text)[:1000]


def classify(exc: BaseException) -> ServingError:
    """Map a handler exception to the status the client sees."""
    name = type(exc).__name__
    raw = str(exc)
    if "Traceback of TorchScript" in raw:
        # The interpreter wraps the real error; its last line says what went wrong.
        lines = [line.strip() for line in raw.splitlines() if line.strip()]
        raw = lines[-1] if lines else raw
        if ": " in raw and raw.split(": ", 1)[0].isidentifier():
            name, raw = raw.split(": ", 1)
    text = _scrub(raw)
    code = getattr(exc, "error_code", None)
    if name == "PredictionException" and isinstance(code, int):
        return PredictionFailed(text, status=code if 400 <= code <= 599 else 500)
    if isinstance(exc, MemoryError) or name == "OutOfMemoryError" or "out of memory" in text:
        return OutOfMemory(f"out of memory while running the model: {name}: {text}")
    shape_error = isinstance(exc, RuntimeError) and SHAPE_ERROR.search(text)
    if isinstance(exc, INPUT_ERRORS) or shape_error:
        return BadRequest(f"bad input: {name}: {text}")
    return HandlerFailed(f"handler error: {name}: {text}", status=500)


def set_jit_optimize(setting: str, gpu_id: int | None) -> bool:
    """Turn TorchScript's graph optimisation on or off for the calling thread; the choice.

    `auto` is off on CPU: there torch fuses nothing, and the profiling executor's
    specialised plans cost memory (measured on the transformer example: 42 MB
    per process, for 1-3 % of speed); on with a GPU, where it fuses kernels.
    This is the flag `torch.jit.optimized_execution` sets; torch keeps it per
    thread, so the model thread sets it before it loads and runs the model.
    """
    import torch

    enabled = setting == "on" or (setting == "auto" and gpu_id is not None)
    torch._C._set_graph_executor_optimize(enabled)
    return enabled


class _NullMetrics:
    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class ModelService:
    """One worker's model: handler, Context and batcher.

    Steps: `start()` launches the model thread, which loads the handler
    (state loading → ready, or failed with a reason) and then runs batches;
    `predict()` is called by request threads and blocks until every row has an
    outcome or the deadline passes; `submit()` queues rows without waiting (the
    event-loop worker's way: the Group calls back) and `expire()` answers them
    at their deadline; `drain()` flips readiness and refuses new work;
    `stop(timeout)` finishes what is queued.
    Thread rules: the handler and the Context are touched only by the model
    thread; other threads only queue rows and wait or get called back.
    """

    def __init__(self, source: ModelSource, settings: RuntimeSettings, gpu_id: int | None = None,
                 metrics: MetricsSink | None = None,
                 on_load_failed: Callable[[str], None] | None = None,
                 on_stuck: Callable[[str], None] | None = None, replica_workers: int = 1) -> None:
        self.source = source
        self.replica_workers = replica_workers  # workers of this replica, this one included
        self.settings = settings
        self.model_name = settings.model_name or source.name
        self.model_version = source.version
        self.gpu_id = gpu_id
        self.metrics: MetricsSink = metrics or _NullMetrics()
        self.state = LOADING
        self.reason = "model is loading"
        self._on_load_failed = on_load_failed
        self._on_stuck = on_stuck
        self.on_ready: Callable[[], None] | None = None  # called by the model thread once ready
        self._handle: Callable[[list[Any], Any], Any] | None = None
        self._context: Any = None
        self.batcher = Batcher(self._run_batch, settings.batch_size, settings.queue_size,
                               on_expired=self._expire, on_dropped=self._drop,
                               before_start=self._load,
                               max_delay=settings.max_batch_delay_ms / 1000.0,
                               on_idle=release_memory)

    # -- lifecycle --------------------------------------------------------
    def start(self) -> None:
        self.batcher.start()
        timer = threading.Timer(self.settings.startup_timeout_s, self._startup_expired)
        timer.daemon = True
        timer.start()
        if self._on_stuck is not None:
            threading.Thread(target=self._watch, name="mkserve-watchdog", daemon=True).start()

    def _watch(self) -> None:
        """Replace a worker whose handler is stuck well past the response timeout.

        Its requests were already answered 504 at their deadline; a handler
        that never returns would otherwise hold the worker (and everything
        queued behind it) forever.
        """
        limit = self.settings.response_timeout_s + 5.0
        while self.state != FAILED:
            time.sleep(min(1.0, limit / 4))
            since = self.batcher.running_since
            if since is not None and time.monotonic() - since > limit:
                reason = (f"handler has been running one batch for more than {limit:g}s "
                          "(MKSERVE_RESPONSE_TIMEOUT + 5s); replacing this worker")
                log.critical(reason)
                self.drain()
                self._on_stuck(reason)  # type: ignore[misc]
                return

    def drain(self) -> None:
        if self.state != FAILED:
            self.state = DRAINING
            self.reason = "server is shutting down"

    def stop(self, timeout: float) -> int:
        self.drain()
        dropped = self.batcher.stop(timeout)
        if dropped:
            log.warning("shutdown deadline reached: %d queued requests answered 503", dropped)
        return dropped

    @property
    def ready(self) -> bool:
        return self.state == READY

    def _fail(self, reason: str) -> None:
        if self.state == FAILED:
            return
        self.state = FAILED
        self.reason = f"model failed to load: {reason}"
        log.error(self.reason)
        if self._on_load_failed is not None:
            self._on_load_failed(reason)

    def _startup_expired(self) -> None:
        if self.state == LOADING:
            self._fail(f"loading took longer than MKSERVE_STARTUP_TIMEOUT="
                       f"{self.settings.startup_timeout_s:g}s")

    def _load(self) -> bool:
        started = time.monotonic()
        try:
            from .handlers import load_handler
            from .ts.context import Context
            from .ts.metrics import HandlerMetrics

            self._context = Context(
                self.model_name, str(self.source.model_dir), self.source.manifest,
                self.settings.batch_size, self.gpu_id, __version__,
                metrics=HandlerMetrics(self.metrics.handler_metric, self.model_name),
                model_yaml_config=self.source.model_config)
            self._context.system_properties["precision"] = self.settings.precision
            set_jit_optimize(self.settings.jit_optimize, self.gpu_id)
            self._handle = load_handler(self.source, self._context,
                                        self.settings.service_envelope)
            self._warmup()
            # What loading freed goes back now, not at the first idle second after
            # traffic: an --optimize'd transformer left ~400 MB per worker behind.
            release_memory()
        except BaseException as exc:
            log.exception("handler %r failed to load", self.source.handler)
            self._fail(f"{type(exc).__name__}: {exc}")
            return False
        if self.state != LOADING:
            return False  # the startup timeout fired while we were loading
        elapsed = time.monotonic() - started
        self.metrics.model_loaded(elapsed)
        self.state = READY
        self.reason = "ready"
        log.info("model %s %s ready in %.2fs", self.model_name, self.model_version, elapsed)
        if self.on_ready is not None:
            self.on_ready()
        return True

    def _warmup(self) -> None:
        path = self.settings.warmup_file
        if not path:
            return
        with open(path, "rb") as fh:
            body = json.loads(fh.read())
        rows = body if isinstance(body, list) else [body]
        outcomes = self._execute([Job({"body": r}, {}, "warmup", 0.0, 0.0, Group(1), 0)
                                  for r in rows])
        failed = [o.error for o in outcomes if o.error is not None]
        if failed:
            raise RuntimeError(f"warm-up request from {path} failed: {failed[0]}")

    # -- request side -----------------------------------------------------
    def predict(self, rows: list[Any], headers: dict[str, str], request_id: str,
                ) -> list[Outcome]:
        """Run rows through the model and wait; one Outcome per row, in order."""
        group, jobs, deadline = self.submit(rows, headers, request_id)
        if not group.wait(deadline - time.monotonic()):
            self.expire(jobs)
        return with_parts(group)

    def submit(self, rows: list[Any], headers: dict[str, str], request_id: str,
               on_done: Callable[[Group], None] | None = None,
               deadline: float | None = None) -> tuple[Group, list[Job], float]:
        """Queue rows for the model without waiting: their Group, Jobs and deadline.

        Raises the ServingError to answer when they cannot be queued (not ready,
        too many rows, queue full). The caller either waits on the group or is
        called back by `on_done`, and calls `expire(jobs)` at the deadline: the
        response timeout's, or the caller's own `deadline` (time.monotonic()) when
        sooner (a gRPC deadline); rows still queued then are never run.
        """
        if self.state != READY:
            raise ServiceUnavailable(self.reason, headers={"Retry-After": "1"})
        count = len(rows)
        if count > self.settings.queue_size:
            raise PayloadTooLarge(f"a batch of {count} rows is larger than the queue "
                                  f"({self.settings.queue_size}); send at most that many")
        now = time.monotonic()
        limit = now + self.settings.response_timeout_s
        deadline = limit if deadline is None or deadline > limit else deadline
        group = Group(count, on_done)
        if count == 1:
            jobs = [Job(rows[0], headers, request_id, now, deadline, group, 0)]
        else:
            jobs = [Job(row, headers, f"{request_id}-{i}", now, deadline, group, i)
                    for i, row in enumerate(rows)]
        if not self.batcher.submit(jobs, count):
            self.metrics.shed()
            if self.state != READY:
                raise ServiceUnavailable(self.reason, headers={"Retry-After": "1"})
            raise Overloaded(f"queue is full ({self.settings.queue_size} rows waiting); "
                             "retry later or add replicas",
                             status=self.settings.shed_status, headers={"Retry-After": "1"})
        return group, jobs, deadline

    def expire(self, jobs: list[Job]) -> None:
        """Answer the rows still without an outcome at their deadline with a 504."""
        late = DeadlineExceeded(f"no answer within the response timeout "
                                f"({self.settings.response_timeout_s:g}s)")
        for job in jobs:
            job.resolve(Outcome(error=late))

    # -- model thread -----------------------------------------------------
    def _expire(self, job: Job) -> None:
        job.resolve(Outcome(error=DeadlineExceeded(
            f"request waited past its deadline ({self.settings.response_timeout_s:g}s) "
            "and was not run")))

    def _drop(self, job: Job) -> None:
        job.resolve(Outcome(error=ServiceUnavailable(
            "server shut down before this request ran", headers={"Retry-After": "1"})))

    def _run_batch(self, jobs: list[Job]) -> None:
        started = time.monotonic()
        self.metrics.batch(len(jobs), [(started - j.enqueued) * 1000.0 for j in jobs])
        outcomes = self._execute(jobs)
        self.metrics.inference(len(jobs), (time.monotonic() - started) * 1000.0,
                               self.batcher.depth)
        for job, outcome in zip(jobs, outcomes, strict=False):
            job.resolve(outcome)
        if self.gpu_id is not None:
            self._report_gpu_memory()

    def _report_gpu_memory(self) -> None:
        import torch

        self.metrics.gpu_memory_used(torch.cuda.memory_allocated(self.gpu_id))

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.settings.precision, "cuda" if self.gpu_id is not None else "cpu")

    def _execute(self, jobs: list[Job]) -> list[Outcome]:
        from .ts.context import RequestProcessor

        infos = [RequestProcessor(j.request_id, j.headers) for j in jobs]
        context = self._context
        context._begin_batch(infos)

        def send_intermediate(ret: list[Any], req_id_map: Any, message: str, code: int) -> None:
            # ret[i] belongs to the batch's i-th request, as context.request_ids numbers them.
            for job, info, value in zip(jobs, infos, ret, strict=False):
                job.group.stream(job.index, value, info.content_type)

        context._send_intermediate = send_intermediate
        try:
            try:
                with self._autocast():
                    result = self._handle([j.row for j in jobs], context)  # type: ignore[misc]
            finally:
                context._send_intermediate = None
        except Exception as exc:
            error = classify(exc)
            if len(jobs) > 1 and not isinstance(error, OutOfMemory):
                # Find the row(s) at fault so that their neighbours still get answers.
                return [self._execute([job])[0] for job in jobs]
            if error.status >= 500:
                log.error("handler failed on request %s: %s", jobs[0].request_id, error.message,
                          exc_info=exc)
            else:
                log.info("request %s rejected: %s", jobs[0].request_id, error.message)
            self.metrics.handler_error(error.status)
            return [Outcome(error=error) for _ in jobs]
        if not isinstance(result, list) or len(result) != len(jobs):
            got = (f"a list of {len(result)}" if isinstance(result, list)
                   else type(result).__name__)
            error = HandlerFailed(f"handler returned {got} for a batch of {len(jobs)}; it must "
                                  "return a list with one result per request", status=500)
            log.error(error.message)
            return [Outcome(error=error) for _ in jobs]
        return [Outcome(value, info.status, info.content_type, info.response_headers or None)
                for value, info in zip(result, infos, strict=False)]


def with_parts(group: Group) -> list[Outcome]:
    """The group's outcomes, a streamed single row's parts folded into its answer."""
    outcomes: list[Outcome] = group.outcomes  # type: ignore[assignment]
    parts = group.take_parts()
    if parts and len(outcomes) == 1 and outcomes[0].error is None:
        only = outcomes[0]
        body, content_type = encode_parts(parts, only.value, only.content_type)
        outcomes = [Outcome(body, only.status, content_type, only.headers)]
    return outcomes
