"""LogME against a brute-force reference, the H-score against its definition, and the ranking's refusals: pure numpy on
small arrays."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from tlops.transferability.scores import h_score, log_evidence, logme, logme_details, targets_matrix


def _regression(n, d, seed=0, noise=1.0, scale=0.3):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, d))
    return f, f @ rng.normal(size=d) * scale + noise * rng.normal(size=n)


def _brute_max(f, y):
    """max over (alpha, beta) of log N(y; 0, F F'/alpha + I/beta), by Nelder-Mead on (log alpha, log beta) from a grid's
    best point: the evidence evaluated directly, nothing shared with LogME's fixed point."""
    grid = [(a, b) for a in np.linspace(-6, 8, 15) for b in np.linspace(-6, 8, 15)]
    start = max(grid, key=lambda p: log_evidence(f, y, np.exp(p[0]), np.exp(p[1])))
    res = minimize(lambda p: -log_evidence(f, y, np.exp(p[0]), np.exp(p[1])), start, method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
    return -res.fun, np.exp(res.x)


@pytest.mark.parametrize("n,d", [(40, 8), (30, 50), (25, 25)])  # more rows than features, fewer, as many
def test_logme_is_the_maximised_evidence_of_the_brute_force_reference(n, d):
    f, y = _regression(n, d, seed=n + d)
    found = logme_details(f, y, regression=True)["columns"][0]
    best, (alpha, beta) = _brute_max(f, y)
    # the fixed point lands on the evidence's maximum: same value, same hyperparameters
    assert found["evidence"] == pytest.approx(best, abs=1e-7)
    assert found["alpha"] == pytest.approx(alpha, rel=1e-4) and found["beta"] == pytest.approx(beta, rel=1e-4)
    # and its closed form (through the eigenvalues) is the direct n x n Gaussian at those hyperparameters
    assert found["evidence"] == pytest.approx(log_evidence(f, y, found["alpha"], found["beta"]), abs=1e-8)


def test_classification_averages_one_hot_columns_over_classes():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 36)
    f = rng.normal(size=(36, 5)) + y[:, None]
    per_class = [logme(f, (y == c).astype(float), regression=True) for c in range(3)]
    assert logme(f, y) == pytest.approx(np.mean(per_class), abs=1e-12)
    # class names are any distinct values
    assert logme(f, np.array(["a", "b", "c"])[y]) == pytest.approx(logme(f, y), abs=1e-12)
    assert targets_matrix(y, regression=False).sum(axis=1).tolist() == [1.0] * 36


def test_logme_prefers_features_that_carry_the_target():
    rng = np.random.default_rng(2)
    y = np.arange(120) % 4
    centres = rng.normal(0, 3, (4, 16))
    good = centres[y] + rng.normal(size=(120, 16))
    noise = rng.normal(size=(120, 16))
    wide_noise = rng.normal(size=(120, 200))  # more features than rows: still no evidence for the labels
    assert logme(good, y) > logme(noise, y) and logme(good, y) > logme(wide_noise, y)
    f, t = _regression(80, 10, seed=3, noise=0.1)
    assert logme(f, t, regression=True) > logme(rng.normal(size=(80, 10)), t, regression=True)


def test_h_score_is_the_trace_of_the_definition_and_orders_features():
    rng = np.random.default_rng(4)
    y = np.arange(90) % 3
    f = rng.normal(size=(90, 6)) + 2 * y[:, None]
    fc = f - f.mean(0)
    means = np.stack([fc[y == c].mean(0) for c in y])
    direct = np.trace(np.linalg.pinv(np.cov(fc.T, bias=True)) @ np.cov(means.T, bias=True))
    assert h_score(f, y, shrinkage=False) == pytest.approx(direct, rel=1e-9)
    assert 0 < h_score(f, y) <= h_score(f, y, shrinkage=False) + 1e-9 <= 2 + 1e-9  # at most classes - 1
    assert h_score(f, y) > h_score(rng.normal(size=(90, 6)), y)


def test_h_score_in_row_space_equals_the_dense_definition():
    """Fewer rows than features: the Woodbury route gives tr(shrunk cov^-1 (1 - s) cov(E[f|y])) computed densely."""
    from tlops.transferability.scores import _ledoit_wolf

    rng = np.random.default_rng(6)
    y = np.arange(30) % 4
    f = rng.normal(size=(30, 70)) + y[:, None] * rng.normal(size=70)
    fc = f - f.mean(0)
    cov, s = _ledoit_wolf(fc)
    means = np.stack([fc[y == c].mean(0) for c in y])
    dense = np.trace(np.linalg.solve(cov, (1 - s) * means.T @ means / len(y)))
    assert 0 < s < 1 and h_score(f, y) == pytest.approx(dense, rel=1e-9)


def test_ledoit_wolf_shrinkage_matches_scikit_learn():
    """The values sklearn.covariance.ledoit_wolf(x, assume_centered=True) gives for this x (scikit-learn 1.x; written
    down: importing it costs seconds)."""
    from tlops.transferability.scores import _ledoit_wolf

    x = np.random.default_rng(5).normal(size=(30, 12))
    x -= x.mean(0)
    cov, s = _ledoit_wolf(x)
    assert s == pytest.approx(0.9723992674029392, rel=1e-10)
    assert cov[0, 0] == pytest.approx(0.9191959952998381, rel=1e-10) and cov[0, 1] == pytest.approx(-0.003955068443438902, rel=1e-9)
    assert cov[3, 7] == pytest.approx(0.0020557221454588228, rel=1e-9)


def test_bad_features_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        logme(np.array([[0.0, np.nan], [1.0, 2.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="must be"):
        logme(np.zeros((3, 2)), np.array([0, 1]))


def test_rank_refuses_task_types_that_are_not_one_input_one_target():
    from tlops.task_types import task_type
    from tlops.task_types.registry import all_task_types
    from tlops.transferability.rank import rankable

    kinds = {name: rankable(t) for name, t in all_task_types().items()}
    assert kinds["classification"] and kinds["regression"]
    assert not any(kinds[k] for k in ("token_classification", "extractive_qa", "speech_recognition") if k in kinds), kinds
    assert task_type("classification") is all_task_types()["classification"]


def test_subsample_is_seeded_and_ordered():
    from tlops.transferability.rank import subsample

    a, b = subsample(100, 10, 0), subsample(100, 10, 0)
    assert a.tolist() == b.tolist() == sorted(set(a.tolist())) and len(a) == 10
    assert subsample(5, 10, 0).tolist() == [0, 1, 2, 3, 4]
