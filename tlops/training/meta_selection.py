"""Few-shot model selection on the support set (issue 30, meta-transfer): a meta-transfer run's candidates are the
meta-learned encoder and the no-meta-training baselines, and the one registered (and served for a support set given
at predict time) is the one the support set itself prefers.

Meta-training only helps when the novel classes look like the meta-training ones; on a shifted domain it can cost
accuracy (Guo et al. 2020, "A Broader Study of Cross-Domain Few-Shot Learning"; Chen et al. 2019, "A Closer Look at
Few-shot Classification"), and validation episodes drawn from the meta-training distribution cannot see the shift.
The support set is labelled data of the very classes to tell apart, so every candidate is scored by held-out
accuracy on the support rows: leave-one-shot-out, k folds (k = the smallest class's row count, at most 5), fold f
holding out the rows whose rank within their class is f mod k, so each fold keeps every class and a 5-shot support set
is scored by leaving one shot of every class out at a time. The run's validation-episode accuracy sets a prior: the
validation favourite is chosen unless another candidate's support accuracy beats the favourite's by more than
`PRIOR_Z` standard errors of the difference (`credibility`: 25 rows near chance almost never override it, a clear
lead or a large support set does), then the best on the support set is (`choose_task`; ties by validation accuracy,
then the simpler candidate, the order of `CANDIDATES`). Accuracy with a prior was chosen among log-loss, Brier and
accuracy rules with several tie-breaks and fixed margins, and z among a grid, on validation episodes of the text,
image and audio demos together (bench/fewshot_selection.py; bench/RESULTS.md, "Few-shot selection", parts 2-3); the
pooled candidates and z = 2 the same way (bench/fewshot_ensemble.py; part 4). A support set with one
row of some class cannot hold a row out: the choice then falls back to the validation-episode accuracy, and the record
says so.

Candidates (each a head on the backbone features, so the registered model packages and serves like any other head):
- `protonet0`: nearest prototype of the standardised frozen features (no meta-training);
- `linear_probe`: a scikit-learn logistic regression on the standardised frozen features;
- `finetune_support`: a new linear head, 100 AdamW steps on the support cross-entropy (Chen et al. 2019's Baseline);
- `meta_learned`: the meta-learned encoder adapted by its own rule (ProtoNet's prototypes, MAML's inner loop);
- `meta_probe`: a new linear head fine-tuned on the support set on top of the meta-learned embedding (the
  "Baseline++"/RFS family: meta-learned representation, support-fitted classifier; Tian et al. 2020);
- `ensemble` (`ENSEMBLES`): linear_probe, finetune_support and meta_probe pooled; `ensemble_all`: all five of the
  above pooled. Each member's logits are divided by
  its own temperature, the one of `TEMPERATURES` that minimises the log-loss of its held-out support logits (the folds
  above: a head's logits on its own fitting rows are over-confident), and averaged: a log-linear opinion pool, the
  normalised geometric mean of the calibrated probabilities. Calibrating first puts a fitted head's logits and another
  head's on one scale (uncalibrated, the largest-scale member would decide); averaging logits keeps the pool linear in
  each member's logits, so the pooled heads fold into one `ProbeHead` (`combine_heads`). Its held-out support logits
  pool the members' held-out logits at the same temperatures (fitted on those rows: a small optimism). Added because
  25 support rows cannot tell candidates 1 point apart, so the choice is mostly its prior, and no single candidate is
  the best one on every demo and shift: the pool needs no such choice (bench/RESULTS.md, "Few-shot selection, part 4").

One batched routine (`candidate_logits`: T support sets at once) serves the run's validation and test episodes, the
support folds and the bench; `candidate_head` folds the same fit into a `ProbeHead` for one support set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.func import vmap
from torch.nn import functional as F

from tlops.modules.heads import ProbeHead
from tlops.training.meta import (
    Encoder,
    MetaLearner,
    adapted_head,
    prototypes,
)

SINGLES = ("protonet0", "linear_probe", "finetune_support", "meta_learned", "meta_probe")
ENSEMBLES = {"ensemble": ("linear_probe", "finetune_support", "meta_probe"), "ensemble_all": SINGLES}  # pooled candidates: members
CANDIDATES = (*SINGLES, *ENSEMBLES)  # simplest first: ties go earlier
FROZEN = ("protonet0", "linear_probe", "finetune_support")  # on the pretrained backbone's standardised features
DESCRIPTIONS = {
    "protonet0": "nearest prototype of the frozen features (no meta-training)",
    "linear_probe": "logistic regression fitted on the support set (frozen features)",
    "finetune_support": "new linear head fine-tuned on the support set (frozen features)",
    "meta_learned": "the meta-learned encoder adapted by its own rule",
    "meta_probe": "new linear head fine-tuned on the support set on the meta-learned embedding (Baseline++/RFS)",
    "ensemble": "linear_probe, finetune_support and meta_probe, each calibrated on held-out support rows, logits averaged",
    "ensemble_all": "all five single candidates, each calibrated on held-out support rows, logits averaged",
}
CRITERION = "support_loo_accuracy"  # a score in the record (and the criterion of records written before the log-loss rule)
FALLBACK = "val_episode_accuracy"
PRIOR_Z = 2.0  # how many standard errors higher another candidate's support accuracy must be to override the favourite
# (chosen on val episodes with the pooled candidates, bench/fewshot_ensemble.py: z 2 and 2.5 make the same val choices,
# the tie goes to the smaller z, as in part 3; RESULTS "Few-shot selection, part 4")
RULE = "support_loo_accuracy, credibility-scaled, with the validation favourite as prior"  # chosen on validation episodes
RULES_BEFORE = ("support_loo_accuracy with the validation favourite as prior",)  # earlier records' criteria (still reselect)
MAX_FOLDS = 5
HEAD_STEPS, HEAD_LR, HEAD_DECAY = 100, 0.01, 1e-3  # finetune_support's budget (tlops.training.episodic_eval.finetune_support)
TIE = 1e-9


def fit_linear(z: torch.Tensor, y: torch.Tensor, n_classes: int, steps: int = HEAD_STEPS, lr: float = HEAD_LR,
               weight_decay: float = HEAD_DECAY) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear heads (w (T, C, D), b (T, C)) fitted on T support sets z (T, S, D) with class indices y (T, S): zero init,
    full-batch AdamW on each set's mean cross-entropy. The loss is the sum over sets and AdamW works per element, so
    each set's head follows the trajectory it would follow alone (as `episodic_eval.support_heads`, any class sizes)."""
    t, d = z.shape[0], z.shape[2]
    w = torch.zeros(t, n_classes, d, requires_grad=True)
    b = torch.zeros(t, 1, n_classes, requires_grad=True)
    opt = torch.optim.AdamW([w, b], lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            logits = torch.bmm(z, w.transpose(1, 2)) + b
            loss = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return w.detach(), b.detach()[:, 0]


def _logreg(z: torch.Tensor, y: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn logistic regressions (C=1, as the `linear_probe` baseline) on T support sets, as (w (T, C, D), b (T, C));
    a class absent from a set gets a bias that never wins."""
    from sklearn.linear_model import LogisticRegression

    t, d = z.shape[0], z.shape[2]
    w, b = torch.zeros(t, n_classes, d), torch.full((t, n_classes), -1e4)
    for i in range(t):
        yi = y[i].numpy()
        lr = LogisticRegression(C=1.0, max_iter=200).fit(z[i].double().numpy(), yi)
        cls = torch.as_tensor(lr.classes_, dtype=torch.long)
        coef, icpt = torch.as_tensor(lr.coef_, dtype=torch.float32), torch.as_tensor(lr.intercept_, dtype=torch.float32)
        if len(cls) == 2:  # binary: one decision function; softmax([-f/2, f/2]) = sigmoid(f)
            coef, icpt = torch.cat([-coef / 2, coef / 2]), torch.cat([-icpt / 2, icpt / 2])
        w[i, cls], b[i, cls] = coef, icpt
    return w, b


def _embed_scale(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (T, 1, E), scale (T, 1, 1)) of T support sets' embeddings: centred, then one RMS scale per set, so a head on
    the scaled embedding folds back into one on the embedding itself."""
    m = e.mean(1, keepdim=True)
    r = ((e - m) ** 2).mean((1, 2), keepdim=True).sqrt().clamp_min(1e-6)
    return m, r


def _linear_fit(name: str, encoder: Encoder, sx: torch.Tensor, sy: torch.Tensor, n_classes: int):
    """(w, b, the space they act on) of a linear candidate fitted on T support sets: the standardised frozen features, or
    the meta-learned embedding centred and scaled by the support's own (mean, scale)."""
    if name == "meta_probe":
        with torch.no_grad():
            e = encoder(sx)
        m, r = _embed_scale(e)
        w, b = fit_linear((e - m) / r, sy, n_classes)
        return w, b, ("meta", m, r)
    z = (sx - encoder.mean) / encoder.std
    if name == "protonet0":
        onehot = F.one_hot(sy, n_classes).float()
        protos = torch.stack([prototypes(zi, oh) for zi, oh in zip(z, onehot)])
        return 2 * protos, -(protos**2).sum(-1), ("frozen",)
    if name == "linear_probe":
        w, b = _logreg(z, sy, n_classes)
    elif name == "finetune_support":
        w, b = fit_linear(z, sy, n_classes)
    else:
        raise ValueError(f"unknown few-shot candidate {name!r}; valid: {', '.join(CANDIDATES)}")
    return w, b, ("frozen",)


def candidate_logits(name: str, encoder: Encoder, learner: MetaLearner, sx: torch.Tensor, sy: torch.Tensor, n_classes: int,
                     qx: torch.Tensor) -> torch.Tensor:
    """Query logits (T, Q, C) of candidate `name` fitted on T support sets (features sx (T, S, D), class indices sy (T, S))."""
    sx, qx = sx.float(), qx.float()
    if name in ENSEMBLES:
        if not bool((sy == sy[:1]).all()):  # support sets of different layouts: calibrated one by one
            return torch.cat([candidate_logits(name, encoder, learner, sx[i:i + 1], sy[i:i + 1], n_classes, qx[i:i + 1])
                              for i in range(len(sx))])
        temps = member_temperatures(name, encoder, learner, sx, sy[0].numpy(), n_classes)
        return pool_logits([candidate_logits(m, encoder, learner, sx, sy, n_classes, qx) for m in ENSEMBLES[name]],
                           [temps[m] for m in ENSEMBLES[name]])
    if name == "meta_learned":
        params = encoder.params()
        onehot = F.one_hot(sy, n_classes).float()

        def one(s: torch.Tensor, oh: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
            return learner.logits(encoder, learner.adapt(encoder, params, s, oh), q)

        with torch.no_grad():  # torch.func.grad still differentiates the inner loop
            return vmap(one)(sx, onehot, qx)
    w, b, space = _linear_fit(name, encoder, sx, sy, n_classes)
    with torch.no_grad():
        q = (qx - encoder.mean) / encoder.std if space[0] == "frozen" else (encoder(qx) - space[1]) / space[2]
        return torch.bmm(q, w.transpose(1, 2)) + b[:, None, :]


def candidate_head(name: str, encoder: Encoder, learner: MetaLearner, x: np.ndarray, y: np.ndarray, n_classes: int,
                   temperatures: dict[str, float] | None = None) -> ProbeHead:
    """Candidate `name` fitted on one support set (features x (S, D), class indices y), as a `ProbeHead` on the features:
    the same fit as `candidate_logits`, folded (the registered head and a support set given at predict time). A pool's
    members' `temperatures` when `select` already fitted them on this support set (else fitted here: the same values)."""
    xt, yt = torch.from_numpy(np.asarray(x, dtype=np.float32)), torch.as_tensor(np.asarray(y), dtype=torch.long)
    if name in ENSEMBLES:
        members = ENSEMBLES[name]
        temps = dict(temperatures or {})
        if not all(m in temps for m in members):
            temps = {m: float(t[0]) for m, t in member_temperatures(name, encoder, learner, xt[None], np.asarray(y), n_classes).items()}
        return combine_heads([candidate_head(m, encoder, learner, x, y, n_classes) for m in members],
                             [1.0 / (len(members) * float(temps[m])) for m in members])
    if name == "meta_learned":
        return adapted_head(learner, encoder, xt, yt, n_classes)[0]
    w, b, space = _linear_fit(name, encoder, xt[None], yt[None], n_classes)
    w, b = w[0], b[0]
    if space[0] == "frozen":
        head = ProbeHead(encoder.in_dim, n_classes, kind="linear")
        with torch.no_grad():
            head.net[0].weight.copy_(w)
            head.net[0].bias.copy_(b)
        head.set_scaler(encoder.mean, encoder.std)
        return head.eval()
    m, r = space[1][0, 0], space[2][0, 0, 0]
    return encoder.fold(encoder.params(), {"weight": w / r, "bias": b - (w / r) @ m})  # w.((e - m) / r) + b


def support_folds(y: np.ndarray) -> list[np.ndarray] | None:
    """Held-out masks of the support's leave-one-shot-out folds (module docstring), or None when some class has one row."""
    y = np.asarray(y)
    counts = np.unique(y, return_counts=True)[1]
    k = min(int(counts.min()), MAX_FOLDS) if len(counts) else 0
    if k < 2:
        return None
    rank = np.zeros(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rank[idx] = np.arange(len(idx))
    return [rank % k == f for f in range(k)]


def heldout_logits(names: Sequence[str], encoder: Encoder, learner: MetaLearner, sx: torch.Tensor, sy: np.ndarray,
                   n_classes: int) -> dict[str, torch.Tensor] | None:
    """Each candidate's held-out logits for every row of T support sets that share one layout (sx (T, S, D); sy (S,) class
    indices, the same for every set, as in class-major episodes): {name: (T, S, C)}, row i scored by the fit on the folds
    that hold it out; None when no fold exists."""
    folds = support_folds(sy)
    if folds is None:
        return None
    requested, names = list(names), list(dict.fromkeys(m for n in names for m in ENSEMBLES.get(n, (n,))))  # pools: their members
    sy_t = torch.as_tensor(sy, dtype=torch.long)
    t, s = sx.shape[0], sx.shape[1]
    out_logits = {n: torch.zeros(t, s, n_classes) for n in names}
    # folds of one size (a balanced support set) are fitted as one batch of t * k support sets: one AdamW run, not k
    groups = [folds] if len({int(h.sum()) for h in folds}) == 1 else [[h] for h in folds]
    for group in groups:
        keep = [torch.from_numpy(np.flatnonzero(~h)) for h in group]
        out = [torch.from_numpy(np.flatnonzero(h)) for h in group]
        fit_x = torch.cat([sx[:, k] for k in keep])  # (len(group) * t, S', D), fold-major
        fit_y = torch.cat([sy_t[k].expand(t, -1) for k in keep])
        query = torch.cat([sx[:, o] for o in out])
        for n in names:
            logits = candidate_logits(n, encoder, learner, fit_x, fit_y, n_classes, query)
            for g, o in enumerate(out):
                out_logits[n][:, o] = logits[g * t:(g + 1) * t]
    for n in requested:
        if n in ENSEMBLES:
            temps = [fit_temperature(out_logits[m], sy) for m in ENSEMBLES[n]]
            out_logits[n] = pool_logits([out_logits[m] for m in ENSEMBLES[n]], temps)
    return {n: out_logits[n] for n in requested}


def _finite(logits: torch.Tensor) -> torch.Tensor:
    """Logits as float32 with NaN and infinities replaced by finite stand-ins (0, +-1e6)."""
    return torch.nan_to_num(logits.float(), nan=0.0, posinf=1e6, neginf=-1e6)


def _grid_log_probs(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probabilities (G, T, S, C), mean log-loss (G, T)) of finite logits (T, S, C) divided by each temperature of
    `TEMPERATURES` (G of them), against class indices y (S,)."""
    logp = (logits[None] / TEMPERATURES[:, None, None, None]).log_softmax(-1)
    nll = -logp.gather(-1, y.expand(*logp.shape[:2], -1)[..., None])[..., 0].mean(-1)
    return logp, nll


def fit_temperature(logits: torch.Tensor, sy: np.ndarray) -> torch.Tensor:
    """(T,): per support set, the temperature of `TEMPERATURES` minimising the log-loss of its held-out logits (T, S, C)."""
    return TEMPERATURES[_grid_log_probs(_finite(logits), torch.as_tensor(sy, dtype=torch.long))[1].argmin(0)]


def pool_logits(logits: Sequence[torch.Tensor], temps: Sequence[torch.Tensor]) -> torch.Tensor:
    """The log-linear pool of members' logits (T, R, C), each divided by its per-set temperature (T,): their mean."""
    return torch.stack([_finite(lg) / t.reshape(-1, 1, 1) for lg, t in zip(logits, temps)]).mean(0)


def member_temperatures(name: str, encoder: Encoder, learner: MetaLearner, sx: torch.Tensor, sy: np.ndarray,
                        n_classes: int) -> dict[str, torch.Tensor]:
    """{member: (T,) temperature} of pooled candidate `name` on T support sets of one layout (sy (S,)), from the members'
    held-out support logits; a support set with a one-row class has none to calibrate on (ValueError)."""
    logits = heldout_logits(ENSEMBLES[name], encoder, learner, sx, sy, n_classes)
    if logits is None:
        raise ValueError(f"{name}: a support class has a single row, so no row can be held out to calibrate the members on")
    return {m: fit_temperature(v, sy) for m, v in logits.items()}


def combine_heads(heads: Sequence[ProbeHead], weights: Sequence[float]) -> ProbeHead:
    """One `ProbeHead` whose logits are sum_i weights[i] * heads[i](x), exactly: the heads (linear or MLP, one
    standardisation) side by side. Linear heads sum into one map; beside MLP heads that map goes through 2C more hidden
    units, since GELU(u) - GELU(-u) = u (the package format is unchanged: a linear or an MLP head)."""
    mean, std = heads[0].mean, heads[0].std
    if any(not (torch.equal(h.mean, mean) and torch.equal(h.std, std)) for h in heads):
        raise ValueError("heads to combine must share one standardisation")
    lin = [(h, a) for h, a in zip(heads, weights) if h.spec["kind"] == "linear"]
    mlp = [(h, a) for h, a in zip(heads, weights) if h.spec["kind"] == "mlp"]
    c, d = heads[0].spec["n_classes"], heads[0].spec["in_dim"]
    with torch.no_grad():
        w = sum((a * h.net[0].weight for h, a in lin), torch.zeros(c, d))
        b = sum((a * h.net[0].bias for h, a in lin), torch.zeros(c))
        if not mlp:
            head = ProbeHead(d, c, kind="linear")
            head.net[0].weight.copy_(w)
            head.net[0].bias.copy_(b)
        else:
            extra = 2 * c if lin else 0
            hidden = sum(h.spec["hidden"] for h, _ in mlp) + extra
            head = ProbeHead(d, c, kind="mlp", hidden=hidden, dropout=0.0)
            w1 = torch.cat([h.net[0].weight for h, _ in mlp] + ([w, -w] if lin else []))
            b1 = torch.cat([h.net[0].bias for h, _ in mlp] + ([torch.zeros(2 * c)] if lin else []))
            w2 = torch.cat([a * h.net[3].weight for h, a in mlp] + ([torch.eye(c), -torch.eye(c)] if lin else []), 1)
            b2 = sum((a * h.net[3].bias for h, a in mlp), b)
            head.net[0].weight.copy_(w1)
            head.net[0].bias.copy_(b1)
            head.net[3].weight.copy_(w2)
            head.net[3].bias.copy_(b2)
    head.set_scaler(mean, std)
    return head.eval()


def support_scores(names: Sequence[str], encoder: Encoder, learner: MetaLearner, sx: torch.Tensor, sy: np.ndarray,
                   n_classes: int) -> dict[str, np.ndarray] | None:
    """Each candidate's held-out support accuracy on T support sets of one layout (`heldout_logits`): {name: (T,)}."""
    logits = heldout_logits(names, encoder, learner, sx, sy, n_classes)
    if logits is None:
        return None
    truth = torch.as_tensor(sy, dtype=torch.long)
    return {n: (v.argmax(-1) == truth).float().mean(1).numpy() for n, v in logits.items()}


TEMPERATURES = torch.logspace(-2, 4, 61)  # the grid a candidate's held-out logits are calibrated over (logits / T)


def heldout_metrics(logits: torch.Tensor, sy: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of held-out logits (T, S, C) against the support's class indices sy (S,), each (T,): `accuracy`, raw
    `log_loss`, and the calibrated `log_loss_cal` / `brier_cal`: each candidate's logits divided by the temperature (one
    per set, from `TEMPERATURES`) that minimises it, so a nearest-prototype's squared distances and a fitted head's logits
    are compared by how well they rank the true class, not by their scale (at most log C: a flat prediction)."""
    y = torch.as_tensor(sy, dtype=torch.long)
    logits = _finite(logits)
    logp, nll = _grid_log_probs(logits, y)  # (G, T, S, C), (G, T)
    onehot = F.one_hot(y, logits.shape[-1]).float()
    brier = ((logp.exp() - onehot) ** 2).sum(-1).mean(-1)
    raw = -logits.log_softmax(-1).gather(-1, y.expand(logits.shape[0], -1)[..., None])[..., 0].mean(-1)
    return {"accuracy": (logits.argmax(-1) == y).float().mean(1).numpy(), "log_loss": raw.numpy(),
            "log_loss_cal": nll.min(0).values.numpy(), "brier_cal": brier.min(0).values.numpy()}


def choose(scores: dict[str, float | None], order: Sequence[str] = CANDIDATES) -> str:
    """The best-scoring candidate (higher is better; None: not scored), ties to the earlier in `order` (the simpler)."""
    scored = {n: v for n, v in scores.items() if v is not None and np.isfinite(v)}
    if not scored:
        raise ValueError("no candidate has a score to choose by")
    best = max(scored.values())
    return next(n for n in order if n in scored and scored[n] >= best - TIE)


def episode_accuracies(name: str, encoder: Encoder, learner: MetaLearner, x: np.ndarray, sampler, episodes: int,
                       chunk: int = 300) -> np.ndarray:
    """Query accuracy of candidate `name` on each of `episodes` class-major episodes of `sampler` over features x."""
    from tlops.training.episodes import way_targets

    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    sy, qy = way_targets(sampler.ways, sampler.shots), way_targets(sampler.ways, sampler.queries)
    out = []
    for start in range(0, episodes, chunk):
        ep = sampler.batch(start, min(chunk, episodes - start))
        logits = candidate_logits(name, encoder, learner, xt[ep.support], sy.expand(len(ep.support), -1), sampler.ways, xt[ep.query])
        out.append((logits.argmax(-1) == qy).float().mean(1).numpy())
    return np.concatenate(out)


def credibility(p_best: float, p_fav: float, rows: int) -> float:
    """How many standard errors a support accuracy `p_best` is above `p_fav`, both held-out accuracies on the same
    `rows` support rows: the difference over the binomial standard error of two accuracies, each smoothed as
    (correct + 1) / (rows + 2) so that 0 or 1 still has an error. 25 rows at ~0.33 accuracy have an error of ~0.13
    (a 0.08 lead is 0.6 errors: noise); 25 rows at 0.96 vs 0.88 ~0.08 (1 error); 120 rows at 0.85 ~0.05."""
    n = max(int(rows), 1)
    a, b = (p_best * n + 1) / (n + 2), (p_fav * n + 1) / (n + 2)
    se = np.sqrt((a * (1 - a) + b * (1 - b)) / n)
    return float((p_best - p_fav) / se)


def choose_task(scores: dict[str, dict[str, float]], val: dict[str, float | None], rows: int,
                order: Sequence[str] = CANDIDATES, z: float | None = None) -> tuple[str, str]:
    """(chosen, how) for one support set from each candidate's held-out support accuracy (`scores[name]["accuracy"]`
    on `rows` held-out support rows) and validation-episode accuracy (None: unknown): the validation favourite (the
    best validation accuracy among these candidates, ties to the simpler) is kept unless the best candidate by support
    accuracy beats the favourite's by more than `z` (default `PRIOR_Z`) standard errors (`credibility`); then that one
    is chosen (support accuracy, ties by validation accuracy, then the simpler). With no validation accuracy known, the
    best by support accuracy (ties to the simpler)."""
    z = PRIOR_Z if z is None else z
    names = [n for n in order if n in scores]
    acc = {n: round(float(scores[n]["accuracy"]), 9) for n in names}
    known = [n for n in names if val.get(n) is not None and np.isfinite(val[n])]
    v = {n: (float(val[n]) if n in known else -1.0) for n in names}
    best = max(names, key=lambda n: (acc[n], v[n], -names.index(n)))
    if not known:
        return best, "highest support accuracy (no validation-episode accuracy to set a prior), ties to the simpler"
    fav = max(known, key=lambda n: (val[n], -names.index(n)))
    lead = credibility(acc[best], acc[fav], rows) if best != fav else 0.0
    if best == fav or lead <= z + TIE:
        return fav, (f"the validation favourite ({val[fav]:.3f} on validation episodes), no candidate's support accuracy "
                     f"beating its own by more than {z:g} standard errors"
                     + (f" ({best}: +{acc[best] - acc[fav]:.3f}, {lead:.2f} errors)" if best != fav else ""))
    return best, (f"its support accuracy beats the validation favourite {fav}'s by {acc[best] - acc[fav]:.3f}, "
                  f"{lead:.2f} standard errors > {z:g}")


def select(encoder: Encoder, learner: MetaLearner, x: np.ndarray, y: np.ndarray, n_classes: int,
           candidates: Sequence[str], val_scores: dict[str, float | None] | None = None,
           excluded: dict[str, str] | None = None, temperatures: dict[str, float] | None = None) -> dict[str, Any]:
    """The selection record (`selection.json`'s schema, shared with domain adaptation) of one support set (features x,
    class indices y): every candidate's held-out support accuracy, its validation-episode accuracy when known, the
    chosen one (`choose_task`) and why. `excluded`: candidates left out, with the reason. `temperatures`: a dict this
    fills with each scored single candidate's held-out temperature, for `candidate_head` of a chosen pool."""
    val_scores, excluded = dict(val_scores or {}), pool_exclusions(excluded or {})
    y = np.asarray(y)
    if support_folds(y) is None:  # nothing held out: nothing to calibrate a pool's members on
        excluded |= {n: "a support class has a single row: no held-out rows to calibrate the members on"
                     for n in ENSEMBLES if n in candidates and n not in excluded}
    live = [n for n in CANDIDATES if n in candidates and n not in excluded]
    sx = torch.from_numpy(np.asarray(x, dtype=np.float32))[None]
    logits = heldout_logits(live, encoder, learner, sx, y, n_classes)
    per = {n: {m: float(v[0]) for m, v in heldout_metrics(lg, y).items()} for n, lg in logits.items()} if logits is not None else None
    if temperatures is not None and logits is not None:
        temperatures.update({n: float(fit_temperature(lg, y)[0]) for n, lg in logits.items() if n not in ENSEMBLES})
    if per is not None:
        chosen, how = choose_task(per, {n: val_scores.get(n) for n in live}, len(y))
        criterion, k = RULE, len(support_folds(y))
        counts = np.unique(y, return_counts=True)[1]
        why = (f"{chosen}: {how} (held-out on the {len(y)} support rows, {k} folds each holding out "
               f"{'one row' if counts.max() <= k else 'rows'} of every class; support accuracy {per[chosen]['accuracy']:.3f}).")
    else:
        known = {n: val_scores.get(n) for n in live}
        criterion = FALLBACK
        if not any(v is not None for v in known.values()):
            known = {"meta_learned": 1.0} if "meta_learned" in live else {live[0]: 1.0}
        chosen = choose(known)
        why = (f"a support class has a single row, so no support row can be held out; {chosen} was chosen by validation-episode "
               "accuracy (meta-training's classes: blind to a domain shift).")

    def scores(n: str) -> dict[str, float | None]:
        p = (per or {}).get(n)  # None: no fold, or an excluded candidate (not scored)
        return {CRITERION: p["accuracy"] if p else None, FALLBACK: val_scores.get(n)}

    return {"family": "meta_transfer", "criterion": criterion, "chosen": chosen, "why": why,
            "candidates": [{"name": n, "scores": scores(n), "excluded": excluded.get(n), "chosen": n == chosen}
                           for n in CANDIDATES if n in candidates]}


def pool_exclusions(excluded: dict[str, str]) -> dict[str, str]:
    """`excluded` (candidate -> why) and every pooled candidate with an excluded member."""
    out = dict(excluded)
    for n, members in ENSEMBLES.items():
        gone = [m for m in members if m in out]
        if gone and n not in out:
            out[n] = f"pools {', '.join(gone)}, which {'is' if len(gone) == 1 else 'are'} excluded"
    return out


def reselects(record: dict[str, Any]) -> bool:
    """Whether a package registered with this record chooses again for a support set given at predict time (its choice
    was made on the support set, not fixed by `strategy.selection: meta` or by a single candidate)."""
    return record.get("family") == "meta_transfer" and record.get("criterion") in (RULE, *RULES_BEFORE, CRITERION, FALLBACK)
