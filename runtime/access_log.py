"""The access log's writer in a worker: request threads append, one thread writes."""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from .logs import JsonFormatter


class AccessLogWriter(logging.Handler):
    """The access log's handler in a worker: request threads append, one thread writes.

    Written from the request threads, each JSON line was formatted and written
    under the log handler's lock, so under load the threads queued up behind
    each other's write(2). Here a request thread only appends to a deque, and
    through `line()` (what the app calls) not even a LogRecord is made there.
    Every `interval` seconds the writer thread makes the records, formats them
    with the configured handlers' formatters and writes each stream's lines in
    one write: the same lines as before, up to `interval` later. It wakes on a
    timer, not per line: a wake-up per request would cost a context switch per
    request. `close()` writes what is left.
    """

    def __init__(self, logger: logging.Logger, handlers: list[logging.Handler],
                 interval: float = 0.05) -> None:
        super().__init__()
        self._logger = logger
        self._pending: collections.deque[Any] = collections.deque()
        self._handlers = handlers
        self._interval = interval
        self._closing = threading.Event()
        # Access lines skip the LogRecord when every handler writes JSON to a stream as is.
        self._fast = bool(handlers) and all(
            type(h) is logging.StreamHandler and h.level <= logging.INFO
            and self._json_line(h, (0, "", (), {})) is not None for h in handlers)
        self._thread = threading.Thread(target=self._run, name="mkserve-access-log",
                                        daemon=True)
        self._thread.start()

    def line(self, msg: str, args: tuple[Any, ...], extra: dict[str, Any]) -> None:
        """An INFO record of the access logger, made and written later by the writer."""
        self._pending.append((time.time_ns(), msg, args, extra))

    def handle(self, record: logging.LogRecord) -> bool:
        self._pending.append(record)  # atomic: no lock, no formatting here
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self._pending.append(record)

    def _run(self) -> None:
        while not self._closing.wait(self._interval):
            self._write()
        self._write()

    def _json_line(self, handler: logging.Handler, item: Any) -> str | None:
        """An access line formatted straight from its fields, or None where only a real
        LogRecord gives the same line (another formatter, filters, a handler above INFO)."""
        formatter = handler.formatter
        if (type(item) is not tuple or type(formatter) is not JsonFormatter
                or handler.filters or self._logger.filters):
            return None
        created_ns, msg, args, extra = item
        return formatter.line(created_ns / 1e9, "info", self._logger.name, msg % args,
                              extra) + handler.terminator  # type: ignore[attr-defined]

    def _record(self, item: Any) -> logging.LogRecord | None:
        if isinstance(item, logging.LogRecord):
            return item
        created_ns, msg, args, extra = item
        record = self._logger.makeRecord(self._logger.name, logging.INFO, "", 0, msg, args,
                                         None, extra=extra)
        record.created = created_ns / 1e9  # when the request was answered, not written
        record.msecs = (created_ns // 1_000_000) % 1000 + 0.0
        return record if self._logger.filter(record) else None

    def _write(self) -> None:
        pending = self._pending
        # Stream handlers (only those take the fast path and batched writes).
        batches: dict[Any, list[str]] = {}
        while pending:
            item = pending.popleft()
            if type(item) is tuple and self._fast:
                for handler in self._handlers:  # _fast: every handler formats every line
                    line = self._json_line(handler, item)
                    batches.setdefault(handler, []).append(line)  # type: ignore[arg-type]
                continue
            record = self._record(item)
            if record is None:
                continue
            for handler in self._handlers:
                if record.levelno < handler.level:
                    continue
                if type(handler) is logging.StreamHandler:  # format now, write together
                    if handler.filter(record):
                        try:
                            text = handler.format(record) + handler.terminator
                        except Exception:  # noqa: BLE001 - as StreamHandler.emit does
                            handler.handleError(record)
                            continue
                        batches.setdefault(handler, []).append(text)
                else:
                    handler.handle(record)
        for handler, lines in batches.items():
            handler.acquire()
            try:
                handler.stream.write("".join(lines))
                handler.flush()
            except Exception:  # noqa: BLE001 - a closed stream must not kill the writer
                handler.handleError(logging.makeLogRecord({"msg": "writing access lines"}))
            finally:
                handler.release()

    def close(self) -> None:
        self._closing.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)
        super().close()


def write_access_log_in_background() -> AccessLogWriter:
    """Route `mkserve.access` through an AccessLogWriter over the root logger's handlers."""
    access = logging.getLogger("mkserve.access")
    writer = AccessLogWriter(access, list(logging.getLogger().handlers))
    access.addHandler(writer)
    access.propagate = False
    return writer
