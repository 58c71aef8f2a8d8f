"""`ts.torch_handler.object_detector.ObjectDetector`: torchvision detection models."""
from __future__ import annotations

from typing import Any, ClassVar

from mkserve.runtime.ts.torch_handler.vision_handler import VisionHandler


class ObjectDetector(VisionHandler):
    """Images as tensors in [0, 1]; answers [{label: [x1, y1, x2, y2], "score": s}, ...] per image.

    Detections scoring below `threshold` are dropped.
    """

    requirements: ClassVar[dict[str, str]] = {"torchvision": "torchvision", "PIL": "Pillow"}
    threshold = 0.5

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        if self.image_processing is None:
            from torchvision import transforms

            self.image_processing = transforms.Compose([transforms.ToTensor()])

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        # Detection models take a list of images, not a batch tensor.
        return super().inference(list(data), *args, **kwargs)

    def postprocess(self, data: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        results = []
        for detections in data:
            keep = detections["scores"] >= self.threshold
            boxes = detections["boxes"][keep].tolist()
            labels = detections["labels"][keep].tolist()
            scores = detections["scores"][keep].tolist()
            results.append([
                {self._label(label): box, "score": score}
                for label, box, score in zip(labels, boxes, scores, strict=False)])
        return results

    def _label(self, label: Any) -> str:
        key = str(label)
        return self.mapping.get(key, key) if self.mapping else key
