"""`ts.handler_utils.hf_batch_streamer.TextIteratorStreamerBatch`: stream a batched
`generate()` row by row (needs `transformers`, which the archive's requirements bring)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class TextIteratorStreamerBatch:
    """Pass as `streamer=` to `model.generate` on a batch of `batch_size` prompts;
    iterate to get, at each step, a list with each row's newly decoded text."""

    def __init__(self, tokenizer: Any, batch_size: int, skip_prompt: bool = False,
                 timeout: float | None = None, **decode_kwargs: Any) -> None:
        try:
            from transformers import TextIteratorStreamer
        except ImportError as exc:
            raise ImportError("TextIteratorStreamerBatch needs transformers: add it to the "
                              "archive's requirements") from exc
        self.batch_size = batch_size
        self.streamers = [TextIteratorStreamer(tokenizer, skip_prompt=skip_prompt,
                                               timeout=timeout, **decode_kwargs)
                          for _ in range(batch_size)]

    def put(self, value: Any) -> None:
        rows = value if getattr(value, "dim", lambda: 1)() > 1 else value.unsqueeze(1)
        if rows.shape[0] != self.batch_size:
            raise ValueError(f"expected {self.batch_size} rows of tokens, got {rows.shape[0]}")
        for streamer, row in zip(self.streamers, rows, strict=True):
            streamer.put(row)

    def end(self) -> None:
        for streamer in self.streamers:
            streamer.end()

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        texts, ended = [], 0
        for streamer in self.streamers:
            try:
                texts.append(next(streamer))
            except StopIteration:
                texts.append("")
                ended += 1
        if ended == len(self.streamers):
            raise StopIteration
        return texts
