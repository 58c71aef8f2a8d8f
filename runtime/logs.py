"""Logging: JSON lines (one object per line) for machines, plain text for terminals."""
from __future__ import annotations

import json
import logging
import time
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, plus any `extra` fields (request_id, model, status...)."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        extra = {key: value for key, value in record.__dict__.items()
                 if key not in _STANDARD and not key.startswith("_")}
        exception = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(record.created, record.levelname.lower(), record.name,
                         record.getMessage(), extra, exception)

    def line(self, created: float, level: str, logger: str, message: str,
             extra: dict[str, Any], exception: str | None = None) -> str:
        """The JSON line of a record with these fields (what `format` writes)."""
        entry: dict[str, Any] = {"time": self._time(created), "level": level,
                                 "logger": logger, "message": message}
        entry.update(self.static)
        entry.update(extra)
        if exception:
            entry["exception"] = exception
        return json.dumps(entry, default=str)

    _second: tuple[int, str] = (-1, "")

    def _time(self, created: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:  # strftime once per second, not once per line
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S",
                                                           time.gmtime(second)))
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")


def logging_config(fmt: str, level: str, static: dict[str, Any] | None = None) -> dict[str, Any]:
    """A dictConfig for the root logger and gunicorn's own loggers."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter, "static": static or {}} if fmt == "json" else {"()": TextFormatter})
    handler = {"class": "logging.StreamHandler", "formatter": "main",
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "root": {"level": level.upper(), "handlers": ["main"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["main"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["main"], "propagate": False},
        },
    }
