"""Eager-mode model for the `eager` example: a small 4 -> 16 -> 2 regressor.

Packed with ``--model-file``; the loader builds the single ``nn.Module`` class
defined here without arguments and loads the state dict into it, so this file
must define exactly one class and its constructor needs no arguments.
"""
from __future__ import annotations

import torch
from torch import nn


class TinyRegressor(nn.Module):
    """Maps four float features to two outputs."""

    def __init__(self, in_features: int = 4, hidden: int = 16, out_features: int = 2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.Tanh(),
            nn.Linear(hidden, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
