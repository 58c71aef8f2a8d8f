"""`ts.torch_handler.vllm_handler.VLLMHandler`: importable; fails at load with the reason
(see mkserve.runtime.ts.unsupported)."""
from __future__ import annotations

from mkserve.runtime.ts.unsupported import UnsupportedHandler


class VLLMHandler(UnsupportedHandler):
    feature = "vllm"
