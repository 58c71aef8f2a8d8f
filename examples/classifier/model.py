"""The guide's SimpleClassifier: a 10 -> 64 -> 64 -> 3 MLP with Dropout.

This file is also the eager-mode ``--model-file``. TorchServe's eager loader
(and mkserve's) builds the model by finding the single ``nn.Module`` subclass
defined here, so keep exactly one class in this file.
"""
from __future__ import annotations

import torch
from torch import nn


class SimpleClassifier(nn.Module):
    """Three-class classifier over ten float features."""

    # Defaults matter: the eager loader constructs the class without arguments.
    def __init__(self, input_size: int = 10, hidden_size: int = 64, num_classes: int = 3):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
