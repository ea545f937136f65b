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

No single criterion is safe on its own (SND rewards collapsed predictions; DEV's estimate is noisy; IM misreads
MMD's spread-out predictions), so a run does no harm in two steps (`collapse_reason`, `agreement_choice`): adapted
candidates that collapsed are dropped, then several criteria vote against the source-only baseline and an adapted
candidate is registered only when most of them prefer it.
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


# ---- do no harm: guard against collapse, then let several criteria agree against the source-only baseline -------

BASELINE = "source_only"


def marginal_distances(pred: np.ndarray, source_labels: np.ndarray, classes: int) -> dict[str, float]:
    """How far the target rows' predicted-class histogram is from uniform and from the source labels' histogram
    (total variation: 0 same, 1 disjoint), and the largest class's share of the target predictions."""
    p = np.bincount(np.asarray(pred, dtype=np.int64), minlength=classes)[:classes].astype(np.float64)
    q = np.bincount(np.asarray(source_labels, dtype=np.int64), minlength=classes)[:classes].astype(np.float64)
    p, q = p / max(p.sum(), 1.0), q / max(q.sum(), 1.0)
    return {"target_top_class_share": float(p.max()), "target_tv_uniform": float(0.5 * np.abs(p - 1.0 / classes).sum()),
            "target_tv_source": float(0.5 * np.abs(p - q).sum())}


def collapse_reason(row: dict[str, float], transfer_losses: list[float], keys: list[str], *, max_tv: float = 0.5,
                    domain_acc_high: float = 0.99, domain_acc_low: float = 0.25, blowup: float = 10.0) -> str | None:
    """Why an adapted candidate (its chosen epoch's row; its alignment loss per epoch up to that one) must not be
    registered, or None. Checks: a criterion in `keys` that is not a finite number (training diverged); target
    predictions piled into few classes, far (> max_tv) from uniform AND from the source's class marginal; a domain
    discriminator that wins (accuracy >= domain_acc_high: nothing was aligned) or loses completely (<= domain_acc_low);
    an alignment loss that blew up (non-finite, or > blowup x its smallest earlier value)."""
    bad = [k for k in keys if k in row and not np.isfinite(row[k])]
    if bad:
        return f"diverged: {', '.join(bad)} not a finite number"
    tvu, tvs = row.get("target_tv_uniform"), row.get("target_tv_source")
    if tvu is not None and tvs is not None and tvu > max_tv and tvs > max_tv:
        return (f"collapsed: {row.get('target_top_class_share', float('nan')):.0%} of target rows predicted as one class (class "
                f"marginal {tvu:.2f} from uniform and {tvs:.2f} from the source's, total variation > {max_tv:g})")
    acc = row.get("domain_acc")
    if acc is not None and acc >= domain_acc_high:
        return f"the domain discriminator wins completely (accuracy {acc:.3f}): source and target features were not aligned"
    if acc is not None and acc <= domain_acc_low:
        return f"the domain discriminator loses completely (accuracy {acc:.3f}): the adversarial game broke down"
    losses = [float(x) for x in transfer_losses]
    if losses and not np.isfinite(losses[-1]):
        return "the alignment loss blew up (not a finite number)"
    if len(losses) > 1 and min(losses[:-1]) > 0 and losses[-1] > blowup * min(losses[:-1]):
        return f"the alignment loss blew up ({losses[-1]:.3g}, {losses[-1] / min(losses[:-1]):.0f}x its smallest earlier value)"
    return None


def _better(a: float | None, b: float | None, higher: bool, tolerance: float = 0.0) -> bool:
    """a beats b; with a tolerance (a fraction of |b|), a is no worse than b by more than that."""
    if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)):
        return False
    if tolerance > 0:
        return a >= b - tolerance * abs(b) if higher else a <= b + tolerance * abs(b)
    return a > b if higher else a < b


def agreement_choice(scores: dict[str, dict[str, float]], excluded: dict[str, str | None], criteria: list[tuple],
                     need: int, baseline: str = BASELINE) -> tuple[str, str, dict[str, int]]:
    """Choose among candidates by an agreement of criteria against the baseline (never excluded). `scores`: name ->
    {key: value}; `criteria`: (label, key, higher is better[, tolerance]): a criterion with a tolerance votes for a
    candidate that is no worse than the baseline by more than that fraction (source val: adapting may cost a little
    source accuracy, it must not cost much), the others for one that is better. An adapted candidate is credibly
    better when at least `need` criteria vote for it; among those, the most votes win, ties broken by the mean rank
    over the criteria, then by source val (the one criterion measured with labels, when it is one of them). Returns (chosen name, one sentence why, votes per candidate)."""
    criteria = [(c[0], c[1], c[2], c[3] if len(c) > 3 else 0.0) for c in criteria]
    base = scores[baseline]
    votes = {n: (sum(_better(s.get(k), base.get(k), hi, tol) for _, k, hi, tol in criteria) if n != baseline else 0)
             for n, s in scores.items()}
    eligible = [n for n in scores if n != baseline and excluded.get(n) is None]
    credible = [n for n in eligible if votes[n] >= need]
    total = len(criteria)
    labels = ", ".join(label for label, *_ in criteria)
    if not credible:
        if not eligible:
            return baseline, (f"kept {baseline}: every adapted candidate was excluded as unsafe "
                              f"({'; '.join(f'{n}: {excluded[n]}' for n in scores if n != baseline)})"), votes
        best = max(eligible, key=lambda n: votes[n])
        return baseline, (f"kept {baseline}: no adapted candidate is credibly better (at least {need} of {total} criteria "
                          f"[{labels}] must prefer it; the best, {best}, has {votes[best]})"), votes

    def mean_rank(n: str) -> float:
        ranks = []
        for _, k, hi, _ in criteria:
            vals = sorted((scores[m].get(k) for m in credible if scores[m].get(k) is not None and np.isfinite(scores[m][k])), reverse=hi)
            v = scores[n].get(k)
            ranks.append(vals.index(v) if v is not None and v in vals else len(credible))
        return float(np.mean(ranks))

    def source_val(n: str) -> float:  # the last tie-break: the one criterion measured with labels (source val), when it votes
        for label, k, hi, _ in criteria:
            v = scores[n].get(k)
            if label == "source_val" and v is not None and np.isfinite(v):
                return -v if hi else v
        return 0.0

    order = {n: (-votes[n], mean_rank(n), source_val(n)) for n in credible}
    chosen = min(credible, key=lambda n: order[n])
    tied = [n for n in credible if n != chosen and order[n][:2] == order[chosen][:2]]
    tie = (f"; tied on votes and mean rank with {', '.join(tied)}, it has the better source val" if tied and
           order[chosen][2] != min(order[n][2] for n in tied) else f"; tied on votes and mean rank with {', '.join(tied)}" if tied else "")
    return chosen, (f"{chosen}: {votes[chosen]} of {total} label-free criteria [{labels}] vote for it over {baseline} "
                    f"(at least {need} needed), the most of the {len(credible)} credible candidate(s){tie}"), votes
