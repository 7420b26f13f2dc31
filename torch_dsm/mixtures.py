"""Exact scores of Gaussian mixtures in torch, for samplers that need no training (docs/method.md §2).

Mirror: ``jax_dsm/mixtures.py``; the numpy oracle is ``dsm_common.mixtures``.
"""

from __future__ import annotations

from typing import Callable

import torch

from dsm_common.mixtures import GaussianMixture

__all__ = ["mixture_score"]


def mixture_score(mixture: GaussianMixture, dtype=torch.float32) -> Callable:
    """Score of ``p ∗ N(0, σ² I)`` for a Gaussian mixture ``p``, as a torch function.

    ``∇ log p_σ(x) = Σ_k r_k(x) C_k⁻¹ (μ_k − x)``, ``C_k = Σ_k + σ² I``, responsibilities by
    log-sum-exp (stable far from the modes).

    Args:
        mixture: the law ``p``.
        dtype: computation dtype.

    Returns:
        ``score(x, sigma=0)``, x (n, d) float → (n, d); sigma a float or (n,).
    """
    log_w = torch.log(torch.as_tensor(mixture.weights, dtype=dtype))  # (K,)
    means = torch.as_tensor(mixture.means, dtype=dtype)  # (K, d)
    covs = torch.as_tensor(mixture.covs, dtype=dtype)  # (K, d, d)
    eye = torch.eye(mixture.dim, dtype=dtype)

    def score(x: torch.Tensor, sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
        lw, mu, cv, id_ = (t.to(x.device) for t in (log_w, means, covs, eye))  # constants follow x (CPU or GPU)
        s2 = torch.as_tensor(sigma, dtype=dtype, device=x.device).expand(x.shape[0]) ** 2  # (n,)
        c = cv[None] + s2[:, None, None, None] * id_  # (n, K, d, d)
        diff = mu[None] - x[:, None, :]  # (n, K, d)
        prec_diff = torch.linalg.solve(c, diff[..., None])[..., 0]  # (n, K, d)
        maha = (diff * prec_diff).sum(-1)  # (n, K)
        logits = lw - 0.5 * (maha + torch.logdet(c))  # (n, K); 2π terms cancel
        r = torch.softmax(logits, dim=1)
        return (r[..., None] * prec_diff).sum(1)  # (n, d)

    return score
