"""`BodyEnvelope`: requests and answers as they are (TorchServe's default)."""
from __future__ import annotations

from typing import Any

from mkserve.runtime.ts.torch_handler.request_envelope.base import BaseEnvelope


class BodyEnvelope(BaseEnvelope):
    def parse_input(self, data: list[Any]) -> list[Any]:
        return data

    def format_output(self, data: Any) -> Any:
        return data
