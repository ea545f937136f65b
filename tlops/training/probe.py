"""Heads fitted on fixed features: logistic regression or ridge regression (scikit-learn), or a small MLP (torch)
with cross-entropy or MSE/Huber, the best epoch on validation kept. Regression targets are standardised with
the train split's mean and std for fitting; the head carries that scaler and predicts in target units.
Used by the `linear_probe` strategy and by LP-FT in `finetune`."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score
from torch import nn

from tlops.modules.heads import ProbeHead

if TYPE_CHECKING:
    from tlops.strategies.linear_probe import LinearProbeConfig


@dataclass
class ProbeResult:
    head: ProbeHead
    val_metrics: dict[str, float]  # the kept head's validation metrics, as its task type names them (macro_f1; mae, rmse, r2, spearman)
    history: list[dict]  # per-epoch metrics (MLP) or one row (logistic regression)
    size_curve: list[dict] = field(default_factory=list)  # closed-form heads: the val metric when fitted on less train data


def _scaler(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x.mean(0)), torch.from_numpy(x.std(0))


def finetune_scaler(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The scaler of a head whose backbone will train, or of a regression head: each std floored at a tenth of
    the median std (of the live dimensions, when most are dead: 1095 of EfficientNet-Lite0's 1280 channels
    on 40 small 32 px images, whose median std is 0).
    Near-constant pretrained dimensions (e.g. channels a CNN never fires) start moving once the backbone
    trains; dividing them by their ~0 pretrained std would blow the logits (or a regression output) up."""
    mean, std = _scaler(x)
    median = float(std.median())
    if median <= 1e-6 and bool((std > 1e-6).any()):
        median = float(std[std > 1e-6].median())
    return mean, std.clamp(min=0.1 * median + 1e-6)


def frozen_scaler(x: np.ndarray, floor: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The scaler of a head on frozen features: a dimension exactly constant on train carries nothing and is ignored
    (std = inf, so z = 0), or a channel that fires only at predict time would reach |z| ~ 1e6 through its ~0 train
    std (2 of the 6 EfficientNet-Lite0 channels dead on the image demo's train split fire on test). A linear
    head's weight for such a dimension is 0 anyway; an MLP's first-layer weights for it keep their random init.
    `floor`: the live stds floored as in `finetune_scaler` (what the regression heads use)."""
    mean, std = finetune_scaler(x) if floor else _scaler(x)
    std = std.clone()
    std[torch.from_numpy(x.max(0) == x.min(0))] = float("inf")  # exactly constant: tiny but varying features stay
    return mean, std


def _predict(head: ProbeHead, x: np.ndarray) -> np.ndarray:
    head.eval()
    with torch.inference_mode():
        return head(torch.from_numpy(x)).argmax(1).numpy()


def fit_logreg(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int, cfg: LinearProbeConfig, seed: int,
               scaler: tuple[torch.Tensor, torch.Tensor] | None = None) -> ProbeResult:
    head = ProbeHead(x.shape[1], n_classes, kind="linear")
    mean, std = scaler or frozen_scaler(x)
    head.set_scaler(mean, std)
    xs = ((x - mean.numpy()) / std.clamp(min=1e-6).numpy()).astype(np.float64)
    clf = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter, random_state=seed)
    clf.fit(xs, y)
    # sklearn only knows the classes present in y; place them into the full label space.
    w = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    b = np.full(n_classes, -1e4, dtype=np.float32)
    coef, icpt = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2 and coef.shape[0] == 1:  # binary: sklearn stores one row
        coef, icpt = np.vstack([-coef / 2, coef / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
    w[clf.classes_] = coef
    b[clf.classes_] = icpt
    lin = head.net[0]
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    f1 = float(f1_score(yv, _predict(head, xv), average="macro")) if len(yv) else float("nan")
    return ProbeResult(head, {"macro_f1": f1}, [{"epoch": 0, "val_macro_f1": f1, "train_iters": int(np.max(clf.n_iter_))}])


def fit_mlp(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int, cfg: LinearProbeConfig, seed: int,
            scaler: tuple[torch.Tensor, torch.Tensor] | None = None) -> ProbeResult:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = ProbeHead(x.shape[1], n_classes, kind="mlp", hidden=cfg.hidden, dropout=cfg.dropout)
    head.set_scaler(*(scaler or frozen_scaler(x)))  # dimensions dead on train ignored: see frozen_scaler
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    loss_fn = nn.CrossEntropyLoss()
    best, best_state, history = -1.0, None, []
    for epoch in range(cfg.epochs):
        head.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for s in range(0, len(perm), cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            loss = loss_fn(head(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().item() * len(idx)
        f1 = float(f1_score(yv, _predict(head, xv), average="macro"))
        history.append({"epoch": epoch, "train_loss": total / len(xt), "val_macro_f1": f1})
        if f1 > best:  # best epoch on validation is the one kept
            best, best_state = f1, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    return ProbeResult(head, {"macro_f1": best}, history)


def _regression_head(x: np.ndarray, y: np.ndarray, kind: str, cfg: LinearProbeConfig,
                     scaler: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[ProbeHead, np.ndarray, np.ndarray]:
    """A regression head with both scalers fitted on train (or the feature scaler given, as LP-FT does);
    returns (head, standardised x, standardised y). The feature std is floored as for fine-tuning and features
    constant on train are ignored (`frozen_scaler`): 58 dead EfficientNet channels on the image tilt demo fire
    on test; divided by their ~0 std they reached |z| ~ 3e6 and an MLP probe's test MAE 1253 degrees."""
    head = ProbeHead(x.shape[1], 1, kind=kind, hidden=cfg.hidden, dropout=cfg.dropout, task="regression")
    mean, std = scaler or frozen_scaler(x, floor=True)
    head.set_scaler(mean, std)
    head.set_target_scaler(float(y.mean()), float(y.std()))
    xs = (x - mean.numpy()) / std.clamp(min=1e-6).numpy()
    ys = (y - y.mean()) / max(float(y.std()), 1e-12)
    return head, xs, ys


def _val_regression(head: ProbeHead, xv: np.ndarray, yv: np.ndarray) -> dict:
    from tlops.evaluate import regression_metrics
    from tlops.modules.heads import predict_values

    return regression_metrics(yv, np.asarray(predict_values(head, xv)))


def fit_ridge(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, cfg: LinearProbeConfig, seed: int,
              scaler: tuple[torch.Tensor, torch.Tensor] | None = None) -> ProbeResult:
    """Ridge on the standardised features and target, alpha picked from `cfg.alphas` by validation MAE (the
    default gate metric); the chosen alpha's coefficients become the head's linear layer."""
    head, xs, ys = _regression_head(x, y, "linear", cfg, scaler)
    lin = head.net[0]
    best = None
    for alpha in cfg.alphas:
        reg = Ridge(alpha=alpha).fit(xs.astype(np.float64), ys)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(reg.coef_.astype(np.float32))[None])
            lin.bias.fill_(float(reg.intercept_))
        m = _val_regression(head, xv, yv)
        if best is None or m["mae"] < best[0]["mae"]:
            best = (m, alpha, {k: v.clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[2])
    # one row, as for logistic regression (a closed-form fit has no epochs); the alpha kept is part of it
    return ProbeResult(head, best[0], [{"epoch": 0, "alpha": best[1], **{f"val_{k}": v for k, v in best[0].items()}}])


def fit_mlp_regression(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, cfg: LinearProbeConfig, seed: int,
                       scaler: tuple[torch.Tensor, torch.Tensor] | None = None) -> ProbeResult:
    """The MLP head on the standardised target with MSE (or Huber) loss; the epoch with the best validation MAE is kept."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head, _, ys = _regression_head(x, y, "mlp", cfg, scaler)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(ys.astype(np.float32))
    loss_fn = nn.HuberLoss(delta=cfg.huber_delta) if cfg.loss == "huber" else nn.MSELoss()
    best, best_state, history = None, None, []
    for epoch in range(cfg.epochs):
        head.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for s in range(0, len(perm), cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            loss = loss_fn(head(xt[idx])[:, 0], yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().item() * len(idx)
        m = _val_regression(head, xv, yv)
        history.append({"epoch": epoch, "train_loss": total / len(xt), **{f"val_{k}": v for k, v in m.items()}})
        if best is None or m["mae"] < best["mae"]:
            best, best_state = m, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    return ProbeResult(head, best, history)


SIZE_FRACTIONS = (0.1, 0.25, 0.5)  # of the train rows; the full fit is the last point


def size_curve(score, y: np.ndarray, seed: int, metric: str, full: float, classes: bool = False) -> list[dict]:
    """A closed-form head has no epochs, so its learning curve is over data: `score(rows)` (the head refitted on
    those train rows, scored on val) at growing seeded subsets, per class for classes (every class kept).
    Tells whether more labelled data would still help. Cheap: each refit sees at most half the rows."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    curve = []
    for frac in SIZE_FRACTIONS:
        if classes:  # the first ceil(frac * n) rows of each class in the seeded order (at least one)
            rows = np.concatenate([order[y[order] == c][: max(1, int(np.ceil(frac * (y == c).sum())))] for c in np.unique(y)])
        else:
            rows = order[: max(2, int(np.ceil(frac * len(y))))]
        if len(rows) < len(y):
            curve.append({"train_rows": len(rows), metric: float(score(np.sort(rows)))})
    curve.append({"train_rows": len(y), metric: float(full)})
    return curve
