"""Classification heads on top of backbone features; every head standardises its input itself."""

from __future__ import annotations

import torch
from torch import nn


class ProbeHead(nn.Module):
    """(x - mean) / std -> linear, or -> MLP. Carries its scaler so the saved head needs nothing else."""

    def __init__(self, in_dim: int, n_classes: int, kind: str = "linear", hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        self.spec = {"in_dim": in_dim, "n_classes": n_classes, "kind": kind, "hidden": hidden, "dropout": dropout}
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        if kind == "linear":
            self.net = nn.Sequential(nn.Linear(in_dim, n_classes))
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        else:
            raise ValueError(f"unknown head kind {kind!r}; use 'linear' or 'mlp'")

    def set_scaler(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)
