"""The score SDEs' marginals in float64 numpy, and the exact marginals of a Gaussian mixture under them.

Song et al., "Score-based generative modeling through stochastic differential equations"
(arXiv 2011.13456), the reference code's names and defaults (yang-song/score_sde, ``sde_lib.py``),
T = 1:

* VE: dx = √(d σ²(t)/dt) dw, σ(t) = σ_min (σ_max/σ_min)^t; x_t = x₀ + σ(t) z;
* VP: dx = −½ β(t) x dt + √β(t) dw, β(t) = β₀ + t (β₁ − β₀); x_t = α(t) x₀ + √(1 − α(t)²) z with
  log α(t) = −¼ t² (β₁ − β₀) − ½ t β₀;
* sub-VP: the VP drift, diffusion √(β(t)(1 − e^{−2β₀t − (β₁−β₀)t²})); x_t = α(t) x₀ + (1 − α(t)²) z.

Each is a linear Gaussian perturbation x_t = α(t) x₀ + s(t) z (``marginal_coefficients``), so for
data p = Σ_k w_k N(μ_k, Σ_k) every marginal p_t is again a Gaussian mixture,
Σ_k w_k N(α(t) μ_k, α(t)² Σ_k + s(t)² I): its score and log-density are known exactly at every t
(``MixtureMarginals``). This is the oracle both frameworks' ``sde_lib`` are tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, softmax

from dsm_common.mixtures import GaussianMixture
from dsm_common.validation import DSMInputError, check_positive

__all__ = ["SDE_KINDS", "marginal_coefficients", "mean_coefficient", "MixtureMarginals"]

SDE_KINDS = ("ve", "vp", "subvp")


def marginal_coefficients(kind: str, t: np.ndarray, sigma_min: float = 0.01, sigma_max: float = 50.0,
                          beta_min: float = 0.1, beta_max: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """``(α(t), s(t))`` of x_t = α(t) x₀ + s(t) z for SDE ``kind`` at times ``t`` (any shape), float64.

    Raises:
        DSMInputError: an unknown ``kind`` or a non-positive parameter.
    """
    t = np.asarray(t, np.float64)
    if kind == "ve":
        check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max)
        return np.ones_like(t), sigma_min * (sigma_max / sigma_min) ** t
    if kind not in ("vp", "subvp"):
        raise DSMInputError(f"sde must be one of {', '.join(SDE_KINDS)}, got {kind!r}")
    check_positive("beta_min", beta_min), check_positive("beta_max", beta_max)
    log_alpha = -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min
    alpha = np.exp(log_alpha)
    one_minus = -np.expm1(2 * log_alpha)  # 1 − α², without cancellation at small t
    return alpha, (np.sqrt(one_minus) if kind == "vp" else one_minus)


def mean_coefficient(kind: str, s) -> np.ndarray:
    """α as a function of the kernel's standard deviation s (any shape, 0 ≤ s < 1 for VP and
    sub-VP), float64: 1 (VE), √(1 − s²) (VP: s² = 1 − α²), √(1 − s) (sub-VP: s = 1 − α²).

    Raises:
        DSMInputError: an unknown ``kind``.
    """
    s = np.asarray(s, np.float64)
    if kind == "ve":
        return np.ones_like(s)
    if kind not in ("vp", "subvp"):
        raise DSMInputError(f"sde must be one of {', '.join(SDE_KINDS)}, got {kind!r}")
    return np.sqrt(1 - s**2) if kind == "vp" else np.sqrt(1 - s)


@dataclass(frozen=True)
class MixtureMarginals:
    """The exact marginals p_t of a Gaussian mixture under a linear Gaussian perturbation
    x_t = α x₀ + s z, vectorised over points that each have their own (α, s).

    Attributes:
        mixture: the data law Σ_k w_k N(μ_k, Σ_k).
    """

    mixture: GaussianMixture

    def _components(self, x: np.ndarray, alpha: np.ndarray, s: np.ndarray):
        x = np.atleast_2d(np.asarray(x, np.float64))  # (n, d)
        n, d = x.shape
        a = np.broadcast_to(np.asarray(alpha, np.float64), (n,))
        s = np.broadcast_to(np.asarray(s, np.float64), (n,))
        m = self.mixture
        means = a[:, None, None] * m.means[None]  # (n, K, d)
        covs = a[:, None, None, None] ** 2 * m.covs[None] + s[:, None, None, None] ** 2 * np.eye(d)  # (n, K, d, d)
        diff = x[:, None, :] - means  # (n, K, d)
        prec_diff = np.linalg.solve(covs, diff[..., None])[..., 0]  # (n, K, d)
        maha = np.sum(diff * prec_diff, axis=-1)  # (n, K)
        _, log_det = np.linalg.slogdet(covs)  # (n, K)
        with np.errstate(divide="ignore"):
            log_w = np.log(m.weights)
        logits = log_w - 0.5 * (maha + log_det + d * np.log(2 * np.pi))  # (n, K)
        return logits, prec_diff

    def log_density(self, x: np.ndarray, alpha, s) -> np.ndarray:
        """log p_t(x), (n,) float64, for points x (n, d) with coefficients α, s (scalars or (n,))."""
        logits, _ = self._components(x, alpha, s)
        return logsumexp(logits, axis=1)

    def score(self, x: np.ndarray, alpha, s) -> np.ndarray:
        """∇ log p_t(x) = −Σ_k r_k(x) C_k(t)⁻¹ (x − α μ_k), (n, d) float64."""
        logits, prec_diff = self._components(x, alpha, s)
        return -np.einsum("nk,nkd->nd", softmax(logits, axis=1), prec_diff)

    def sample(self, n: int, alpha: float, s: float, rng: np.random.Generator) -> np.ndarray:
        """n draws of p_t, (n, d) float64: α x₀ + s z with x₀ from the mixture."""
        return alpha * self.mixture.sample(n, rng) + s * rng.standard_normal((n, self.mixture.dim))
