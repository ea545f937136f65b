"""What the training loop minimises, as small modules it just calls (TLlib's `DomainAdversarialLoss`,
`MultipleKernelMaximumMeanDiscrepancy`: a method is a loss module, not a loop).

A `Task` says how predictions are scored (loss, validation metrics, the selection metric and its direction);
the dataset's task type picks it (`training_task`: cross-entropy on classes, or MSE/Huber on a standardised
number), so the loop and the strategies never branch on the task. An
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


class LoopTask:
    """How the loop scores a task: `loss(outputs, targets)` of a batch, `validate` (the epoch's validation metrics, keys
    `val_<name>`), the `selection_metric` (a key of the epoch's row) and its direction (`maximize`, `oriented`). Item
    tasks (classification, regression) score the head's (N, C) outputs with `metrics`; a task with another output shape
    (a tag per word, a span per question) overrides `validate` and decodes the outputs itself."""

    selection_metric: str = "val_loss"
    maximize: bool = False

    def oriented(self, value: float) -> float:
        """The selection score with higher = better."""
        return value if self.maximize else -value

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def metrics(self, outputs: torch.Tensor, targets: np.ndarray) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError

    def validate(self, net, data, evaluation) -> dict[str, float]:
        """The validation metrics of `net` on `data`; `evaluation` (`tlops.training.loop.Evaluation`) runs the net in eval
        mode on the loop's device and precision (`evaluation.outputs(data)`: the (N, C) head outputs of every row)."""
        return self.metrics(evaluation.outputs(data), data.targets)


class ClassificationTask(LoopTask):
    """Cross-entropy on logits; validation reports loss, macro-F1 and accuracy; macro-F1 selects the best epoch
    unless another key of the epoch's row is named (e.g. an unsupervised criterion such as `dev_risk`)."""

    def __init__(self, selection_metric: str = "val_macro_f1", maximize: bool = True):
        self.selection_metric, self.maximize = selection_metric, maximize

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets)

    def row_losses(self, logits: torch.Tensor, targets: np.ndarray) -> np.ndarray:
        """Each row's loss (what importance-weighted validation averages)."""
        return F.cross_entropy(logits.float(), torch.as_tensor(targets, dtype=torch.long), reduction="none").numpy()

    def metrics(self, logits: torch.Tensor, targets: np.ndarray) -> dict[str, float]:
        pred = logits.argmax(1).numpy()
        return {"val_loss": float(F.cross_entropy(logits, torch.as_tensor(targets, dtype=torch.long))),
                "val_macro_f1": float(f1_score(targets, pred, average="macro")),
                "val_accuracy": float(accuracy_score(targets, pred))}


    @classmethod
    def for_targets(cls, y: np.ndarray, opts: Any = None) -> "ClassificationTask":
        return cls()

    def init_head(self, head: nn.Module) -> None:
        """A fresh head needs nothing from the targets (its outputs are the classes)."""

REGRESSION_METRICS = ("mae", "rmse", "r2", "spearman")


class RegressionTask(LoopTask):
    """One output, trained on the standardised target (y - mean) / std with MSE or Huber loss (`huber_delta`
    in target std's); validation maps outputs back to the target's units and reports val_mae, val_rmse,
    val_r2, val_spearman and val_loss; the lowest val_mae selects the best epoch (the default gate metric)."""

    def __init__(self, mean: float, std: float, loss: str = "mse", huber_delta: float = 1.0,
                 selection_metric: str = "val_mae", maximize: bool = False):
        if loss not in ("mse", "huber"):
            raise ValueError(f"unknown regression loss {loss!r}; use 'mse' or 'huber'")
        self.mean, self.std = float(mean), max(float(std), 1e-12)
        self.loss_name, self.huber_delta = loss, huber_delta
        self.selection_metric, self.maximize = selection_metric, maximize

    @classmethod
    def for_targets(cls, y: np.ndarray, opts: Any = None) -> "RegressionTask":
        """Standardised with the train targets' mean and std (as the probe's regression heads are)."""
        return cls(float(np.mean(y)), float(np.std(y)), getattr(opts, "loss", "mse"), getattr(opts, "huber_delta", 1.0))

    def init_head(self, head: nn.Module) -> None:
        """A fresh head maps its output back to the target's units with the same scaler the loss uses."""
        head.set_target_scaler(self.mean, self.std)

    def standardise(self, targets: torch.Tensor) -> torch.Tensor:
        return (targets.float() - self.mean) / self.std

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pred, want = outputs.float()[:, 0], self.standardise(targets)
        if self.loss_name == "huber":
            return F.huber_loss(pred, want, delta=self.huber_delta)
        return F.mse_loss(pred, want)

    def row_losses(self, outputs: torch.Tensor, targets: np.ndarray) -> np.ndarray:
        """Each row's squared error on the standardised target (what importance-weighted validation averages)."""
        want = self.standardise(torch.as_tensor(np.asarray(targets, dtype=np.float64)))
        return ((outputs.float()[:, 0] - want) ** 2).numpy()

    def metrics(self, outputs: torch.Tensor, targets: np.ndarray) -> dict[str, float]:
        from tlops.evaluate import regression_metrics

        t = np.asarray(targets, dtype=np.float64)
        pred = outputs.double()[:, 0].numpy() * self.std + self.mean
        m = regression_metrics(t, pred)
        return {"val_loss": float(self.loss(outputs, torch.as_tensor(t))), **{f"val_{k}": float(m[k]) for k in REGRESSION_METRICS}}

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

    def __init__(self, task: ClassificationTask | RegressionTask, regularisers: dict[str, nn.Module] | None = None):
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

    def __init__(self, task: ClassificationTask | RegressionTask, alignment: nn.Module | None, target_batch, scale: nn.Module,
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
