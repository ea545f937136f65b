"""Model selection without target labels, for domain adaptation (what TLlib does not ship: it selects on
labelled target data).

- DEV, Deep Embedded Validation (You et al., ICML 2019): the source validation loss reweighted by the
  density ratio p_target(z)/p_source(z) of the features, estimated with a domain classifier, with the
  control variate that cuts its variance. An estimate of the target risk: lower is better.
- SND, Soft Neighborhood Density (Saito et al., ICCV 2021): the entropy of each target prediction's
  softmax-normalised similarity to the other target predictions; a model whose target predictions form
  dense, consistent neighbourhoods scores higher: higher is better.
- IWV, importance-weighted validation, self-normalised (Sugiyama et al. 2007): sum(w*l)/sum(w). Biased but
  bounded by the smallest and largest validation loss, so extreme weights cannot drive it negative the
  way DEV's control variate can: lower is better.
- IM, information maximisation: entropy of the mean target prediction minus the mean entropy of each
  target prediction (confident and diverse; a model that puts every target row in one class scores low,
  which SND does not punish): higher is better.
- BNM, batch nuclear norm (Cui et al., CVPR 2020): the nuclear norm of the target softmax matrix over
  the row count, large when predictions are both confident and spread over classes: higher is better.
  Musgrave et al. (ECCV 2022, "Benchmarking validation methods for unsupervised domain adaptation")
  found prediction-based criteria of this kind ahead of IWV and DEV; bench/domain_adapt.py measures all
  of them on the demo shifts.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def density_ratio(z_source: np.ndarray, z_target: np.ndarray, z_eval: np.ndarray, seed: int = 0, clip: float = 1e-3) -> np.ndarray:
    """p_target(z)/p_source(z) at `z_eval`, from a logistic-regression domain classifier fitted on source vs
    target features (the probabilities are clipped, so one separable point cannot make an infinite weight)."""
    scaler = StandardScaler().fit(np.vstack([z_source, z_target]))
    x = scaler.transform(np.vstack([z_source, z_target]))
    d = np.r_[np.zeros(len(z_source)), np.ones(len(z_target))]
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(x, d)
    p = np.clip(clf.predict_proba(scaler.transform(z_eval))[:, 1], clip, 1 - clip)
    return p / (1 - p) * (len(z_source) / len(z_target))  # the classifier's prior odds are n_t / n_s


def dev_risk(val_losses: np.ndarray, weights: np.ndarray) -> float:
    """DEV's target-risk estimate: mean(w*l) + eta*mean(w) - eta, eta = -Cov(w*l, w)/Var(w) (the control
    variate: E[w] = 1 under the source, so the term has mean 0 and cancels the weights' noise)."""
    weighted = weights * val_losses
    var = float(np.var(weights, ddof=1)) if len(weights) > 1 else 0.0
    eta = -float(np.cov(weighted, weights)[0, 1]) / var if var > 0 else 0.0
    return float(weighted.mean() + eta * weights.mean() - eta)


def soft_neighborhood_density(logits: torch.Tensor, temperature: float = 0.05) -> float:
    """SND: mean entropy over target rows of softmax(sim / T) over the other rows, where sim is the cosine
    similarity of the softmax predictions."""
    p = torch.nn.functional.normalize(torch.softmax(logits.float(), 1), dim=1)
    sim = p @ p.T
    sim.fill_diagonal_(-float("inf"))  # a row is not its own neighbour
    q = torch.softmax(sim / temperature, 1)
    return float(-(q * torch.log(q.clamp_min(1e-12))).sum(1).mean())


def iwv_risk(val_losses: np.ndarray, weights: np.ndarray) -> float:
    """Self-normalised importance-weighted validation loss: sum(w*l)/sum(w)."""
    total = float(weights.sum())
    return float((weights * val_losses).sum() / total) if total > 0 else float(val_losses.mean())


def information_maximization(logits: torch.Tensor) -> float:
    """H(mean p) - mean H(p) over the target rows' softmax predictions."""
    p = torch.softmax(logits.float(), 1)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(1).mean()
    mean = p.mean(0)
    return float(-(mean * torch.log(mean.clamp_min(1e-12))).sum() - entropy)


def batch_nuclear_norm(logits: torch.Tensor) -> float:
    """||softmax(logits)||_* / rows."""
    p = torch.softmax(logits.float(), 1)
    return float(torch.linalg.matrix_norm(p, ord="nuc") / len(p))
