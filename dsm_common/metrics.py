"""Sample-quality metrics on numpy arrays (docs/method.md §5), the same for both frameworks."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.spatial.distance import cdist

from dsm_common.mixtures import GaussianMixture
from dsm_common.validation import DSMInputError, check_positive_int

__all__ = [
    "mode_weights",
    "gap_mass",
    "energy_distance",
    "fisher_divergence",
    "per_mode_moments",
    "split_half_energy_check",
]


def mode_weights(samples: np.ndarray, mixture: GaussianMixture) -> np.ndarray:
    """Fraction of ``samples`` (n, d) assigned to each component (highest responsibility); (K,)."""
    assigned = mixture.assign(samples)
    return np.bincount(assigned, minlength=mixture.n_components) / len(samples)


def gap_mass(samples: np.ndarray, half_width: float = 5.0) -> float:
    """Fraction of samples with ``|x₁| < half_width`` (the seed mixture's empty middle, docs/method.md §5)."""
    return float(np.mean(np.abs(np.asarray(samples)[:, 0]) < half_width))


def _mean_distance(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> float:
    """Mean Euclidean distance over all pairs of rows of ``a`` and ``b``, in row chunks."""
    total = 0.0
    for i in range(0, len(a), chunk):
        total += cdist(a[i : i + chunk], b).sum()
    return total / (len(a) * len(b))


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Squared energy distance ``2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖`` (Székely & Rizzo, 2004).

    The V-statistic (pairs of a point with itself included), so it is ≥ 0 and of order 1/n
    between two samples of one law: always report it beside that reference at the same n.

    Args:
        x: (n, d) samples. y: (m, d) samples. Same units as the data.

    Returns:
        A float in the data's units (a distance).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return 2.0 * _mean_distance(x, y) - _mean_distance(x, x) - _mean_distance(y, y)


def split_half_energy_check(
    samples: np.ndarray,
    data: np.ndarray,
    n_splits: int = 20,
    seed: int = 0,
) -> dict:
    """Are samples as close to the data as half of the data is to the other half?

    For real data with no known law (Old Faithful): ``n_splits`` times, split ``data`` (N, d) at
    random into halves A (⌊N/2⌋ points) and B (the rest), draw |A| of ``samples`` without
    replacement, and compute ``energy_distance(drawn, A)`` and ``energy_distance(B, A)``. The
    model passes when the first median is within a small factor (2) of the second.

    Args:
        samples: (n, d) samples, n ≥ ⌊N/2⌋, in the data's units.
        data: (N, d) data points, N ≥ 4.
        n_splits: number of random splits.
        seed: seed of the numpy Generator drawing the splits and the sample subsets.

    Returns:
        ``{"samples_vs_half": median, "half_vs_half": median, "ratio": their quotient,
        "n_splits": n_splits, "n_per_half": ⌊N/2⌋}``.

    Raises:
        DSMInputError: too few data points or samples, mismatched dimensions, n_splits < 1.
    """
    samples = np.asarray(samples, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    check_positive_int("n_splits", n_splits)
    if data.ndim != 2 or samples.ndim != 2 or samples.shape[1] != data.shape[1]:
        raise DSMInputError(f"samples {samples.shape} and data {data.shape} must be (n, d) arrays of one d")
    half = len(data) // 2
    if half < 2:
        raise DSMInputError(f"the split-half check needs at least 4 data points, got {len(data)}")
    if len(samples) < half:
        raise DSMInputError(f"the split-half check needs at least {half} samples, got {len(samples)}")
    rng = np.random.default_rng(seed)
    to_samples, to_half = [], []
    for _ in range(n_splits):
        order = rng.permutation(len(data))
        a, b = data[order[:half]], data[order[half:]]
        drawn = samples[rng.choice(len(samples), size=half, replace=False)]
        to_samples.append(energy_distance(drawn, a))
        to_half.append(energy_distance(b, a))
    med_s, med_h = float(np.median(to_samples)), float(np.median(to_half))
    return {
        "samples_vs_half": med_s,
        "half_vs_half": med_h,
        "ratio": med_s / med_h if med_h > 0 else float("inf"),
        "n_splits": int(n_splits),
        "n_per_half": int(half),
    }


def fisher_divergence(
    score_fn: Callable[[np.ndarray], np.ndarray],
    target: GaussianMixture,
    n: int,
    rng: np.random.Generator,
) -> float:
    """Relative Fisher divergence ``E‖s_θ(x) − ∇log p(x)‖² / E‖∇log p(x)‖²``, x ~ p (docs/method.md §5).

    Args:
        score_fn: the learned score, (n, d) float array → (n, d).
        target: the (noised) law p whose exact score is the reference.
        n: number of fresh draws of p.
        rng: numpy Generator for the draws.
    """
    x = target.sample(n, rng)
    exact = target.score(x)
    learned = np.asarray(score_fn(x.astype(np.float32)), dtype=np.float64)
    return float(np.mean(np.sum((learned - exact) ** 2, axis=1)) / np.mean(np.sum(exact**2, axis=1)))


def per_mode_moments(samples: np.ndarray, mixture: GaussianMixture) -> list[dict]:
    """Mean, covariance and count of the samples assigned to each mode, beside the truth.

    Returns:
        One dict per component: ``count``, ``mean``, ``cov``, ``std`` (square roots of the
        covariance diagonal), ``true_mean``, ``true_cov``. Empty modes get null moments.
    """
    assigned = mixture.assign(samples)
    out = []
    for k in range(mixture.n_components):
        pts = samples[assigned == k]
        entry = {
            "count": int(len(pts)),
            "true_mean": mixture.means[k].tolist(),
            "true_cov": mixture.covs[k].tolist(),
        }
        if len(pts) >= 2:
            cov = np.cov(pts, rowvar=False)
            entry.update(mean=pts.mean(0).tolist(), cov=cov.tolist(), std=np.sqrt(np.diag(cov)).tolist())
        else:
            entry.update(mean=None, cov=None, std=None)
        out.append(entry)
    return out


def kde_nll(train: np.ndarray, test: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """The classical baseline of a likelihood: a Gaussian kernel density estimate of ``train``
    (n, d) with its bandwidth h chosen by ``folds``-fold cross-validated log-likelihood over a
    log-spaced grid (scikit-learn's ``KernelDensity`` and ``GridSearchCV``), scored on ``test``.

    Returns:
        ``(mean negative log-likelihood of test in nats, h)``, in the points' own units.
    """
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.neighbors import KernelDensity

    train = np.asarray(train, np.float64)
    spread = float(np.std(train))
    grid = {"bandwidth": spread * np.logspace(-2.5, 0, 41)}
    search = GridSearchCV(KernelDensity(kernel="gaussian"), grid, cv=KFold(folds, shuffle=True, random_state=seed))
    search.fit(train)
    kde = search.best_estimator_
    return float(-np.mean(kde.score_samples(np.asarray(test, np.float64)))), float(kde.bandwidth)
