"""`ts.torch_handler.trt_llm_handler.TRTLLMHandler`: importable; fails at load with the reason
(see mkserve.runtime.ts.unsupported)."""
from __future__ import annotations

from mkserve.runtime.ts.unsupported import UnsupportedHandler


class TRTLLMHandler(UnsupportedHandler):
    feature = "trt_llm"
