"""`KServeEnvelope`: KServe V1 `{"instances": [...]}`; each instance is one row for the
handler, and the answer is `{"predictions": [...]}` (`{"explanations": ...}` when the
request asked to explain)."""
from __future__ import annotations

from typing import Any

from mkserve.runtime.ts.torch_handler.request_envelope.base import BaseEnvelope, body_of


class KServeEnvelope(BaseEnvelope):
    def parse_input(self, data: list[Any]) -> list[Any]:
        body = body_of(data[0])
        if not isinstance(body, dict) or "instances" not in body:
            raise ValueError('a KServe V1 request is a JSON object {"instances": [...]}')
        return list(body["instances"])

    def format_output(self, data: Any) -> list[dict[str, Any]]:
        return [{"explanations" if self._is_explain() else "predictions": data}]

    def _is_explain(self) -> bool:
        try:
            return self.context.get_request_header(0, "explain") == "True"
        except (AttributeError, IndexError):
            return False
