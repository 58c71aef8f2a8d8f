"""MKSERVE_PRECISION as torch.autocast, applied in one place and never nested."""
from __future__ import annotations

import contextlib
from typing import Any

PRECISIONS = ("bf16", "fp16")


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager[Any]:
    """torch.autocast to bf16/fp16 on `device_type` ("cpu", "cuda"); a no-op for fp32 and
    inside a region that already autocasts (the service wraps every handler call, and
    BaseHandler.inference, which also works on its own, then adds nothing)."""
    if precision not in PRECISIONS:
        return contextlib.nullcontext()
    import torch

    if torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)
