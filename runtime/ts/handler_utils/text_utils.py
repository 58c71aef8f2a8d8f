"""`ts.handler_utils.text_utils`: the tokenizers and n-grams TorchServe's text handlers use
(in place of torchtext's, which TorchServe 0.12 no longer needs)."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

# basic_english: lower-case, punctuation split off as tokens, some characters dropped.
_SEPARATE = re.compile(r"([.,!?()'\"])")
_DROP = re.compile(r"[<>;:\[\]{}\\/=_*&^%$#@~`|+-]")
_SPACES = re.compile(r"\s+")


def _basic_english(line: str) -> list[str]:
    line = line.lower().replace("<br />", " ")
    line = _DROP.sub(" ", line)
    line = _SEPARATE.sub(r" \1 ", line)
    return _SPACES.sub(" ", line).strip().split()


def get_tokenizer(tokenizer: str | Callable[[str], list[str]] | None,
                  language: str = "en") -> Callable[[str], list[str]]:
    """None: split on whitespace; "basic_english": lower-cased words and punctuation;
    a callable: itself. Other names (spacy, moses, ...) need their library in the
    handler's own code."""
    if tokenizer is None:
        return str.split
    if callable(tokenizer):
        return tokenizer
    if tokenizer == "basic_english":
        if language != "en":
            raise ValueError("basic_english is for language='en' only")
        return _basic_english
    raise ValueError(f"tokenizer {tokenizer!r}: mkserve provides None (whitespace) and "
                     "'basic_english'; for others, tokenize with their library in the handler")


def ngrams_iterator(token_list: Iterable[str], ngrams: int) -> Iterator[str]:
    """Each token, then every run of 2..ngrams consecutive tokens joined by a space."""
    tokens = list(token_list)
    yield from tokens
    for n in range(2, ngrams + 1):
        for start in range(len(tokens) - n + 1):
            yield " ".join(tokens[start:start + n])
