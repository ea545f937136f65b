"""Heads fitted on fixed features: logistic regression (scikit-learn) or a small MLP (torch), the best
epoch on validation kept. Used by the `linear_probe` strategy and by LP-FT in `finetune`."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from torch import nn

from tlops.modules.heads import ProbeHead

if TYPE_CHECKING:
    from tlops.strategies.linear_probe import LinearProbeConfig


@dataclass
class ProbeResult:
    head: ProbeHead
    val_macro_f1: float
    history: list[dict]  # per-epoch metrics (MLP) or one row (logistic regression)


def _scaler(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x.mean(0)), torch.from_numpy(x.std(0))


def finetune_scaler(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The scaler of a head whose backbone will train: each std floored at a tenth of the median std.
    Near-constant pretrained dimensions (e.g. channels a CNN never fires) start moving once the backbone
    trains; dividing them by their ~0 pretrained std would blow the logits up."""
    mean, std = _scaler(x)
    return mean, std.clamp(min=0.1 * float(std.median()) + 1e-6)


def _predict(head: ProbeHead, x: np.ndarray) -> np.ndarray:
    head.eval()
    with torch.inference_mode():
        return head(torch.from_numpy(x)).argmax(1).numpy()


def fit_logreg(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int, cfg: LinearProbeConfig, seed: int,
               scaler: tuple[torch.Tensor, torch.Tensor] | None = None) -> ProbeResult:
    head = ProbeHead(x.shape[1], n_classes, kind="linear")
    mean, std = scaler or _scaler(x)
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
    return ProbeResult(head, f1, [{"epoch": 0, "val_macro_f1": f1, "train_iters": int(np.max(clf.n_iter_))}])


def fit_mlp(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int, cfg: LinearProbeConfig, seed: int,
            scaler: tuple[torch.Tensor, torch.Tensor] | None = None) -> ProbeResult:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = ProbeHead(x.shape[1], n_classes, kind="mlp", hidden=cfg.hidden, dropout=cfg.dropout)
    head.set_scaler(*(scaler or _scaler(x)))
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
    return ProbeResult(head, best, history)


def train_probe(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int, cfg: LinearProbeConfig, seed: int = 0) -> ProbeResult:
    fit = fit_logreg if cfg.head == "logreg" else fit_mlp
    return fit(x.astype(np.float32), y, xv.astype(np.float32), yv, n_classes, cfg, seed)
