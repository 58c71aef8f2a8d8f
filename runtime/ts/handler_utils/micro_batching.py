"""`ts.handler_utils.micro_batching.MicroBatching`: one batch as pipelined micro-batches.

A handler sets `self.handle = MicroBatching(self)` in `initialize`; each batch
is then cut into micro-batches of `micro_batch_size` rows that flow through
the handler's preprocess → inference → postprocess, each step with its own
threads (`parallelism`), so that one micro-batch's preprocessing overlaps the
previous one's inference. The answers come back in request order.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

HANDLER_METHODS = ("preprocess", "inference", "postprocess")


class MicroBatching:
    def __init__(self, parent_handler: Any, micro_batch_size: int = 1,
                 parallelism: dict[str, int] | None = None) -> None:
        self.handler = parent_handler
        self.micro_batch_size = micro_batch_size
        self._local = threading.local()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._parallelism: dict[str, int] = {}
        self.parallelism = parallelism or dict.fromkeys(HANDLER_METHODS, 1)

    @property
    def parallelism(self) -> dict[str, int]:
        return dict(self._parallelism)

    @parallelism.setter
    def parallelism(self, parallelism: dict[str, int]) -> None:
        unknown = set(parallelism) - set(HANDLER_METHODS)
        if unknown:
            raise ValueError(f"parallelism: unknown steps {sorted(unknown)}; expected "
                             f"{', '.join(HANDLER_METHODS)}")
        self.shutdown()
        self._parallelism = {step: max(1, int(parallelism.get(step, 1)))
                             for step in HANDLER_METHODS}
        self._pools = {step: ThreadPoolExecutor(count, thread_name_prefix=f"mb-{step}")
                       for step, count in self._parallelism.items()}

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True)
        self._pools = {}

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass

    def get_micro_batch_idx(self) -> int:
        """Which micro-batch of the current batch this thread is working on."""
        return int(getattr(self._local, "idx", 0))

    def _step(self, step: str, idx: int, previous: Future[Any] | None, value: Any) -> Any:
        self._local.idx = idx
        data = previous.result() if previous is not None else value
        return getattr(self.handler, step)(data)

    def handle(self, data: list[Any]) -> list[Any]:
        size = max(1, int(self.micro_batch_size))
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        futures: list[Future[Any]] = []
        for idx, chunk in enumerate(chunks):
            future: Future[Any] | None = None
            for step in HANDLER_METHODS:
                future = self._pools[step].submit(self._step, step, idx, future, chunk)
            assert future is not None
            futures.append(future)
        output: list[Any] = []
        for future, chunk in zip(futures, chunks, strict=True):
            part = list(future.result())
            if len(part) != len(chunk):
                raise ValueError(f"postprocess returned {len(part)} answers for a micro-batch "
                                 f"of {len(chunk)} requests")
            output.extend(part)
        return output

    def __call__(self, data: list[Any], context: Any) -> list[Any]:
        self.handler.context = context
        return self.handle(data)
