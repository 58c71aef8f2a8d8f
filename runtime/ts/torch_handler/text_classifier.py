"""`ts.torch_handler.text_classifier.TextClassifier`: classify one text with a vocabulary
model (an EmbeddingBag over token and bigram ids, as in TorchServe's example)."""
from __future__ import annotations

from typing import Any

import torch
from mkserve.runtime.ts.handler_utils.text_utils import ngrams_iterator
from mkserve.runtime.ts.torch_handler.text_handler import TextHandler
from mkserve.runtime.ts.utils.util import map_class_to_label


class TextClassifier(TextHandler):
    """Clean the text (HTML, case, contractions, accents, punctuation), tokenise, look up
    tokens and bigrams in source_vocab.pt, call model(ids, offsets=[0]), answer
    {label: probability} for each class. One request per batch, as in TorchServe."""

    ngrams = 2

    def preprocess(self, data: list[Any]) -> Any:  # (token ids, tokens)
        row = data[0]
        text = row.get("data") or row.get("body") if isinstance(row, dict) else row
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise ValueError(  # noqa: TRY004 - a bad request body, answered 400
                "text_classifier expects the request body to be text")
        text = self._remove_html_tags(text).lower()
        text = self._expand_contractions(text)
        text = self._remove_accented_characters(text)
        text = self._remove_punctuation(text)
        tokens = self._tokenize(text)
        ids = [self._lookup(t) for t in ngrams_iterator(tokens, self.ngrams)]
        return torch.as_tensor(ids, dtype=torch.long, device=self._device()), tokens

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        ids, _ = data
        offsets = torch.as_tensor([0], device=self._device())
        return super().inference(ids, offsets)

    def postprocess(self, data: torch.Tensor) -> list[Any]:
        probs = torch.nn.functional.softmax(data, dim=1).tolist()
        return map_class_to_label(probs, self.mapping)
