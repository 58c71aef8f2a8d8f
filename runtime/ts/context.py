"""Context: what a handler sees of its model, its worker and the current batch."""
from __future__ import annotations

from typing import Any


class RequestInfo:
    """One request of the batch: its id and headers in, its status/headers out."""

    __slots__ = ("content_type", "headers", "phrase", "request_id", "response_headers", "status")

    def __init__(self, request_id: str, headers: dict[str, str]) -> None:
        self.request_id = request_id
        self.headers = headers
        self.status: int = 200
        self.phrase: str = ""
        self.content_type: str | None = None
        self.response_headers: dict[str, str] = {}


class Context:
    """Model, worker and per-batch request information for a handler.

    One Context lives per worker; the batcher thread (the only caller of the
    handler) replaces the per-request part before each batch with
    `_begin_batch`. Handlers read it and set per-request responses through it.
    """

    def __init__(self, model_name: str, model_dir: str, manifest: dict[str, Any],
                 batch_size: int, gpu: int | None, mms_version: str,
                 limit_max_image_pixels: bool = True, metrics: Any = None,
                 model_yaml_config: dict[str, Any] | None = None) -> None:
        self.model_name = model_name
        self.manifest = manifest
        self._system_properties = {
            "model_dir": model_dir,
            "gpu_id": gpu,
            "batch_size": batch_size,
            "server_name": "mkserve",
            "server_version": mms_version,
            "limit_max_image_pixels": limit_max_image_pixels,
        }
        self.metrics = metrics
        self.model_yaml_config = model_yaml_config or {}
        self._requests: list[RequestInfo] = []

    # -- model and worker -------------------------------------------------
    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    @property
    def request_ids(self) -> dict[int, str]:
        return {idx: r.request_id for idx, r in enumerate(self._requests)}

    @property
    def request_processor(self) -> list[RequestInfo]:
        return self._requests

    def _begin_batch(self, requests: list[RequestInfo]) -> None:
        self._requests = requests

    # -- per request ------------------------------------------------------
    def get_request_id(self, idx: int = 0) -> str | None:
        return self._requests[idx].request_id if idx < len(self._requests) else None

    def get_request_header(self, idx: int, key: str) -> str | None:
        headers = self._requests[idx].headers
        value = headers.get(key)
        if value is None:
            lowered = key.lower()
            for name, candidate in headers.items():
                if name.lower() == lowered:
                    return candidate
        return value

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return self._requests[idx].headers

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        request = self._requests[idx]
        request.status = int(code)
        request.phrase = phrase

    def get_response_status(self, idx: int) -> tuple[int, str]:
        request = self._requests[idx]
        return request.status, request.phrase

    def set_response_content_type(self, idx: int, value: str) -> None:
        self._requests[idx].content_type = value

    def get_response_content_type(self, idx: int) -> str | None:
        return self._requests[idx].content_type

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._requests[idx].response_headers[key] = str(value)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self._requests[idx].response_headers

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for idx in range(len(self._requests)):
            self.set_response_status(code, phrase, idx)
