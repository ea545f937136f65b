"""Episodic evaluation: the meta-learned model and the baselines on the very same test episodes, for several shot
counts, by one routine (`shot_results`) whatever an episode's targets are. Classes (novel classes, N-way K-shot episodes): mean query accuracy and its 95% CI (`shot_scores`; baselines
`BASELINES`). Numbers (a regression's new tasks, K-shot episodes): mean query MAE and its 95% CI (`shot_errors`;
baselines `support_mean`, `support_ridge`, `pooled_ridge`)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from tlops.records import ShotScore
from tlops.training.episodes import EpisodeSampler, TaskEpisodeSampler
from tlops.training.meta import episodic_accuracies, mean_ci95, proto_logits, prototypes

Predict = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
# a regressor's: predict(support features (T, K, D), support targets (T, K), query features (T, Q, D)) -> query predictions (T, Q)
PredictNumbers = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
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


def shot_results(predictors: dict[str, Callable], x: np.ndarray, y: np.ndarray, shots: Sequence[int], episodes: int,
                 sampler: Callable[[int], Any], per_episode: Callable[..., np.ndarray],
                 record: Callable[[int, float, float], Any]) -> tuple[dict[str, list], list[int]]:
    """Every predictor on the very same test episodes at each shot count, for any task's episodes: `sampler(k)` gives
    the episodes of k shots (a ValueError: the split has too few rows for them, the shot count is skipped),
    `per_episode(predict, x, y, sampler, episodes)` each episode's value (query accuracy, query MAE), `record(k, mean,
    ci95)` the record of one shot count. Returns ({name: [record per shot count]}, the skipped shot counts)."""
    out: dict[str, list] = {name: [] for name in predictors}
    skipped = []
    for k in shots:
        try:
            episodes_of_k = sampler(k)
        except ValueError:
            skipped.append(k)
            continue
        for name, predict in predictors.items():
            mean, half = mean_ci95(per_episode(predict, x, y, episodes_of_k, episodes))
            out[name].append(record(k, mean, half))
    return out, skipped


def shot_scores(predictors: dict[str, Predict], x: np.ndarray, y: np.ndarray, ways: int, shots: Sequence[int], queries: int,
                episodes: int, seed: int) -> tuple[dict[str, list[ShotScore]], list[int]]:
    """Query accuracy per predictor and shot count of N-way episodes (`shot_results`; skipping shot counts with fewer
    than `ways` classes of shots + queries rows)."""
    return shot_results(predictors, x, y, shots, episodes, lambda k: EpisodeSampler(y, ways, k, queries, seed + EVAL_STREAM + k),
                        lambda predict, x, y, sampler, n: episodic_accuracies(predict, x, sampler, n),
                        lambda k, mean, half: ShotScore(ways=ways, shots=k, episodes=episodes, accuracy=mean, ci95=half))


def episode_errors(predict: PredictNumbers, x: np.ndarray, y: np.ndarray, sampler: TaskEpisodeSampler, episodes: int,
                   chunk: int = 100) -> np.ndarray:
    """Each episode's query MAE (target unit) under `predict`."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.float64))
    out = []
    for start in range(0, episodes, chunk):
        ep = sampler.batch(start, min(chunk, episodes - start))
        pred = predict(xt[ep.support], yt[ep.support], xt[ep.query])
        out.append((pred.double() - yt[ep.query]).abs().mean(1).numpy())
    return np.concatenate(out)


def _ridge_fit(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched ridge (x (T, K, D), y (T, K)) with an unpenalised intercept, in the dual form (K << D): w = X'(XX' + aI)^-1 (y - mean)."""
    xm, ym = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
    xc, yc = x - xm, y - ym
    gram = xc @ xc.transpose(1, 2) + alpha * torch.eye(x.shape[1], dtype=x.dtype)
    w = (xc.transpose(1, 2) @ torch.linalg.solve(gram, yc[..., None]))[..., 0]
    return w, ym[:, 0] - (xm[:, 0] * w).sum(-1)


def support_ridge(mean: torch.Tensor, std: torch.Tensor, alpha: float) -> PredictNumbers:
    """Baseline: a ridge fitted on each episode's support rows (standardised frozen features)."""

    def predict(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        zs, zq = ((sx.double() - mean.double()) / std.double()), ((qx.double() - mean.double()) / std.double())
        w, b = _ridge_fit(zs, sy.double(), alpha)
        return (zq @ w[..., None])[..., 0] + b[:, None]

    return predict


def support_mean() -> PredictNumbers:
    """Baseline: every query predicted as the support targets' mean."""

    def predict(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        return sy.double().mean(1, keepdim=True).expand(-1, qx.shape[1])

    return predict


def pooled_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> PredictNumbers:
    """Baseline without adaptation: one ridge on all train rows (tasks pooled), the support ignored."""
    import warnings

    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():  # the alpha search's weakest penalties are ill-conditioned on purpose: val judges them
        warnings.simplefilter("ignore", LinAlgWarning)
        model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x, y)

    def predict(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        flat = qx.reshape(-1, qx.shape[-1]).numpy()
        return torch.from_numpy(model.predict(flat).reshape(qx.shape[:2]))

    return predict


RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def pick_alpha(make: Callable[[float], PredictNumbers], xv: np.ndarray, yv: np.ndarray, sampler: TaskEpisodeSampler, episodes: int) -> float:
    """The ridge strength with the lowest mean query MAE on val's episodes (a baseline tuned like the probe's heads)."""
    return min(RIDGE_ALPHAS, key=lambda a: float(episode_errors(make(a), xv, yv, sampler, episodes).mean()))


def shot_errors(predictors: dict[str, PredictNumbers], x: np.ndarray, y: np.ndarray, groups: np.ndarray, shots: list[int], queries: int,
                episodes: int, seed: int) -> tuple[dict[str, list], list[int]]:
    """Query MAE per predictor and shot count of a regression's task episodes (`shot_results`): {name: [ShotError]},
    and the shot counts no task had enough rows for."""
    from tlops.records import ShotError

    return shot_results(predictors, x, y, shots, episodes, lambda k: TaskEpisodeSampler(groups, k, queries, seed), episode_errors,
                        lambda k, mean, half: ShotError(shots=k, episodes=episodes, mae=mean, ci95=half))
