"""`ts.torch_handler.distributed.base_deepspeed_handler.BaseDeepSpeedHandler`:
importable; fails at load with the reason
(see mkserve.runtime.ts.unsupported)."""
from __future__ import annotations

from mkserve.runtime.ts.unsupported import UnsupportedHandler


class BaseDeepSpeedHandler(UnsupportedHandler):
    feature = "distributed"
