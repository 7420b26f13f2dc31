"""Sample-quality metrics on numpy arrays (SPEC §5), the same for both frameworks."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.spatial.distance import cdist

from dsm_common.mixtures import GaussianMixture

__all__ = [
    "mode_weights",
    "gap_mass",
    "energy_distance",
    "fisher_divergence",
    "per_mode_moments",
]


def mode_weights(samples: np.ndarray, mixture: GaussianMixture) -> np.ndarray:
    """Fraction of ``samples`` (n, d) assigned to each component (highest responsibility); (K,)."""
    assigned = mixture.assign(samples)
    return np.bincount(assigned, minlength=mixture.n_components) / len(samples)


def gap_mass(samples: np.ndarray, half_width: float = 5.0) -> float:
    """Fraction of samples with ``|x₁| < half_width`` (the seed mixture's empty middle, SPEC §5)."""
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


def fisher_divergence(
    score_fn: Callable[[np.ndarray], np.ndarray],
    target: GaussianMixture,
    n: int,
    rng: np.random.Generator,
) -> float:
    """Relative Fisher divergence ``E‖s_θ(x) − ∇log p(x)‖² / E‖∇log p(x)‖²``, x ~ p (SPEC §5).

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
