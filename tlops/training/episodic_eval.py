"""Episodic evaluation on novel classes: mean query accuracy and its 95% CI over many N-way K-shot episodes
for several shot counts, for the meta-learned model and the baselines on the very same episodes."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from tlops.records import ShotScore
from tlops.training.episodes import EpisodeSampler
from tlops.training.meta import episodic_accuracies, mean_ci95, prototypes, proto_logits

Predict = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
EVAL_STREAM = 1000  # test episodes use seed + this + shots: the same episodes for every model of a run's seed


def protonet0(mean: torch.Tensor, std: torch.Tensor) -> Predict:
    """ProtoNet without meta-training: nearest prototype of the standardised frozen features."""

    def predict(sx: torch.Tensor, qx: torch.Tensor, ways: int) -> torch.Tensor:
        sx, qx = (sx - mean) / std, (qx - mean) / std
        onehot = torch.nn.functional.one_hot(torch.arange(ways).repeat_interleave(sx.shape[1] // ways), ways).float()
        return torch.stack([proto_logits(q, prototypes(s, onehot)).argmax(1) for s, q in zip(sx, qx)])

    return predict


def support_logreg(mean: torch.Tensor, std: torch.Tensor, C: float = 1.0) -> Predict:
    """A linear probe fitted on each episode's support features (scikit-learn logistic regression)."""
    from sklearn.linear_model import LogisticRegression

    def predict(sx: torch.Tensor, qx: torch.Tensor, ways: int) -> torch.Tensor:
        sx, qx = ((sx - mean) / std).numpy(), ((qx - mean) / std).numpy()
        y = np.repeat(np.arange(ways), sx.shape[1] // ways)
        return torch.from_numpy(np.stack([LogisticRegression(C=C, max_iter=200).fit(s, y).predict(q) for s, q in zip(sx, qx)]))

    return predict


def support_heads(sx: torch.Tensor, ways: int, steps: int = 100, lr: float = 0.01,
                  weight_decay: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear heads (w (T, N, D), b (T, 1, N)) fine-tuned on a batch of support sets sx (T, N*K, D) (class-major
    rows): zero init, full-batch AdamW on each episode's support cross-entropy for `steps` steps. All episodes
    train at once: the loss is the sum of the episodes' mean losses and AdamW works per element, so each
    episode's head follows exactly the trajectory it would follow alone."""
    t, d = sx.shape[0], sx.shape[2]
    y = torch.arange(ways).repeat_interleave(sx.shape[1] // ways).expand(t, -1)
    w = torch.zeros(t, ways, d, requires_grad=True)
    b = torch.zeros(t, 1, ways, requires_grad=True)
    opt = torch.optim.AdamW([w, b], lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():  # callers may evaluate under no_grad
        for _ in range(steps):
            logits = torch.bmm(sx, w.transpose(1, 2)) + b
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return w.detach(), b.detach()


def finetune_support(mean: torch.Tensor, std: torch.Tensor, steps: int = 100, lr: float = 0.01,
                     weight_decay: float = 1e-3) -> Predict:
    """Fine-tuning on the support set: a new linear classifier on the standardised frozen features, trained for a
    fixed number of steps on each episode's support set (`support_heads`; the "Baseline" of Chen et al. 2019,
    "A Closer Look at Few-shot Classification"). The step budget, not convergence, regularises it: that is what
    separates it from `support_logreg`. The backbone below the cached features is not fine-tuned (a backbone
    trained per episode, times 600 episodes, is out of reach on a CPU)."""

    def predict(sx: torch.Tensor, qx: torch.Tensor, ways: int) -> torch.Tensor:
        w, b = support_heads((sx - mean) / std, ways, steps, lr, weight_decay)
        return (torch.bmm((qx - mean) / std, w.transpose(1, 2)) + b).argmax(-1)

    return predict


BASELINES: dict[str, Callable[[torch.Tensor, torch.Tensor], Predict]] = {
    "linear_probe": support_logreg, "protonet0": protonet0, "finetune_support": finetune_support}


def shot_scores(predictors: dict[str, Predict], x: np.ndarray, y: np.ndarray, ways: int, shots: Sequence[int], queries: int,
                episodes: int, seed: int) -> tuple[dict[str, list[ShotScore]], list[int]]:
    """Scores per predictor and shot count (skipping shot counts with fewer than `ways` classes of shots + queries rows)."""
    out: dict[str, list[ShotScore]] = {name: [] for name in predictors}
    skipped = []
    for k in shots:
        try:
            sampler = EpisodeSampler(y, ways, k, queries, seed + EVAL_STREAM + k)
        except ValueError:
            skipped.append(k)
            continue
        for name, predict in predictors.items():
            acc, ci = mean_ci95(episodic_accuracies(predict, x, sampler, episodes))
            out[name].append(ShotScore(ways=ways, shots=k, episodes=episodes, accuracy=acc, ci95=ci))
    return out, skipped
