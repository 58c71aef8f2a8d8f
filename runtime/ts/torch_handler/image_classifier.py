"""`ts.torch_handler.image_classifier.ImageClassifier`: top-5 ImageNet-style classification."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from mkserve.runtime.ts.torch_handler.vision_handler import VisionHandler
from mkserve.runtime.ts.utils.util import map_class_to_label


class ImageClassifier(VisionHandler):
    """Resize 256, center-crop 224, ImageNet-normalise; answer the top 5 labels per image."""

    requirements: ClassVar[dict[str, str]] = {"torchvision": "torchvision", "PIL": "Pillow"}
    topk = 5

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        if self.image_processing is None:
            from torchvision import transforms

            self.image_processing = transforms.Compose([
                transforms.Resize(256),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
            ])

    def set_max_result_classes(self, topk: int) -> None:
        self.topk = topk

    def get_max_result_classes(self) -> int:
        return self.topk

    def postprocess(self, data: torch.Tensor) -> list[dict[str, float]]:
        probs = torch.nn.functional.softmax(data, dim=1)
        top_probs, classes = torch.topk(probs, min(self.topk, probs.shape[1]), dim=1)
        return map_class_to_label(top_probs.tolist(), self.mapping, classes.tolist())
