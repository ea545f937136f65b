"""The drift tests on features (tlops.drift): the unbiased MMD^2 against its definition, permutation p-values that
separate a shifted sample from a same-distribution one, the domain classifier's AUC, the out-of-distribution ranking
and the verdict's three outcomes."""

from __future__ import annotations

import numpy as np
import pytest

from tlops.drift import _mmd2_from_kernel, check_drift, domain_auc, median_bandwidth, mmd_test, out_of_distribution, prediction_shift


def _gauss(n, shift=0.0, d=8, seed=0):
    return np.random.default_rng(seed).normal(shift, 1.0, size=(n, d))


def test_unbiased_mmd2_matches_its_definition_term_by_term():
    x, y = _gauss(7, seed=1), _gauss(5, 0.5, seed=2)
    w = 1.3

    def k(a, b):
        return float(np.exp(-np.sum((a - b) ** 2) / (2 * w * w)))

    n, m = len(x), len(y)
    want = (sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
            + sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
            - 2 * sum(k(a, b) for a in x for b in y) / (n * m))
    z = np.concatenate([x, y])
    kern = np.array([[k(a, b) for b in z] for a in z])
    assert _mmd2_from_kernel(kern, n) == pytest.approx(want, abs=1e-12)


def test_median_bandwidth_is_the_median_pairwise_distance():
    z = np.array([[0.0], [1.0], [3.0]])  # distances 1, 2, 3
    assert median_bandwidth(z) == pytest.approx(2.0)
    assert median_bandwidth(np.zeros((3, 2))) == 1.0  # identical rows: a width that does not divide by zero


def test_mmd_p_value_separates_a_shift_from_the_same_distribution():
    ref = _gauss(150, seed=3)
    _, p_same = mmd_test(ref, _gauss(100, seed=4), permutations=200)
    mmd2, p_shift = mmd_test(ref, _gauss(100, 0.6, seed=5), permutations=200)
    assert p_same > 0.05 and p_shift < 0.01 and mmd2 > 0, (p_same, p_shift)


def test_domain_auc_is_near_a_half_for_one_distribution_and_near_one_for_separable_ones():
    ref = _gauss(120, seed=6)
    assert abs(domain_auc(ref, _gauss(120, seed=7)) - 0.5) < 0.15
    assert domain_auc(ref, _gauss(120, 3.0, seed=8)) > 0.95


def test_the_rows_far_from_the_reference_come_first():
    ref = _gauss(100, seed=9)
    new = np.concatenate([_gauss(20, seed=10), _gauss(3, 8.0, seed=11)])
    worst = out_of_distribution(ref, new, top=3)
    assert sorted(r["row"] for r in worst) == [20, 21, 22] and worst[0]["score"] > 3, worst


def test_verdicts_and_the_models_own_signals():
    ref = _gauss(120, seed=12)
    assert check_drift(ref, _gauss(80, seed=13), permutations=100).verdict == "no drift"
    far = check_drift(ref, _gauss(80, 2.0, seed=14), permutations=100)
    assert far.verdict == "drift" and far.mmd_p_value < 0.01 and far.domain_auc > 0.9, far
    assert far.reasons[0].startswith("MMD p-value") and "AUC" in far.reasons[1]
    probs_ref = np.array([[0.9, 0.1]] * 6 + [[0.2, 0.8]] * 4)
    probs_new = np.array([[0.6, 0.4]] * 2 + [[0.3, 0.7]] * 8)
    shift = prediction_shift(probs_ref, probs_new, ["a", "b"])
    assert shift["total_variation"] == pytest.approx(0.4) and shift["new_share"] == {"a": 0.2, "b": 0.8}
    assert shift["reference_confidence"] == pytest.approx(0.86) and shift["new_confidence"] == pytest.approx(0.68)
    numbers = prediction_shift(np.array([1.0, 3.0]), np.array([5.0, 5.0]), None)
    assert numbers == {"kind": "numbers", "reference_mean": 2.0, "new_mean": 5.0, "reference_std": 1.0, "new_std": 0.0}
    with pytest.raises(ValueError, match="one width"):
        check_drift(ref, _gauss(10, d=3))
