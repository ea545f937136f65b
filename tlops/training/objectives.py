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
    """Cross-entropy on logits; validation reports loss, macro-F1 and accuracy; macro-F1 selects the best epoch
    unless another key of the epoch's row is named (e.g. an unsupervised criterion such as `dev_risk`)."""

    def __init__(self, selection_metric: str = "val_macro_f1", maximize: bool = True):
        self.selection_metric, self.maximize = selection_metric, maximize

    def oriented(self, value: float) -> float:
        """The selection score with higher = better."""
        return value if self.maximize else -value

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

    def monitors(self) -> dict[str, float]:
        """Values measured on the last batch that the loop averages per epoch and logs but does not optimise
        (e.g. the domain discriminator's accuracy)."""
        return {}


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


class DomainAdaptationObjective(Objective):
    """The source task loss plus `trade_off` * an alignment loss between a source and a target batch
    (min L_task + lambda R(f, D_s, D_t)). The target batch of each step comes from `target_batch(step)`;
    the alignment sees the backbone features standardised with fixed statistics (`scale`); the GRL
    coefficient follows DANN's warm-up over `max_steps` when `warmup`, else 1. With no alignment
    (source-only) it is the supervised objective, on the same loop. Regularisers (L2-SP) add terms as in
    `SupervisedObjective`."""

    def __init__(self, task: ClassificationTask, alignment: nn.Module | None, target_batch, scale: nn.Module,
                 trade_off: float, max_steps: int, warmup: bool = True, alpha: float = 10.0,
                 regularisers: dict[str, nn.Module] | None = None):
        super().__init__()
        self.task, self.alignment, self.scale = task, alignment, scale
        self.regularisers = nn.ModuleDict(regularisers or {})
        self.target_batch, self.trade_off, self.max_steps, self.warmup, self.alpha = target_batch, trade_off, max_steps, warmup, alpha
        self._monitors: dict[str, float] = {}

    def coefficient(self, step: int) -> float:
        from tlops.training.adaptation import grl_coefficient

        return grl_coefficient(step, self.max_steps, self.alpha) if self.warmup else 1.0

    def forward(self, net, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        from tlops.training.adaptation import Side
        from tlops.training.batching import to_device

        f_s = net.features(batch.inputs)
        logits_s = net.head(f_s)
        terms = {"task": self.task.loss(logits_s, batch.targets)}
        for name, reg in self.regularisers.items():
            terms[name] = reg()
        if self.alignment is None:
            return terms
        f_t = net.features(to_device(self.target_batch(step), batch.targets.device))
        logits_t = net.head(f_t)
        coeff = self.coefficient(step)
        r = self.alignment(Side(self.scale(f_s), logits_s), Side(self.scale(f_t), logits_t), coeff)
        terms["transfer"] = self.trade_off * r
        self._monitors = {**self.alignment.monitors, "grl_coeff": coeff} if self.alignment.adversarial else dict(self.alignment.monitors)
        return terms

    def monitors(self) -> dict[str, float]:
        return self._monitors
