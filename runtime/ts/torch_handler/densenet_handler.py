"""`ts.torch_handler.densenet_handler`: the legacy DenseNet example handler, which serves
as an image classifier (top-5 labels) here."""
from __future__ import annotations

from mkserve.runtime.ts.torch_handler.image_classifier import ImageClassifier
from mkserve.runtime.ts.utils.util import list_classes_from_module

__all__ = ["DenseNetHandler", "list_classes_from_module"]


class DenseNetHandler(ImageClassifier):
    """Resize, crop and normalise an image; answer its top-5 ImageNet labels."""
