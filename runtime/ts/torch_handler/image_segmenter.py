"""`ts.torch_handler.image_segmenter.ImageSegmenter`: per-pixel class and probability."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from mkserve.runtime.ts.torch_handler.vision_handler import VisionHandler


class ImageSegmenter(VisionHandler):
    """ImageNet-normalised images; answers [H][W][class, probability] per image.

    Only the top class of each pixel is returned: the full [classes, H, W]
    scores would make responses tens of megabytes.
    """

    requirements: ClassVar[dict[str, str]] = {"torchvision": "torchvision", "PIL": "Pillow"}

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        if self.image_processing is None:
            from torchvision import transforms

            self.image_processing = transforms.Compose([
                transforms.ToTensor(),
                transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
            ])

    def postprocess(self, data: Any) -> list[Any]:
        # torchvision's segmentation models return {"out": ...}
        scores = data["out"] if isinstance(data, dict) else data
        probs = torch.nn.functional.softmax(scores, dim=1)
        top = torch.max(probs, dim=1)
        return torch.stack([top.indices.to(top.values.dtype), top.values], dim=3).tolist()
