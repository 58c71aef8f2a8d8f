"""Write the guide's three serialized forms of SimpleClassifier.

Usage: python make_model.py [OUT_DIR]   (default: this script's folder)

Writes ``model_scripted.pt`` (torch.jit.script), ``model_traced.pt``
(torch.jit.trace) and ``model_weights.pth`` (state_dict, for eager mode).
The seed is fixed so every run produces the same weights and therefore the
same predictions (tests compare answers across archive formats and servers).
"""
from __future__ import annotations

import sys
from pathlib import Path

# Importing model.py from the example folder would otherwise leave a
# __pycache__ next to the sources.
sys.dont_write_bytecode = True

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch
from model import SimpleClassifier


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    model = SimpleClassifier()
    # eval() before scripting/tracing: Dropout must be a no-op in the saved graphs.
    model.eval()

    torch.save(model.state_dict(), out / "model_weights.pth")
    torch.jit.script(model).save(str(out / "model_scripted.pt"))
    # The example input comes from its own generator so the weights above do
    # not depend on whether tracing happens.
    example_input = torch.randn(1, 10, generator=torch.Generator().manual_seed(1))
    torch.jit.trace(model, example_input).save(str(out / "model_traced.pt"))

    for name in ("model_scripted.pt", "model_traced.pt", "model_weights.pth"):
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
