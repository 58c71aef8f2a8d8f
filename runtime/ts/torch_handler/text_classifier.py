"""`ts.torch_handler.text_classifier.TextClassifier`: TorchServe's torchtext-based handler."""
from __future__ import annotations

from typing import Any, ClassVar

from mkserve.runtime.ts.torch_handler import _requirements
from mkserve.runtime.ts.torch_handler.base_handler import BaseHandler


class TextClassifier(BaseHandler):
    """Named so archives built with --handler text_classifier fail with a clear reason.

    TorchServe's version depends on torchtext (discontinued, no builds for
    current torch) and on its own text-cleaning tables; mkserve does not
    reimplement it.
    """

    requirements: ClassVar[dict[str, str]] = {"torchtext": "torchtext"}

    def initialize(self, context: Any) -> None:
        _requirements.require("text_classifier", self.requirements)
        raise RuntimeError(
            "mkserve does not reimplement TorchServe's built-in text_classifier handler "
            "(it depends on the discontinued torchtext); write a handler file that "
            "subclasses BaseHandler and tokenises the text itself, and pass it as --handler")
