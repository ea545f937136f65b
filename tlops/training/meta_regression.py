"""Few-shot regression on cached features: the MAML family when a task is a group of rows with numeric targets.

A regression dataset's `group:` column says which task each row belongs to (e.g. which object a view shows);
an episode is one task: K support rows, whose targets are known, and Q query rows to predict. The encoder is the
classification path's (`tlops.training.meta.Encoder`) and so is the inner update (`inner_update`: MAML, FOMAML,
Meta-SGD's learned per-parameter rates). What differs: the head is one linear output whose initialisation is
meta-learned with the encoder (a number has no prototype to start from), the loss is the MSE on the target
standardised with the train split's mean and std (Finn et al. 2017's regression setting), and the inner loop
adapts the head alone with a normalised step (see `RegressionMetaLearner`).
Episodes are a pure function of (seed, episode index), as for classification, so a resumed run replays them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import vmap
from torch.nn import functional as F

from tlops.modules.heads import ProbeHead
from tlops.training.batching import generator
from tlops.training.meta import Encoder, InnerRule, Params, RawRows, embed_some_rows, mean_ci95
from tlops.training.objectives import Batch, Objective, RegressionTask

EPISODE_STREAM = 7927  # separates these episode generators from the classification episodes' and the loop's
ALGORITHMS = ("maml", "fomaml", "meta_sgd")
HEAD = ("head.weight", "head.bias")

# predict(support features (T, K, D), support targets (T, K), query features (T, Q, D)) -> query predictions (T, Q)
Predict = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TaskEpisodes:
    """A batch of T episodes as row indices into the split: support (T, K), query (T, Q), and each one's task."""

    support: np.ndarray
    query: np.ndarray
    tasks: np.ndarray


class TaskEpisodeSampler:
    """Episodes from the tasks of `groups` (one task name per row) that have >= shots + queries rows."""

    def __init__(self, groups: np.ndarray, shots: int, queries: int, seed: int):
        self.shots, self.queries, self.seed = shots, queries, seed
        groups = np.asarray(groups)
        by_task = {str(g): np.flatnonzero(groups == g) for g in np.unique(groups)}
        self.rows = {g: idx for g, idx in sorted(by_task.items()) if len(idx) >= shots + queries}
        self.tasks = sorted(self.rows)
        if not self.tasks:
            most = max((len(v) for v in by_task.values()), default=0)
            raise ValueError(f"{shots}-shot {queries}-query episodes need a task with >= {shots + queries} rows; the largest has "
                             f"{most}. Add rows to the tasks, or lower shots/queries")

    def episode(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        g = generator(self.seed, EPISODE_STREAM, i)
        task = self.tasks[int(torch.randint(len(self.tasks), (1,), generator=g))]
        rows = self.rows[task]
        order = rows[torch.randperm(len(rows), generator=g)[: self.shots + self.queries].numpy()]
        return order[: self.shots], order[self.shots :], task

    def batch(self, start: int, count: int) -> TaskEpisodes:
        eps = [self.episode(i) for i in range(start, start + count)]
        return TaskEpisodes(np.stack([e[0] for e in eps]), np.stack([e[1] for e in eps]), np.array([e[2] for e in eps], dtype=object))


class RegressionMetaLearner(InnerRule):
    """The adaptation rule for numeric targets: `adapt(encoder, params, sx, sy)` -> fast weights after the inner
    steps on the support MSE, `predict(encoder, fast, x)` -> standardised predictions. Its own parameters are the
    head's meta-learned initialisation and, for Meta-SGD, the alphas; the encoder is passed in (the loop trains it
    as its backbone).

    The inner loop adapts the head only (ANIL, Raghu et al. 2020; the encoder is meta-learned in the outer loop),
    with its step divided by twice the support embeddings' mean squared norm (+1 for the bias): the normalised LMS
    step of adaptive filtering. The support MSE is quadratic in the head and its curvature is at most that, so a
    step of lr in (0, 2) never increases the error whatever the embedding's scale (lr 1 fits a single support row
    exactly). Measured without it: plain steps on the MSE diverged (predictions of 1e4-1e29 degrees on the demo)
    because the outer loop moves the embedding's scale, and with it the largest stable step, while a classifier's
    cross-entropy gradients stay bounded."""

    anil, backbone_names = True, ()  # the head alone is adapted; no backbone parameters in the inner loop

    def __init__(self, encoder: Encoder, algorithm: str, inner_lr: float = 0.5, inner_steps: int = 1):
        super().__init__()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"few-shot regression adapts with {', '.join(ALGORITHMS)}; {algorithm!r} has no inner loop for numbers")
        self.head = nn.Linear(encoder.out_dim, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)  # the standardised target's mean: the best guess before any support row
        self._init_rule(algorithm, {f"head.{k}": p.shape for k, p in self.head.named_parameters()}, inner_lr, inner_steps)

    def initial(self, encoder: Encoder) -> Params:
        """Every task's meta-learned starting point: the encoder's parameters and the head's."""
        return encoder.params() | {"head.weight": self.head.weight, "head.bias": self.head.bias}

    def predict(self, encoder: Encoder, fast: Params, x: torch.Tensor) -> torch.Tensor:
        return _linear(encoder.embed(_encoder_part(fast), x), fast)

    def adapt(self, encoder: Encoder, params: Params, sx: torch.Tensor, sy: torch.Tensor, steps: int | None = None) -> Params:
        """Fast weights for one support set (features sx (K, D), standardised targets sy (K,))."""
        z = encoder.embed(_encoder_part(params), sx)  # the encoder is not adapted: embed the support once
        # NLMS: the MSE's curvature is at most 2 (mean |z|^2 + 1) (+1: the bias), so this step is stable for lr in (0, 2)
        norm = 0.5 / ((z**2).sum(-1).mean() + 1.0)

        def support_loss(p: Params) -> torch.Tensor:
            return F.mse_loss(_linear(z, p), sy)

        lrs = {k: lr * norm for k, lr in self.lrs().items()}
        return {**params, **self.descend(support_loss, {k: params[k] for k in HEAD}, lrs, steps)}

    def episode_predictions(self, encoder: Encoder, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        """Standardised query predictions (T, Q) of a batch of episodes, vmapped over tasks."""
        params = self.initial(encoder)

        def one(s: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
            return self.predict(encoder, self.adapt(encoder, params, s, y), q)

        return vmap(one)(sx, sy, qx)


def _encoder_part(fast: Params) -> Params:
    return {k: v for k, v in fast.items() if k not in HEAD}


def _linear(z: torch.Tensor, head: Params) -> torch.Tensor:
    return (z @ head["head.weight"].T + head["head.bias"])[..., 0]


def adapted_regression_head(learner: RegressionMetaLearner, encoder: Encoder, sx: torch.Tensor, sy: torch.Tensor,
                            target: RegressionTask) -> ProbeHead:
    """The encoder and head adapted to one support set (features sx, targets sy in the target's unit), folded into a
    regression `ProbeHead` that maps back to that unit: the registered model."""
    with torch.no_grad():  # the inner loop's gradients still flow (torch.func.grad ignores an outer no_grad)
        fast = learner.adapt(encoder, learner.initial(encoder), sx.float(), target.standardise(sy))
    folded = encoder.fold(_encoder_part(fast), {"weight": fast["head.weight"], "bias": fast["head.bias"]})
    head = ProbeHead(folded.spec["in_dim"], 1, kind=folded.spec["kind"], hidden=folded.spec["hidden"], task="regression")
    head.load_state_dict({**folded.state_dict(), "target_mean": torch.tensor(target.mean), "target_std": torch.tensor(target.std)})
    return head.eval()


class TaskEpisodeBatches:
    """The episodes of optimizer step s (episodes s*T .. s*T+T-1): cached features and standardised targets."""

    def __init__(self, x: np.ndarray, y_std: np.ndarray, sampler: TaskEpisodeSampler, per_step: int):
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(np.asarray(y_std, dtype=np.float32))
        self.sampler, self.per_step = sampler, per_step

    def features(self, net, rows: np.ndarray, device) -> torch.Tensor:
        return self.x[rows].to(device)

    def __call__(self, net, step: int, count: int, device) -> tuple[torch.Tensor, ...]:
        ep = self.sampler.batch(step * self.per_step, count)
        z = self.features(net, np.concatenate([ep.support, ep.query], axis=1), torch.device(device))  # one pass for both
        k = ep.support.shape[1]
        return z[:, :k], self.y[ep.support].to(device), z[:, k:], self.y[ep.query].to(device)


class InputTaskEpisodeBatches(RawRows, TaskEpisodeBatches):
    """`TaskEpisodeBatches` over raw inputs (`strategy.trainable` > 0): the rows go through the loop's backbone."""

    def __init__(self, backbone, items: list[str], y_std: np.ndarray, sampler: TaskEpisodeSampler, per_step: int):
        RawRows.__init__(self, backbone, items)
        self.y = torch.from_numpy(np.asarray(y_std, dtype=np.float32))
        self.sampler, self.per_step = sampler, per_step


class RegressionEpisodicObjective(Objective):
    """Query MSE (standardised target) after adaptation, averaged over the step's episodes; the loop's batch only
    says how many episodes."""

    def __init__(self, learner: RegressionMetaLearner, episodes: TaskEpisodeBatches):
        super().__init__()
        self.learner, self.episodes = learner, episodes
        self._monitors: dict[str, float] = {}

    def forward(self, net, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        # the encoder is the loop's backbone on cached features, its head when the real backbone trains below it
        encoder = net.head if isinstance(net.head, Encoder) else net.backbone.model
        sx, sy, qx, qy = self.episodes(net, step, len(batch.targets), batch.targets.device)
        pred = self.learner.episode_predictions(encoder, sx, sy, qx)
        loss = F.mse_loss(pred, qy)
        self._monitors = {"train_episode_mae_std": float((pred - qy).detach().abs().mean())}  # in target std's
        return {"task": loss}

    def monitors(self) -> dict[str, float]:
        return self._monitors


def learner_predict(learner: RegressionMetaLearner, encoder: Encoder, target: RegressionTask) -> Predict:
    """The meta-learned model as an episode predictor in the target's unit."""

    def predict(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pred = learner.episode_predictions(encoder, sx.float(), target.standardise(sy), qx.float())
        return pred.double() * target.std + target.mean

    return predict


def episode_errors(predict: Predict, x: np.ndarray, y: np.ndarray, sampler: TaskEpisodeSampler, episodes: int,
                   chunk: int = 100) -> np.ndarray:
    """Each episode's query MAE (target unit) under `predict`."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.float64))
    out = []
    for start in range(0, episodes, chunk):
        ep = sampler.batch(start, min(chunk, episodes - start))
        pred = predict(xt[ep.support], yt[ep.support], xt[ep.query])
        out.append((pred.double() - yt[ep.query]).abs().mean(1).numpy())
    return np.concatenate(out)


class RegressionEpisodicValidation(RegressionTask):
    """The loop's validation for meta-training: fixed episodes of val's tasks, scored by their mean query MAE
    (`val_episode_mae`, which selects the best epoch), and the usual val_mae/rmse/r2/spearman over all their query
    rows. The loop's own pass over val is not used (episodes need support sets)."""

    def __init__(self, learner: RegressionMetaLearner, encoder: Encoder, xv: np.ndarray, yv: np.ndarray, sampler: TaskEpisodeSampler,
                 episodes: int, target: RegressionTask):
        super().__init__(target.mean, target.std, selection_metric="val_episode_mae", maximize=False)
        self.learner, self.encoder, self.xv, self.yv, self.sampler, self.episodes = learner, encoder, xv, yv, sampler, episodes

    def features(self, rows: np.ndarray) -> np.ndarray:
        """Features of val's rows (`rows`: the rows the episodes use; others may be left as zeros)."""
        return self.xv

    def evaluate(self) -> dict[str, float]:
        from tlops.evaluate import regression_metrics
        from tlops.training.objectives import REGRESSION_METRICS

        ep = self.sampler.batch(0, self.episodes)
        xt = torch.from_numpy(self.features(np.unique(np.concatenate([ep.support.ravel(), ep.query.ravel()]))))
        yt = torch.from_numpy(np.asarray(self.yv, dtype=np.float64))
        pred = learner_predict(self.learner, self.encoder, self)(xt[ep.support], yt[ep.support], xt[ep.query]).numpy()
        truth = yt[ep.query].numpy()
        if not np.isfinite(pred).all():
            from tlops.errors import ConfigError

            raise ConfigError("few-shot regression diverged: the adapted model predicts non-finite values on val's episodes; "
                              "lower strategy.inner_lr (or inner_steps), or strategy.meta_lr")
        m = regression_metrics(truth.ravel(), pred.ravel())
        return {"val_episode_mae": float(np.abs(pred - truth).mean(1).mean()), **{f"val_{k}": float(m[k]) for k in REGRESSION_METRICS}}

    def metrics(self, outputs: torch.Tensor, targets: np.ndarray) -> dict[str, float]:
        return self.evaluate()


class InputRegressionEpisodicValidation(RegressionEpisodicValidation):
    """`RegressionEpisodicValidation` when the backbone trains: the val rows the fixed episodes use are embedded by the
    backbone as it is at the end of the epoch (eval mode), not read from the cache."""

    def __init__(self, learner: RegressionMetaLearner, encoder: Encoder, backbone, items: list[str], yv: np.ndarray,
                 sampler: TaskEpisodeSampler, episodes: int, target: RegressionTask, batch_size: int):
        super().__init__(learner, encoder, np.zeros((len(items), 0), dtype=np.float32), yv, sampler, episodes, target)
        self.backbone, self.items, self.batch_size = backbone, list(items), batch_size

    def features(self, rows: np.ndarray) -> np.ndarray:
        return embed_some_rows(self.backbone, self.items, rows, self.batch_size)


def _ridge_fit(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched ridge (x (T, K, D), y (T, K)) with an unpenalised intercept, in the dual form (K << D): w = X'(XX' + aI)^-1 (y - mean)."""
    xm, ym = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
    xc, yc = x - xm, y - ym
    gram = xc @ xc.transpose(1, 2) + alpha * torch.eye(x.shape[1], dtype=x.dtype)
    w = (xc.transpose(1, 2) @ torch.linalg.solve(gram, yc[..., None]))[..., 0]
    return w, ym[:, 0] - (xm[:, 0] * w).sum(-1)


def support_ridge(mean: torch.Tensor, std: torch.Tensor, alpha: float) -> Predict:
    """Baseline: a ridge fitted on each episode's support rows (standardised frozen features)."""

    def predict(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        zs, zq = ((sx.double() - mean.double()) / std.double()), ((qx.double() - mean.double()) / std.double())
        w, b = _ridge_fit(zs, sy.double(), alpha)
        return (zq @ w[..., None])[..., 0] + b[:, None]

    return predict


def support_mean() -> Predict:
    """Baseline: every query predicted as the support targets' mean."""

    def predict(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        return sy.double().mean(1, keepdim=True).expand(-1, qx.shape[1])

    return predict


def pooled_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> Predict:
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


def pick_alpha(make: Callable[[float], Predict], xv: np.ndarray, yv: np.ndarray, sampler: TaskEpisodeSampler, episodes: int) -> float:
    """The ridge strength with the lowest mean query MAE on val's episodes (a baseline tuned like the probe's heads)."""
    return min(RIDGE_ALPHAS, key=lambda a: float(episode_errors(make(a), xv, yv, sampler, episodes).mean()))


def shot_errors(predictors: dict[str, Predict], x: np.ndarray, y: np.ndarray, groups: np.ndarray, shots: list[int], queries: int,
                episodes: int, seed: int) -> tuple[dict[str, list], list[int]]:
    """Every predictor on the same test episodes at each shot count: {name: [ShotError]}, and the shot counts no
    task had enough rows for."""
    from tlops.records import ShotError

    out: dict[str, list] = {name: [] for name in predictors}
    skipped = []
    for k in shots:
        try:
            sampler = TaskEpisodeSampler(groups, k, queries, seed)
        except ValueError:
            skipped.append(k)
            continue
        for name, predict in predictors.items():
            mae, half = mean_ci95(episode_errors(predict, x, y, sampler, episodes))
            out[name].append(ShotError(shots=k, episodes=episodes, mae=mae, ci95=half))
    return out, skipped
