"""Context: what a handler sees of its model, its worker and the current batch."""
from __future__ import annotations

from typing import Any


class RequestProcessor:
    """One request of the batch: its id and headers in, its status and headers out.

    `context.request_processor[i]` in a handler (the SageMaker toolkit's
    handlers read their request's headers this way).
    """

    __slots__ = ("content_type", "headers", "phrase", "request_id", "response_headers", "status")

    def __init__(self, request_id: str, headers: dict[str, str]) -> None:
        self.request_id = request_id
        self.headers = headers
        self.status: int = 200
        self.phrase: str = ""
        self.content_type: str | None = None
        self.response_headers: dict[str, str] = {}

    @property
    def request_header(self) -> dict[str, str]:
        return self.headers

    def get_request_property(self, key: str) -> str | None:
        """A request header by name (any case); None when the request has none."""
        value = self.headers.get(key)
        if value is None:
            lowered = key.lower()
            value = next((v for k, v in self.headers.items() if k.lower() == lowered), None)
        return value

    def get_request_properties(self) -> dict[str, str]:
        return self.headers

    def report_status(self, code: int, reason_phrase: str = "") -> None:
        self.status = int(code)
        self.phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self.status

    def get_response_status_phrase(self) -> str:
        return self.phrase

    def add_response_property(self, key: str, value: Any) -> None:
        if key.lower() == "content-type":
            self.content_type = str(value)
        else:
            self.response_headers[key] = str(value)

    def get_response_headers(self) -> dict[str, str]:
        return self.response_headers

    def get_response_header(self, key: str) -> str | None:
        return self.response_headers.get(key)


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
        self._requests: list[RequestProcessor] = []
        # Set by LLM handlers for their generation loop; mkserve only keeps it for them.
        self.stopping_criteria: Any = None
        # Streaming: the runtime sets this while a batch runs (send_intermediate_predict_response).
        self._send_intermediate: Any = None

    # -- model and worker -------------------------------------------------
    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    @property
    def request_ids(self) -> dict[int, str]:
        return {idx: r.request_id for idx, r in enumerate(self._requests)}

    @property
    def request_processor(self) -> list[RequestProcessor]:
        return self._requests

    def _begin_batch(self, requests: list[RequestProcessor]) -> None:
        self._requests = requests

    # -- per request ------------------------------------------------------
    def get_request_id(self, idx: int = 0) -> str | None:
        return self._requests[idx].request_id if idx < len(self._requests) else None

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self._requests[idx].get_request_property(key)

    def get_sequence_id(self, idx: int) -> str | None:
        """The sequence a request belongs to (TorchServe's stateful sessions): its
        `ts_request_sequence_id` header; None for stateless requests."""
        return self.get_request_header(idx, "ts_request_sequence_id")

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
