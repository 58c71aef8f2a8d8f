"""`ts.utils.hf_utils.download_model`: importable; models are not downloaded at load here."""
from __future__ import annotations

from mkserve.runtime.ts.unsupported import stub

download_model = stub("hf_download", "ts.utils.hf_utils.download_model")
