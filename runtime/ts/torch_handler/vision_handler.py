"""`ts.torch_handler.vision_handler.VisionHandler`: base for the built-in image handlers."""
from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from mkserve.runtime.ts.torch_handler import _inputs, _requirements
from mkserve.runtime.ts.torch_handler.base_handler import BaseHandler


class VisionHandler(BaseHandler):
    """Decode image rows with PIL and apply `image_processing` (set by subclasses).

    Packages are checked in `initialize`, not at import, so a missing one
    fails the model load with its name rather than an ImportError traceback.
    captum is only needed for explanation requests and is checked then.
    """

    requirements: ClassVar[dict[str, str]] = {"PIL": "Pillow"}
    image_processing: Callable[[Any], torch.Tensor] | None = None

    def initialize(self, context: Any) -> None:
        _requirements.require(self._builtin_name(), self.requirements)
        self.ig: Any = None
        super().initialize(context)
        if not context.system_properties.get("limit_max_image_pixels", True):
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = None  # the operator turned off decompression-bomb limits

    def _builtin_name(self) -> str:
        # Name the built-in a custom handler extends, not the custom handler's own module.
        for cls in type(self).__mro__:
            if ".torch_handler." in f".{cls.__module__}":
                return cls.__module__.rsplit(".", 1)[-1]
        return type(self).__name__

    def preprocess(self, data: list[Any]) -> torch.Tensor:
        """Image bytes (or base64 text) -> image_processing -> [N, C, H, W]; lists as pixels."""
        from PIL import Image

        if self.image_processing is None:
            raise RuntimeError(f"{type(self).__name__} sets no image_processing transform")
        images = []
        for row in data:
            image = _inputs.row_payload(row)
            if isinstance(image, str):
                image = base64.b64decode(image)  # JSON clients send images base64-encoded
            if isinstance(image, (bytes, bytearray)):
                image = self.image_processing(Image.open(io.BytesIO(image)))
            else:
                image = torch.as_tensor(image, dtype=torch.float32)
            images.append(image)
        return torch.stack(images).to(self._device())

    def get_insights(self, tensor_data: Any, raw_data: Any, target: Any = 0) -> Any:
        """Integrated-gradients attributions (needs captum)."""
        _requirements.require(self._builtin_name(), {"captum": "captum"},
                              "to answer explanation requests")
        if self.ig is None:
            from captum.attr import IntegratedGradients

            self.ig = IntegratedGradients(self.model)
        return self.ig.attribute(tensor_data, target=target, n_steps=15).tolist()
