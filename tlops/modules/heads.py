"""Classification heads on top of backbone features; every head standardises its input itself."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
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

    @classmethod
    def from_spec(cls, spec: dict) -> "ProbeHead":
        return cls(spec["in_dim"], spec["n_classes"], kind=spec["kind"], hidden=spec["hidden"], dropout=spec["dropout"])

    @classmethod
    def load(cls, spec: dict, weights: str | Path) -> "ProbeHead":
        """A saved head (safetensors) in eval mode."""
        head = cls.from_spec(spec)
        head.load_state_dict(load_file(str(weights)))
        return head.eval()

    def save(self, path: str | Path) -> Path:
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path))
        return Path(path)

    def set_scaler(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=1e-6))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(x))


def predict_labels(head: nn.Module, x: np.ndarray, labels: Sequence[str]) -> list[str]:
    """Argmax labels of a head on a feature matrix."""
    head.eval()
    with torch.inference_mode():
        return [labels[i] for i in head(torch.from_numpy(x)).argmax(1).numpy()]
