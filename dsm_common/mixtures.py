"""Gaussian mixtures and their exact (noised) scores: the oracle of docs/method.md §2.

A mixture ``p = Σ_k w_k N(μ_k, Σ_k)`` convolved with ``N(0, σ² I)`` is again a mixture,
``p_σ = Σ_k w_k N(μ_k, C_k)`` with ``C_k = Σ_k + σ² I``. Its score is

    ∇ log p_σ(x) = Σ_k r_k(x) C_k⁻¹ (μ_k − x),   r_k(x) = softmax_k(log w_k + log N(x; μ_k, C_k)),

computed here with log-sum-exp so that points far from every mode (where the naive ratio of
densities is 0/0) still get a finite, exact score. Everything is float64 numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, softmax

from dsm_common.validation import DSMInputError, check_positive

__all__ = ["GaussianMixture", "seed_mixture", "ncsn_toy_mixture"]


@dataclass(frozen=True)
class GaussianMixture:
    """A Gaussian mixture ``Σ_k w_k N(μ_k, Σ_k)`` in ``d`` dimensions.

    Attributes:
        weights: (K,) float64, non-negative, summing to 1.
        means: (K, d) float64.
        covs: (K, d, d) float64, symmetric positive definite.
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        m = np.atleast_2d(np.asarray(self.means, dtype=np.float64))
        c = np.asarray(self.covs, dtype=np.float64)
        if c.ndim == 2:  # one covariance shared by all components
            c = np.broadcast_to(c, (len(w),) + c.shape).copy()
        if w.ndim != 1 or m.shape[0] != w.shape[0] or c.shape != (w.shape[0], m.shape[1], m.shape[1]):
            raise DSMInputError(
                f"mixture shapes do not agree: weights {w.shape}, means {m.shape}, covs {c.shape}"
            )
        if np.any(w < 0) or not np.isclose(w.sum(), 1.0):
            raise DSMInputError(f"mixture weights must be non-negative and sum to 1, got {w.tolist()}")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "means", m)
        object.__setattr__(self, "covs", c)
        # Cholesky factors, for log-densities and solves; fails loudly on a non-SPD covariance.
        try:
            object.__setattr__(self, "_chol", np.linalg.cholesky(c))
        except np.linalg.LinAlgError as err:
            raise DSMInputError("mixture covariances must be symmetric positive definite") from err

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    def convolve(self, sigma: float) -> GaussianMixture:
        """The mixture ``p ∗ N(0, σ² I)``: every covariance gains ``σ² I``.

        Raises:
            DSMInputError: if ``sigma`` is negative or not finite.
        """
        if sigma != 0:
            check_positive("sigma", sigma)
        return GaussianMixture(self.weights, self.means, self.covs + sigma**2 * np.eye(self.dim))

    def _component_log_densities(self, x: np.ndarray) -> np.ndarray:
        """(n, K) array of ``log w_k + log N(x; μ_k, C_k)``."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        diff = x[:, None, :] - self.means[None, :, :]  # (n, K, d)
        # Solve L y = diff for each component: Mahalanobis distance = ‖y‖².
        y = np.linalg.solve(self._chol[None], diff[..., None])[..., 0]  # (n, K, d)
        maha = np.sum(y**2, axis=-1)  # (n, K)
        log_det = 2.0 * np.sum(np.log(np.diagonal(self._chol, axis1=-2, axis2=-1)), axis=-1)  # (K,)
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights)
        return log_w - 0.5 * (maha + log_det + self.dim * np.log(2.0 * np.pi))

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """Log-density ``log p(x)`` (natural log) at points ``x`` of shape (n, d); returns (n,)."""
        return logsumexp(self._component_log_densities(x), axis=1)

    def responsibilities(self, x: np.ndarray) -> np.ndarray:
        """Posterior component probabilities ``r_k(x)``, shape (n, K), rows summing to 1."""
        return softmax(self._component_log_densities(x), axis=1)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Exact score ``∇_x log p(x)`` at points ``x`` of shape (n, d); returns (n, d) float64.

        ``Σ_k r_k(x) C_k⁻¹ (μ_k − x)`` with responsibilities from log-sum-exp (docs/method.md §2).
        """
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        r = self.responsibilities(x)  # (n, K)
        diff = self.means[None, :, :] - x[:, None, :]  # (n, K, d)
        prec_diff = np.linalg.solve(self.covs[None], diff[..., None])[..., 0]  # (n, K, d)
        return np.einsum("nk,nkd->nd", r, prec_diff)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` points, shape (n, d) float64, component counts multinomial."""
        comp = rng.choice(self.n_components, size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        return self.means[comp] + np.einsum("nij,nj->ni", self._chol[comp], z)

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Index of the most responsible component for each point, shape (n,) int."""
        return np.argmax(self._component_log_densities(x), axis=1)

    def transformed(self, shift: np.ndarray, scale: np.ndarray) -> GaussianMixture:
        """The law of ``(X − shift) / scale`` (per axis) when ``X`` follows this mixture."""
        shift = np.asarray(shift, dtype=np.float64)
        scale = np.asarray(scale, dtype=np.float64)
        d = np.diag(1.0 / scale)
        return GaussianMixture(self.weights, (self.means - shift) / scale, d @ self.covs @ d)


# The reference recipe's data law (docs/method.md §1): ⅓ N((−10, 1), I) + ⅔ N((10, 0), I).
SEED_MEANS = np.array([[-10.0, 1.0], [10.0, 0.0]])
SEED_COUNTS = (100, 200)


def seed_mixture() -> GaussianMixture:
    """The reference recipe's data law Υ = ⅓ N((−10, 1), I) + ⅔ N((10, 0), I) (docs/method.md §1)."""
    return GaussianMixture(np.array([1 / 3, 2 / 3]), SEED_MEANS, np.eye(2))


def ncsn_toy_mixture() -> GaussianMixture:
    """⅕ N((−5, −5), I) + ⅘ N((5, 5), I): the toy of arXiv 1907.05600 (docs/method.md §3)."""
    return GaussianMixture(np.array([0.2, 0.8]), np.array([[-5.0, -5.0], [5.0, 5.0]]), np.eye(2))
