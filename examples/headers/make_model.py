"""Write the headers example's TorchScript model, ``model_scripted.pt``.

Usage: python make_model.py [OUT_DIR]   (default: this script's folder)

The model multiplies a vector by a scale. The computation is trivial on
purpose: the example is about request headers and per-request responses.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class Scaler(nn.Module):
    """(x, scale) -> x * scale."""

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return x * scale


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.jit.script(Scaler().eval()).save(str(out / "model_scripted.pt"))
    print(out / "model_scripted.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
