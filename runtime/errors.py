"""The error family of the serving path, each with its HTTP status and TorchServe type name."""
from __future__ import annotations

import json
from typing import Any


class ServingError(Exception):
    """An error answered to the client as {"code", "type", "message"}."""

    status = 500
    type_name = "InternalServerException"

    def __init__(self, message: str, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.status, "type": self.type_name, "message": self.message}

    def to_json(self) -> bytes:
        return json.dumps(self.body()).encode()


class BadRequest(ServingError):
    status = 400
    type_name = "BadRequestException"


class NotFound(ServingError):
    status = 404
    type_name = "ModelNotFoundException"


class RouteNotFound(ServingError):
    status = 404
    type_name = "ResourceNotFoundException"


class MethodNotAllowed(ServingError):
    status = 405
    type_name = "MethodNotAllowedException"


class PayloadTooLarge(ServingError):
    status = 413
    type_name = "RequestEntityTooLargeException"


class ServiceUnavailable(ServingError):
    status = 503
    type_name = "ServiceUnavailableException"


class Overloaded(ServingError):
    """The queue is full: shed now with Retry-After rather than block."""

    status = 503
    type_name = "ServiceUnavailableException"


class DeadlineExceeded(ServingError):
    status = 504
    type_name = "RequestTimeoutException"


class OutOfMemory(ServingError):
    status = 507
    type_name = "InsufficientStorageException"


class HandlerFailed(ServingError):
    """The handler raised: 4xx for input-caused failures, 500 for handler bugs."""

    type_name = "InternalServerException"


class PredictionFailed(ServingError):
    """A PredictionException raised by the handler, with its own code."""

    type_name = "PredictionException"
