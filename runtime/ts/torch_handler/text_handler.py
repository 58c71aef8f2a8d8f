"""`ts.torch_handler.text_handler.TextHandler`: a base for text models with a vocabulary.

`initialize` loads the model (BaseHandler) and the source vocabulary: the
manifest's `sourceVocab`, else `source_vocab.pt` in the model folder, a
mapping {token: index} saved with torch.save. The helpers clean text the way
TorchServe's text handlers do before tokenising.
"""
from __future__ import annotations

import os
import re
import string
import unicodedata
from typing import Any

import torch
from mkserve.runtime.ts.handler_utils.text_utils import get_tokenizer
from mkserve.runtime.ts.torch_handler.base_handler import BaseHandler
from mkserve.runtime.ts.torch_handler.contractions import CONTRACTION_MAP
from mkserve.runtime.ts.utils.util import CLEANUP_REGEX

CONTRACTIONS_PATTERN = re.compile(
    "({})".format("|".join(re.escape(k) for k in sorted(CONTRACTION_MAP, key=len, reverse=True))),
    flags=re.IGNORECASE | re.DOTALL)
_PUNCTUATION = str.maketrans("", "", string.punctuation)


class TextHandler(BaseHandler):
    def __init__(self) -> None:
        super().__init__()
        self.source_vocab: Any = None
        self.tokenizer = get_tokenizer("basic_english")
        self.input_text: Any = None
        self.lig: Any = None
        self.initialized = False

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        self.initialized = False
        path = self.get_source_vocab_path(context)
        try:
            self.source_vocab = torch.load(path, weights_only=True)
        except Exception as exc:
            raise RuntimeError(
                f"{os.path.basename(path)} could not be read as tensors and containers "
                f"({exc}); save the vocabulary as a dict {{token: index}} with torch.save "
                "(a torchtext Vocab needs torchtext, which is discontinued)") from exc
        self.initialized = True

    def get_source_vocab_path(self, ctx: Any) -> str:
        model_dir = ctx.system_properties.get("model_dir") or "."
        named = ((ctx.manifest or {}).get("model") or {}).get("sourceVocab")
        for candidate in (named, "source_vocab.pt"):
            if candidate and os.path.isfile(os.path.join(model_dir, candidate)):
                return os.path.join(model_dir, candidate)
        raise FileNotFoundError("the archive has no source vocabulary: add source_vocab.pt "
                                "(torch-model-archiver --extra-files source_vocab.pt)")

    def _expand_contractions(self, text: str) -> str:
        def expand(match: re.Match[str]) -> str:
            found = match.group(0)
            expanded = CONTRACTION_MAP.get(found.lower(), found)
            return found[0] + expanded[1:] if found[0].isupper() else expanded

        return CONTRACTIONS_PATTERN.sub(expand, text).replace("'", "")

    def _remove_accented_characters(self, text: str) -> str:
        return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")

    def _remove_html_tags(self, text: str) -> str:
        return CLEANUP_REGEX.sub("", text)

    def _remove_punctuation(self, text: str) -> str:
        return text.translate(_PUNCTUATION)

    _remove_puncutation = _remove_punctuation  # TorchServe's old spelling, still called

    def _tokenize(self, text: str) -> list[str]:
        return self.tokenizer(text)

    def _lookup(self, token: str) -> int:
        vocab = self.source_vocab
        if isinstance(vocab, dict):
            return int(vocab[token] if token in vocab else vocab.get("<unk>", 0))
        return int(vocab[token])

    def get_word_token(self, input_tokens: list[str]) -> list[str]:
        """The tokens of the input for attributions (the input, already tokenised)."""
        return list(input_tokens)

    def summarize_attributions(self, attributions: torch.Tensor) -> torch.Tensor:
        summed = attributions.sum(dim=2).squeeze(0)
        return summed / torch.norm(summed)
