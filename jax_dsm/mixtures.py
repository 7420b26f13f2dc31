"""Exact scores of Gaussian mixtures in JAX, for samplers that need no training (docs/method.md §2).

Mirror: ``torch_dsm/mixtures.py``; the numpy oracle is ``dsm_common.mixtures``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from dsm_common.mixtures import GaussianMixture

__all__ = ["mixture_score"]


def _score(log_w, means, covs, x, sigma=0.0):
    s2 = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1]) ** 2  # (n,)
    c = covs[None] + s2[:, None, None, None] * jnp.eye(means.shape[1], dtype=x.dtype)  # (n, K, d, d)
    diff = means[None] - x[:, None, :]  # (n, K, d)
    prec_diff = jnp.linalg.solve(c, diff[..., None])[..., 0]  # (n, K, d)
    maha = jnp.sum(diff * prec_diff, -1)  # (n, K)
    logits = log_w - 0.5 * (maha + jnp.linalg.slogdet(c)[1])  # (n, K); 2π terms cancel
    r = jax.nn.softmax(logits, axis=1)
    return jnp.sum(r[..., None] * prec_diff, 1)  # (n, d)


def mixture_score(mixture: GaussianMixture, dtype=jnp.float32) -> Callable:
    """Score of ``p ∗ N(0, σ² I)`` for a Gaussian mixture ``p``, as a JAX function.

    ``∇ log p_σ(x) = Σ_k r_k(x) C_k⁻¹ (μ_k − x)``, ``C_k = Σ_k + σ² I``, responsibilities by
    log-sum-exp (stable far from the modes).

    Args:
        mixture: the law ``p``.
        dtype: computation dtype.

    Returns:
        ``score(x, sigma=0)``, x (n, d) float → (n, d); sigma a float or (n,). A
        ``jax.tree_util.Partial``, so the samplers take it as a traced argument.
    """
    args = (
        jnp.log(jnp.asarray(mixture.weights, dtype)),
        jnp.asarray(mixture.means, dtype),
        jnp.asarray(mixture.covs, dtype),
    )
    return Partial(_score, *args)
