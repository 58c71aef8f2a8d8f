"""Small torch modules shared by the runtime tests (module-level, so torch.save pickles them
by reference)."""
from __future__ import annotations

import torch


class Linear3(torch.nn.Module):
    """3 inputs → 2 outputs, the same weights on every construction."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
