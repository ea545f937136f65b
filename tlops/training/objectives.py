"""What the training loop minimises, as small modules it just calls (TLlib's `DomainAdversarialLoss`,
`MultipleKernelMaximumMeanDiscrepancy`: a method is a loss module, not a loop).

A `Task` says how predictions are scored (loss, validation metrics, the selection metric); an
`Objective` returns the named loss terms of one batch, e.g. `{"task": ..., "l2sp": ...}`. The loop sums
the terms, backpropagates the sum and logs each term per epoch. An objective's own parameters (say a
domain discriminator) are optimised and checkpointed with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn
from torch.nn import functional as F


@dataclass
class Batch:
    """One model-ready training batch: backbone inputs and the rows' targets."""

    inputs: Any
    targets: torch.Tensor


class ClassificationTask:
    """Cross-entropy on logits; validation reports loss, macro-F1 and accuracy; macro-F1 selects the best epoch."""

    selection_metric = "val_macro_f1"

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets)

    def metrics(self, logits: torch.Tensor, targets: np.ndarray) -> dict[str, float]:
        pred = logits.argmax(1).numpy()
        return {"val_loss": float(F.cross_entropy(logits, torch.as_tensor(targets, dtype=torch.long))),
                "val_macro_f1": float(f1_score(targets, pred, average="macro")),
                "val_accuracy": float(accuracy_score(targets, pred))}


class Objective(nn.Module):
    """Named loss terms for one batch. `net(inputs)` gives the head's outputs; `step` is the global optimizer
    step (schedules such as a GRL warm-up derive from it, so a resumed run continues them exactly)."""

    def forward(self, net, batch: Batch, step: int) -> dict[str, torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class SupervisedObjective(Objective):
    """The task loss on the labelled batch, plus optional regularisers (each a module returning a scalar,
    e.g. L2-SP), each logged as its own term."""

    def __init__(self, task: ClassificationTask, regularisers: dict[str, nn.Module] | None = None):
        super().__init__()
        self.task = task
        self.regularisers = nn.ModuleDict(regularisers or {})

    def forward(self, net, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        terms = {"task": self.task.loss(net(batch.inputs), batch.targets)}
        for name, reg in self.regularisers.items():
            terms[name] = reg()
        return terms
