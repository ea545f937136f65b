"""Drift of production inputs in the backbone's own feature space (`tlops drift`): no labels needed.

A model's inputs go through its pretrained backbone; new inputs that moved away from the training data move in that
space first. Two tests on the features (reference: the training split's features, from the feature cache; new: the
inputs to check, embedded by the same backbone):

- **MMD** (maximum mean discrepancy, Gretton et al. 2012): the unbiased MMD^2 with a Gaussian kernel whose width is the
  median pairwise distance of the pooled rows, and its p-value by permutation (the rows' domain labels shuffled
  `permutations` times; p = (1 + #{MMD^2_perm >= MMD^2}) / (1 + permutations)). Tells whether the two samples differ.
- **Domain classifier AUC** (as a DANN discriminator would see it): a logistic regression told reference from new
  rows on the pooled rows' top 32 principal components, scored out of fold (stratified k-fold); 0.5 =
  indistinguishable, 1.0 = separable. Tells by how much.

And the model's own signals: the distribution of its predicted classes (total variation distance between the two
samples' predicted-class frequencies) and its mean confidence (mean max-probability), or for a model of numbers the
mean and spread of its predictions.

The verdict: `drift` when the MMD p-value is below `alpha` and the AUC reaches `auc_threshold` (a significant and
sizeable shift); `possible drift` when only one of the two holds (with many rows a tiny shift is significant; with
few a large one may not be); else `no drift`. The rows that look most out of distribution are the new rows farthest
from their nearest reference rows (mean distance to the k nearest, in units of the reference's own k-NN distance).

Plain numpy/scikit-learn: no torch, no tracking.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

ALPHA = 0.01  # the MMD test's significance level
AUC_THRESHOLD = 0.75  # a domain classifier this good calls the shift sizeable
PERMUTATIONS = 500
MAX_ROWS = 2000  # rows per side for the kernel test (a seeded sample beyond it): the test is O(n^2)


@dataclass
class DriftReport:
    reference_rows: int
    new_rows: int
    mmd2: float
    mmd_p_value: float
    domain_auc: float
    verdict: str
    reasons: list[str]
    alpha: float = ALPHA
    auc_threshold: float = AUC_THRESHOLD
    prediction_shift: dict = field(default_factory=dict)  # the model's own signals (see `prediction_shift`)
    most_out_of_distribution: list[dict] = field(default_factory=list)  # {"row": i, "score": s}, new rows, worst first

    def as_dict(self) -> dict:
        return asdict(self)


def _sample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[np.sort(rng.choice(len(x), n, replace=False))]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def median_bandwidth(z: np.ndarray) -> float:
    """The median heuristic: the median of the pooled rows' pairwise distances (their squared distances' median,
    square-rooted); 1.0 when every row is the same."""
    d = _sq_dists(z, z)[np.triu_indices(len(z), 1)]
    med = float(np.sqrt(np.median(d))) if d.size else 0.0
    return med if med > 0 else 1.0


def _mmd2_from_kernel(k: np.ndarray, n: int) -> float:
    """Unbiased MMD^2 of the first `n` rows against the rest, from the pooled kernel matrix."""
    m = len(k) - n
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0,
             max_rows: int = MAX_ROWS) -> tuple[float, float]:
    """(unbiased MMD^2 with a median-width Gaussian kernel, its permutation p-value) of samples `x` and `y`."""
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the MMD test needs at least 2 rows on each side")
    rng = np.random.default_rng(seed)
    x, y = _sample(np.asarray(x, np.float64), max_rows, rng), _sample(np.asarray(y, np.float64), max_rows, rng)
    z = np.concatenate([x, y])
    width = median_bandwidth(z)
    k = np.exp(-_sq_dists(z, z) / (2.0 * width * width))
    n, total = len(x), len(z)
    observed = float(_mmd2_of_assignments(k, n, (np.arange(total) < n)[:, None].astype(np.float64))[0])
    above = 0
    for start in range(0, permutations, 100):  # the permutations' MMD^2 by matrix products, 100 at a time
        chunk = min(100, permutations - start)
        a = np.zeros((total, chunk))
        for j in range(chunk):
            a[rng.permutation(total)[:n], j] = 1.0
        above += int((_mmd2_of_assignments(k, n, a) >= observed).sum())
    return observed, (1.0 + above) / (1.0 + permutations)


def _mmd2_of_assignments(k: np.ndarray, n: int, a: np.ndarray) -> np.ndarray:
    """`_mmd2_from_kernel` for many splits at once: column j of `a` marks (1.0) the `n` rows on the first side. With `b`
    = 1 - a, the sums over a side are a'Ka, b'Kb = 1'K1 - 2a'K1 + a'Ka and a'Kb = a'K1 - a'Ka (K symmetric); the
    diagonal's share is a'diag(K)."""
    m = len(k) - n
    ka = k @ a
    s_aa, s_a1 = (a * ka).sum(0), ka.sum(0)
    diag = np.diag(k)
    tr_a = diag @ a
    s_bb, tr_b = k.sum() - 2.0 * s_a1 + s_aa, diag.sum() - tr_a
    return (s_aa - tr_a) / (n * (n - 1)) + (s_bb - tr_b) / (m * (m - 1)) - 2.0 * (s_a1 - s_aa) / (n * m)


AUC_COMPONENTS = 32  # the domain classifier reads the pooled rows' top principal components (no domain labels used)


def domain_auc(x: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 5, components: int = AUC_COMPONENTS) -> float:
    """Out-of-fold ROC AUC of a logistic regression telling `y`'s rows (new) from `x`'s (reference), on the pooled
    rows' top `components` principal components (fitted without the domain labels: a sample of 50 rows against a
    1280-wide feature would otherwise be separable by chance), standardised, classes weighted by their sizes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    z = np.concatenate([x, y]).astype(np.float64)
    if z.shape[1] > components:
        z = z - z.mean(0)
        _, _, vt = np.linalg.svd(z, full_matrices=False)
        z = z @ vt[:components].T
    d = np.r_[np.zeros(len(x)), np.ones(len(y))]
    k = int(min(folds, len(x), len(y)))
    if k < 2:
        raise ValueError("the domain classifier needs at least 2 rows on each side")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000))
    proba = cross_val_predict(clf, z, d, cv=StratifiedKFold(k, shuffle=True, random_state=seed), method="predict_proba")[:, 1]
    return float(roc_auc_score(d, proba))


def out_of_distribution(x: np.ndarray, y: np.ndarray, k: int = 5, top: int = 10) -> list[dict]:
    """The new rows (`y`) farthest from the reference (`x`): the mean distance to their k nearest reference rows,
    divided by the median of the reference rows' own mean distance to their k nearest others (1 = as typical as a
    training row). Worst first, at most `top`."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    k = max(1, min(k, len(x) - 1))
    dy = np.sqrt(np.sort(_sq_dists(y, x), axis=1)[:, :k]).mean(1)
    dxx = _sq_dists(x, x)
    np.fill_diagonal(dxx, np.inf)
    typical = float(np.median(np.sqrt(np.sort(dxx, axis=1)[:, :k]).mean(1))) or 1.0
    score = dy / typical
    order = np.argsort(-score, kind="stable")[:top]
    return [{"row": int(i), "score": round(float(score[i]), 3)} for i in order]


def prediction_shift(ref_outputs: np.ndarray, new_outputs: np.ndarray, labels: list[str] | None) -> dict:
    """The model's own view. Class probabilities (`labels` given): each sample's predicted-class shares, their total
    variation distance (0 = same mix, 1 = disjoint) and the mean confidence (max probability) of each. Numbers: the
    mean and standard deviation of the predictions on each side."""
    if labels:
        ref_pred, new_pred = ref_outputs.argmax(1), new_outputs.argmax(1)
        ref_share = np.bincount(ref_pred, minlength=len(labels)) / len(ref_pred)
        new_share = np.bincount(new_pred, minlength=len(labels)) / len(new_pred)
        return {"kind": "classes",
                "reference_share": {lab: round(float(v), 4) for lab, v in zip(labels, ref_share)},
                "new_share": {lab: round(float(v), 4) for lab, v in zip(labels, new_share)},
                "total_variation": round(float(0.5 * np.abs(ref_share - new_share).sum()), 4),
                "reference_confidence": round(float(ref_outputs.max(1).mean()), 4),
                "new_confidence": round(float(new_outputs.max(1).mean()), 4)}
    r, n = np.asarray(ref_outputs, np.float64).ravel(), np.asarray(new_outputs, np.float64).ravel()
    return {"kind": "numbers", "reference_mean": round(float(r.mean()), 4), "new_mean": round(float(n.mean()), 4),
            "reference_std": round(float(r.std()), 4), "new_std": round(float(n.std()), 4)}


def check_drift(reference: np.ndarray, new: np.ndarray, alpha: float = ALPHA, auc_threshold: float = AUC_THRESHOLD,
                permutations: int = PERMUTATIONS, seed: int = 0, prediction: dict | None = None) -> DriftReport:
    """The two tests, the verdict and the most out-of-distribution new rows (see the module's docstring)."""
    reference, new = np.asarray(reference, np.float64), np.asarray(new, np.float64)
    if reference.ndim != 2 or new.ndim != 2 or reference.shape[1] != new.shape[1]:
        raise ValueError(f"features of one width expected, got {reference.shape} and {new.shape}")
    mmd2, p = mmd_test(reference, new, permutations=permutations, seed=seed)
    auc = domain_auc(reference, new, seed=seed)
    significant, sizeable = p < alpha, auc >= auc_threshold
    reasons = [f"MMD p-value {p:.4f} {'<' if significant else '>='} alpha {alpha:g}",
               f"domain-classifier AUC {auc:.3f} {'>=' if sizeable else '<'} {auc_threshold:g}"]
    verdict = "drift" if significant and sizeable else "possible drift" if significant or sizeable else "no drift"
    return DriftReport(reference_rows=len(reference), new_rows=len(new), mmd2=mmd2, mmd_p_value=p, domain_auc=auc,
                       verdict=verdict, reasons=reasons, alpha=alpha, auc_threshold=auc_threshold,
                       prediction_shift=prediction or {}, most_out_of_distribution=out_of_distribution(reference, new))


def drift_png(reference: np.ndarray, new: np.ndarray, path, title: str = "") -> None:
    """The two samples on the reference's first two principal components (left) and each new row's distance to its
    nearest reference rows against the reference's own (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference, new = np.asarray(reference, np.float64), np.asarray(new, np.float64)
    mean = reference.mean(0)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    axes2 = vt[:2].T if vt.shape[0] >= 2 else np.eye(reference.shape[1], 2)
    r2, n2 = (reference - mean) @ axes2, (new - mean) @ axes2
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.scatter(r2[:, 0], r2[:, 1], s=8, alpha=0.5, label=f"training ({len(reference)})")
    a.scatter(n2[:, 0], n2[:, 1], s=8, alpha=0.5, label=f"new ({len(new)})")
    a.set_xlabel("PC 1 of the training features")
    a.set_ylabel("PC 2")
    a.legend(fontsize=8)
    scores = [r["score"] for r in out_of_distribution(reference, new, top=len(new))]
    b.hist(scores, bins=30, color="tab:orange")
    b.axvline(1.0, color="k", lw=1, ls="--")
    b.set_xlabel("distance to nearest training rows (1 = typical training row)")
    b.set_ylabel("new inputs")
    fig.suptitle(title or "drift")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- the scheduled check's event (Prefect does the sending)

DRIFT_EVENT = "tlops.data.drift"
PAYLOAD_KEYS = ("verdict", "model_uri", "model", "version", "data", "data_md5", "reference", "reference_rows", "new_rows",
                "mmd2", "mmd_p_value", "domain_auc", "alpha", "auc_threshold", "run_id")


def model_resource(model: str) -> str:
    """The Prefect event resource a registered model's drift checks speak for (a retrain trigger matches it)."""
    return f"tlops.model.{model}"


def announce_key(version: str, data_md5: str) -> str:
    """What a drift announcement is about: this champion version against these inputs."""
    return f"v{version}:{data_md5}"


def should_announce(verdict: str, key: str, announced: str | None) -> bool:
    """Ask for a retrain on a `drift` verdict, once per champion version and inputs file: a retrain on the same training
    data does not make the same inputs look less shifted, so the next tick's `drift` on them must not start another run
    (a new champion, or new inputs, are announced again)."""
    return verdict == "drift" and key != announced


def drift_event(result: dict, schedule: str, announce: bool) -> dict:
    """The keyword arguments of `prefect.events.emit_event` for a drift check's result (`tlops drift --json`'s fields,
    with `run_id` and `data_md5`): the resource is the model (its labels the verdict, the version checked and whether
    this event asks for a retrain: what a trigger can match), the payload the verdict and its numbers."""
    resource = {"prefect.resource.id": model_resource(result["model"]), "prefect.resource.name": result["model"],
                "tlops.model.version": str(result["version"]), "tlops.drift.verdict": result["verdict"],
                "tlops.drift.announce": "true" if announce else "false", "tlops.schedule": schedule}
    payload = {k: result.get(k) for k in PAYLOAD_KEYS}
    payload["prediction_shift"] = {k: v for k, v in result.get("prediction_shift", {}).items() if isinstance(v, (int, float, str))}
    payload["schedule"] = schedule
    return {"event": DRIFT_EVENT, "resource": resource, "payload": payload}


def drift_trigger_match(model: str) -> dict:
    """The resource labels a retrain-on-drift trigger matches: the model's drift events that ask for a retrain."""
    return {"prefect.resource.id": model_resource(model), "tlops.drift.verdict": "drift", "tlops.drift.announce": "true"}


def drift_trigger_source(schedule: str) -> str:
    """The triggered run's `source` (its MLflow tag `tlops.config_source`, and the `by` of its alias moves in `tlops history`):
    a Jinja template Prefect renders from the triggering event, naming the drift check's MLflow run
    (`trigger:tlops.data.drift (<schedule>) drift:<run id>`; `trigger:` as the data-change trigger's)."""
    return f"trigger:{DRIFT_EVENT} ({schedule}) drift:{{{{ event.payload.run_id }}}}"
