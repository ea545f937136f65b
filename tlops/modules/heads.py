"""Heads on top of backbone features (classifiers, or regressors with one output); every head standardises its
input itself, and a regression head also carries its target scaler, so its output maps back to target units."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn


class ProbeHead(nn.Module):
    """(x - mean) / std -> linear, or -> MLP. Carries its scaler so the saved head needs nothing else."""

    def __init__(self, in_dim: int, n_classes: int, kind: str = "linear", hidden: int = 256, dropout: float = 0.0,
                 task: str = "classification"):
        from tlops.task_types import task_type

        super().__init__()
        self.spec = {"in_dim": in_dim, "n_classes": n_classes, "kind": kind, "hidden": hidden, "dropout": dropout}
        self.numeric = task_type(task).numeric_target  # outputs a number (a regression), not class logits
        if self.numeric:  # a classifier's spec stays as it was: packages written before regression still load
            self.spec["task"] = task
        self.task = task
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        if self.numeric:  # the training target was (y - target_mean) / target_std
            self.register_buffer("target_mean", torch.zeros(()))
            self.register_buffer("target_std", torch.ones(()))
        if kind == "linear":
            self.net = nn.Sequential(nn.Linear(in_dim, n_classes))
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        else:
            raise ValueError(f"unknown head kind {kind!r}; use 'linear' or 'mlp'")

    @classmethod
    def from_spec(cls, spec: dict) -> "ProbeHead":
        return cls(spec["in_dim"], spec["n_classes"], kind=spec["kind"], hidden=spec["hidden"], dropout=spec["dropout"],
                   task=spec.get("task", "classification"))

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

    def set_target_scaler(self, mean: float, std: float) -> None:
        self.target_mean.fill_(mean)
        self.target_std.fill_(max(std, 1e-12))

    def to_target(self, out: torch.Tensor) -> torch.Tensor:
        """A regression head's (N, 1) output in the target's units (N,)."""
        return out[:, 0] * self.target_std + self.target_mean

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(x))


def predict_labels(head: nn.Module, x: np.ndarray, labels: Sequence[str]) -> list[str]:
    """Argmax labels of a head on a feature matrix."""
    head.eval()
    with torch.inference_mode():
        return [labels[i] for i in head(torch.from_numpy(x)).argmax(1).numpy()]


def predict_values(head: ProbeHead, x: np.ndarray) -> list[float]:
    """A regression head's predictions on a feature matrix, in target units."""
    head.eval()
    with torch.inference_mode():
        return head.to_target(head(torch.from_numpy(x))).double().tolist()


def load_head(result) -> ProbeHead:
    """The head a train step saved (`tlops.records.HeadResult`: its spec and safetensors file), in eval mode."""
    return ProbeHead.load(result.spec, result.head_path)


def predict_outputs(head: ProbeHead, x: np.ndarray, labels: Sequence[str]) -> list:
    """What the head predicts: labels for a classifier, numbers for a regressor."""
    return predict_values(head, x) if head.numeric else predict_labels(head, x, labels)
