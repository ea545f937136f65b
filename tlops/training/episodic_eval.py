"""Episodic evaluation on novel classes: mean query accuracy and its 95% CI over many N-way K-shot episodes
for several shot counts, for the meta-learned model and two baselines on the very same episodes."""

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
