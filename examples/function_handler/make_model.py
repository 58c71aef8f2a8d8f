"""Write the function-handler example's TorchScript model, ``model_scripted.pt``.

Usage: python make_model.py [OUT_DIR]   (default: this script's folder)

The model reduces a row of numbers to ``[sum, mean, max]``. It is TorchScript,
so the archive needs no model definition file: the class below exists only
here, at export time.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class RowStats(nn.Module):
    """[n] float tensor -> [sum, mean, max]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.sum(), x.mean(), x.max()])


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    # No parameters, but seed anyway so all examples follow the same recipe.
    torch.manual_seed(0)
    torch.jit.script(RowStats().eval()).save(str(out / "model_scripted.pt"))
    print(out / "model_scripted.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
