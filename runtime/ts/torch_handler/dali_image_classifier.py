"""`ts.torch_handler.dali_image_classifier.DALIImageClassifier`:
importable; fails at load with the reason
(see mkserve.runtime.ts.unsupported)."""
from __future__ import annotations

from mkserve.runtime.ts.unsupported import UnsupportedHandler


class DALIImageClassifier(UnsupportedHandler):
    feature = "dali"
