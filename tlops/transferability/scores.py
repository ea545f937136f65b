"""Transferability scores: how well a frozen backbone's features of a task's training inputs fit the task's targets,
computed without training a head. Pure numpy/scipy functions of (features, targets); nothing here loads a model.

- `logme`: LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021):
  the log marginal evidence per sample of a Bayesian linear model y = F w + noise (prior w ~ N(0, 1/alpha), noise
  ~ N(0, 1/beta)) with alpha and beta set by evidence maximisation (MacKay's fixed-point updates, computed in the
  eigenbasis of the features' smaller Gram matrix (their SVD), so each update costs O(min(n, D))). Classification: one one-hot column per class,
  averaged over the classes; regression: the target column. Higher is better; comparable across feature widths.
- `h_score`: H-score (Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer Learning",
  ICIP 2019): tr(cov(f)^-1 cov(E[f | y])), how much of the features' spread the class means explain. The feature
  covariance is shrunk towards a multiple of the identity by the Ledoit-Wolf estimate (Ibrahim et al., ICLR 2023:
  the plain pseudo-inverse is unusable when the feature width nears the number of samples). Classification only.
- `log_evidence`: the same evidence evaluated directly (an n x n Gaussian), for checking `logme`.
"""

from __future__ import annotations

import numpy as np

LOG_2PI = float(np.log(2 * np.pi))


def _spectrum(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """F's squared singular values sigma (min(n, D) of them) and the basis that gives a target's coordinates in F's
    column space: from the eigendecomposition of the smaller Gram matrix (F F' when n <= D: its eigenvectors are U;
    F'F otherwise: its eigenvectors V, and U'y = V'F'y / s). Cheaper than an SVD of F; returns (sigma, basis, basis_is_u)."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    sigma, vecs = np.linalg.eigh(f @ f.T if n <= d else f.T @ f)
    sigma = np.clip(sigma, 0.0, None)
    return sigma, vecs, n <= d


def _coordinates(f: np.ndarray, y: np.ndarray, sigma: np.ndarray, basis: np.ndarray, basis_is_u: bool) -> np.ndarray:
    """U'y: y's coordinates along F's left singular vectors (0 along directions with no singular value)."""
    if basis_is_u:
        return basis.T @ y
    s = np.sqrt(sigma)
    keep = s > s.max(initial=0.0) * 1e-10
    out = np.zeros_like(s)
    out[keep] = (basis.T @ (f.T @ y))[keep] / s[keep]
    return out


def _column_evidence(x: np.ndarray, y_norm2: float, sigma: np.ndarray, n: int, d: int, tol: float,
                     max_iter: int) -> tuple[float, float, float, int]:
    """(log evidence, alpha, beta, iterations) for one target column, given x = U^T y (its coordinates in F's column
    space), ||y||^2 and F's squared singular values. Fixed point (the paper's Algorithm 1):
    gamma = sum beta s_i / (alpha + beta s_i); m = beta A^-1 F^T y; alpha <- gamma / m'm; beta <- (n - gamma) / ||Fm - y||^2.
    Stops when alpha and beta move by less than `tol` (relative), or the evidence by less than `tol` * 1e-6 per sample:
    where F fits y exactly (more features than rows) the supremum lies at beta -> infinity, which the iteration
    approaches without reaching; its evidence there is finite and is what is returned."""
    k = len(sigma)
    outside = max(y_norm2 - float(x @ x), 0.0)  # the part of y no weight vector reaches (n > D, or rank-deficient F)

    def evidence(alpha: float, beta: float) -> tuple[float, float, float]:
        t = alpha + beta * sigma
        m2 = float(np.sum(beta**2 * sigma * x**2 / t**2))  # m'm: m = V diag(beta s / t) x, V orthonormal
        res2 = float(np.sum((alpha * x / t) ** 2)) + outside  # ||F m - y||^2: F m - y = -U (alpha / t) x - y_outside
        log_det_a = float(np.sum(np.log(t))) + (d - k) * np.log(alpha)  # A = alpha I + beta F'F: D eigenvalues
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - alpha / 2 * m2 - beta / 2 * res2 - log_det_a / 2
              - n / 2 * LOG_2PI)
        return float(ev), m2, res2

    alpha, beta = 1.0, 1.0
    ev, m2, res2 = evidence(alpha, beta)
    it = 0
    for it in range(1, max_iter + 1):
        gamma = float(np.sum(beta * sigma / (alpha + beta * sigma)))
        if m2 <= 0 or res2 <= 0 or n - gamma <= 0:  # y = 0, or an exact fit with nothing left to estimate the noise from
            break
        new_alpha, new_beta = gamma / m2, (n - gamma) / res2
        new_ev, new_m2, new_res2 = evidence(new_alpha, new_beta)
        if not np.isfinite(new_ev):
            break
        moved = abs(new_alpha - alpha) > tol * alpha or abs(new_beta - beta) > tol * beta
        gained = new_ev - ev
        alpha, beta, ev, m2, res2 = new_alpha, new_beta, new_ev, new_m2, new_res2
        if not moved or abs(gained) <= tol * 1e-6 * n:
            break
    return ev, alpha, beta, it


def targets_matrix(targets: np.ndarray, regression: bool) -> np.ndarray:
    """(n, columns): the target column of a regression, or one one-hot column per class present (classes numbered in
    any way: each distinct value is one)."""
    y = np.asarray(targets)
    if regression:
        return y.astype(np.float64).reshape(len(y), -1)
    classes = np.unique(y)
    return (y[:, None] == classes[None, :]).astype(np.float64)


def logme_details(features: np.ndarray, targets: np.ndarray, regression: bool = False, tol: float = 1e-6,
                  max_iter: int = 1000) -> dict:
    """LogME with what it found per target column: {"score", "columns": [{"evidence", "alpha", "beta", "iterations"}]}.
    `score` is the mean over columns of the log evidence divided by n (the paper's LogME value)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) != len(targets) or len(f) < 2:
        raise ValueError(f"features {f.shape} and targets ({len(targets)}) must be (n, D) and (n,), n >= 2")
    if not np.isfinite(f).all():
        raise ValueError("features hold NaN or infinite values")
    n, d = f.shape
    sigma, basis, basis_is_u = _spectrum(f)
    ys = targets_matrix(targets, regression)
    cols = []
    for j in range(ys.shape[1]):
        y = ys[:, j]
        x = _coordinates(f, y, sigma, basis, basis_is_u)
        ev, alpha, beta, it = _column_evidence(x, float(y @ y), sigma, n, d, tol, max_iter)
        cols.append({"evidence": ev, "alpha": alpha, "beta": beta, "iterations": it})
    return {"score": float(np.mean([c["evidence"] for c in cols]) / n), "columns": cols}


def logme(features: np.ndarray, targets: np.ndarray, regression: bool = False) -> float:
    """LogME of features (n, D) for targets (n,): class ids (any distinct values) or numbers. Higher is better."""
    return logme_details(features, targets, regression)["score"]


def log_evidence(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) evaluated directly: y ~ N(0, F F'/alpha + I/beta) (w integrated out). O(n^3): a
    reference for small data."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    cov = f @ f.T / alpha + np.eye(n) / beta
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, y)
    return float(-0.5 * z @ z - np.sum(np.log(np.diag(chol))) - n / 2 * LOG_2PI)


def _ledoit_wolf_shrinkage(gram: np.ndarray, row_norms2: np.ndarray, n: int, d: int) -> tuple[float, float]:
    """(Ledoit-Wolf (2004) shrinkage s, mu = tr(S) / D) of centred rows x (n, D) with S = x'x / n, from either Gram
    matrix (x'x or xx': the same nonzero spectrum, so tr and ||.||_F agree) and the rows' squared norms; as
    scikit-learn's `ledoit_wolf(x, assume_centered=True)` (its sum(X2'X2) is sum of the rows' squared norms squared)."""
    tr_s = float(np.trace(gram)) / n
    mu = tr_s / d
    sum_s2 = float(np.sum(gram**2)) / n**2
    delta = (sum_s2 - 2 * mu * tr_s + d * mu**2) / d  # ||S - mu I||_F^2 / d
    beta_ = (float(np.sum(row_norms2**2)) / n - sum_s2) / (d * n)
    return (0.0 if delta <= 0 else min(beta_, delta) / delta), mu


def _ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """(shrunk covariance (1 - s) S + s mu I, s) of centred rows x (n, D)."""
    n, d = x.shape
    cov = x.T @ x / n
    s, mu = _ledoit_wolf_shrinkage(cov * n, np.sum(x**2, axis=1), n, d)
    cov *= 1 - s
    cov[np.diag_indices(d)] += s * mu
    return cov, s


def h_score(features: np.ndarray, labels: np.ndarray, shrinkage: bool = True) -> float:
    """H-score of features (n, D) for class labels (n,): tr(cov(f)^-1 cov(E[f|y])). With `shrinkage` (the default) the
    feature covariance is the Ledoit-Wolf estimate and the between-class covariance is scaled by (1 - shrinkage), as
    in Ibrahim et al.'s regularised H-score; without, the pseudo-inverse of the sample covariance (Bao et al., as in
    TLlib). Higher is better; at most the number of classes - 1.

    cov(E[f|y]) = sum_c p_c mu_c mu_c' has rank < classes, so the trace is sum_c p_c mu_c' cov(f)^-1 mu_c. With fewer
    rows than features and shrinkage, cov(f)^-1 = (a I + b x'x)^-1 is applied in row space (Woodbury: one n x n Gram
    matrix and one n x n Cholesky factorisation, no D x D matrix); otherwise one D x D Cholesky factorisation."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(y) or len(f) < 2:
        raise ValueError(f"features {f.shape} and labels ({len(y)}) must be (n, D) and (n,), n >= 2")
    f = f - f.mean(axis=0)
    n, d = f.shape
    classes = np.unique(y)
    member = (y[:, None] == classes[None, :]).astype(np.float64)  # (n, C)
    counts = member.sum(axis=0)
    weights = counts / n
    if shrinkage and n < d:
        k = f @ f.T
        s, mu = _ledoit_wolf_shrinkage(k, np.diag(k).copy(), n, d)
        a, b = s * mu, (1 - s) / n
        if a > 0 and b > 0:
            w = member / counts  # mu_c = f' w_c
            kw = k @ w
            inner = cho_solve(cho_factor(k + (a / b) * np.eye(n), lower=True, check_finite=False), kw, check_finite=False)
            quad = (np.sum(w * kw, axis=0) - np.sum(kw * inner, axis=0)) / a  # w'Kw - w'K (a/b I + K)^-1 K w, over a
            return float((1 - s) * np.sum(weights * quad))
    means = f.T @ (member / counts)  # (D, C)
    if shrinkage:
        cov_f, s = _ledoit_wolf(f)
        scale = 1 - s
    else:
        cov_f, scale = f.T @ f / n, 1.0
    try:
        solved = cho_solve(cho_factor(cov_f, lower=True, check_finite=False), means, check_finite=False)
    except (LinAlgError, ValueError):  # singular (no shrinkage, or constant features): the pseudo-inverse, as TLlib
        solved = np.linalg.pinv(cov_f, rcond=1e-15, hermitian=True) @ means
    return float(scale * np.sum(weights * np.sum(means * solved, axis=0)))
