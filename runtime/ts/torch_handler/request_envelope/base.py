"""`BaseEnvelope`: parse_input → the handler's handle → format_output."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def body_of(row: Any) -> Any:
    """A request row's payload ("data" or "body"), JSON-decoded when it came as bytes."""
    body = row.get("data") or row.get("body") if isinstance(row, dict) else row
    if isinstance(body, (bytes, bytearray)):
        body = json.loads(body.decode("utf-8"))
    return body


class BaseEnvelope:
    """Wrap `handle_fn(data, context)`; subclasses say how requests unpack and answers pack."""

    def __init__(self, handle_fn: Callable[[Any, Any], Any]) -> None:
        self._handle_fn = handle_fn
        self.context: Any = None

    def handle(self, data: list[Any], context: Any) -> Any:
        self.context = context
        results = self._handle_fn(self.parse_input(data), context)
        return self.format_output(results) if results is not None else results

    def parse_input(self, data: list[Any]) -> Any:
        raise NotImplementedError

    def format_output(self, data: Any) -> Any:
        raise NotImplementedError
