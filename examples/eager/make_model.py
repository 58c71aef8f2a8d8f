"""Write the eager example's state dict, ``model_weights.pth``.

Usage: python make_model.py [OUT_DIR]   (default: this script's folder)

Seeded so the weights, and therefore the answers, are the same on every run.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Keep the example folder free of __pycache__ when model.py is imported.
sys.dont_write_bytecode = True

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch
from model import TinyRegressor


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = TinyRegressor().eval()
    torch.save(model.state_dict(), out / "model_weights.pth")
    print(out / "model_weights.pth")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
