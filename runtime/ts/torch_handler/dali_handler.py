"""`ts.torch_handler.dali_handler.DALIHandler`: importable; fails at load with the reason
(see mkserve.runtime.ts.unsupported)."""
from __future__ import annotations

from mkserve.runtime.ts.unsupported import UnsupportedHandler


class DALIHandler(UnsupportedHandler):
    feature = "dali"
