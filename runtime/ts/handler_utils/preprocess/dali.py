"""`ts.handler_utils.preprocess.dali`: importable; NVIDIA DALI is not in mkserve's images."""
from __future__ import annotations

from mkserve.runtime.ts.unsupported import stub

get_dali_pipeline = stub("dali", "ts.handler_utils.preprocess.dali.get_dali_pipeline")
