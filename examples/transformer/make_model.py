"""Write the transformer example's TorchScript model, ``model_scripted.pt``.

Usage: python make_model.py [OUT_DIR]   (default: this script's folder)

A small encoder-only transformer classifier, heavy enough that the model, not
HTTP, dominates a request (the compute-bound benchmark case): 4 layers,
d_model 256, 4 heads, feed-forward 2048, sequence length 64, 4 classes.
Two entry points share the encoder:
- ``forward(tokens, pad_mask)``: token ids [B, 64] (0 is padding);
- ``forward_features(features, pad_mask)``: float features [B, 64, 32].
``pad_mask`` is [B, 64] bool, True at padding positions. Weights are random
(seed 0): the outputs are meaningless but reproducible.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent

VOCAB_SIZE = 1000
SEQ_LEN = 64
FEATURE_DIM = 32
D_MODEL = 256
N_HEADS = 4
N_LAYERS = 4
FFN_DIM = 2048
N_CLASSES = 4


class TransformerClassifier(nn.Module):
    """Token ids or feature vectors -> class logits, via a transformer encoder."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, D_MODEL, padding_idx=0)
        self.feature_proj = nn.Linear(FEATURE_DIM, D_MODEL)
        self.pos = nn.Parameter(torch.randn(1, SEQ_LEN, D_MODEL) * 0.02)
        layer = nn.TransformerEncoderLayer(
            D_MODEL, N_HEADS, FFN_DIM, dropout=0.1, batch_first=True, norm_first=False
        )
        # Nested tensors would make the cost depend on padding; benchmarks
        # want a fixed amount of work per row.
        self.encoder = nn.TransformerEncoder(layer, N_LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, N_CLASSES)

    def _classify(self, h: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(h + self.pos, src_key_padding_mask=pad_mask)
        # Mean over real positions only.
        keep = (~pad_mask).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        return self.head(self.norm(pooled))

    def forward(self, tokens: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        return self._classify(self.embed(tokens), pad_mask)

    @torch.jit.export
    def forward_features(self, features: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        return self._classify(self.feature_proj(features), pad_mask)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = TransformerClassifier().eval()
    torch.jit.script(model).save(str(out / "model_scripted.pt"))
    print(out / "model_scripted.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
