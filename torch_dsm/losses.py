"""Denoising score matching losses (Vincent 2011; docs/method.md §1, §3, §6 and §7).

Mirror: ``jax_dsm/losses.py``. Noise is drawn per point and per coordinate, or passed in, so the
two frameworks can be fed the same numpy draws.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from dsm_common.registry import Registry
from dsm_common.validation import require_randomness

__all__ = ["dsm_loss", "ncsn_loss", "edm_loss", "sde_loss", "per_level_loss", "OBJECTIVES", "dsm_objective",
           "ncsn_objective", "edm_objective", "sde_objective"]


def _reduce(per_point: torch.Tensor, reduction: str, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        per_point = torch.where(mask, per_point, torch.zeros_like(per_point))
    if reduction == "sum":
        return per_point.sum()
    if reduction == "mean":
        count = per_point.shape[0] if mask is None else mask.sum().clamp(min=1)
        return per_point.sum() / count
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def dsm_loss(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigma: float,
    reduction: str = "sum",
    mask: torch.Tensor | None = None,
    *,
    noise: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Single-scale DSM loss ``Σ_i ‖s_θ(x_i + σ z_i) + z_i/σ‖²`` (docs/method.md §1).

    Args:
        score_fn: the score network, (B, d) → (B, d).
        x: clean batch, (B, d) float32.
        sigma: noise standard deviation σ > 0 (data units of the training space).
        reduction: ``"sum"`` over the batch (the recipe) or ``"mean"``.
        mask: (B,) bool, True for real points (padded batches).
        noise: z, (B, d) standard normal draws (per point and coordinate).
        rng: torch Generator for z when ``noise`` is None.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: neither ``noise`` nor ``rng``; an unknown ``reduction``.
    """
    require_randomness("dsm_loss", rng, noise)
    z = torch.randn(x.shape, generator=rng, dtype=x.dtype, device=x.device) if noise is None else noise
    x_tilde = x + sigma * z  # (B, d)
    per_point = ((score_fn(x_tilde) + z / sigma) ** 2).sum(dim=-1)  # (B,)
    return _reduce(per_point, reduction, mask)


def ncsn_loss(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    reduction: str = "mean",
    mask: torch.Tensor | None = None,
    *,
    levels: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Multi-scale DSM loss with λ(σ) = σ²: ``‖σ_i s_θ(x + σ_i z, σ_i) + z‖²`` (arXiv 1907.05600 eq. 5).

    Each point gets one level ``i`` drawn uniformly, an unbiased estimate of the average over
    levels.

    Args:
        score_fn: conditional network, ((B, d), (B,)) → (B, d).
        x: clean batch (B, d) float32.
        sigmas: (L,) noise levels.
        reduction: ``"mean"`` (default) or ``"sum"`` over the batch.
        mask: (B,) bool, True for real points (padded batches).
        levels: (B,) int64 level indices.
        noise: (B, d) standard normal z.
        rng: torch Generator for the levels and z not passed in (levels drawn first).

    Returns:
        Scalar tensor.

    Raises:
        ValueError: a random input missing and no ``rng``; an unknown ``reduction``.
    """
    require_randomness("ncsn_loss", rng, levels, noise)
    if levels is None:
        levels = torch.randint(0, sigmas.shape[0], (x.shape[0],), generator=rng, device=x.device)
    z = torch.randn(x.shape, generator=rng, dtype=x.dtype, device=x.device) if noise is None else noise
    sigma = sigmas[levels]  # (B,)
    x_tilde = x + sigma[:, None] * z  # (B, d)
    per_point = ((sigma[:, None] * score_fn(x_tilde, sigma) + z) ** 2).sum(dim=-1)  # (B,)
    return _reduce(per_point, reduction, mask)


def edm_loss(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigma_data: float,
    p_mean: float,
    p_std: float,
    reduction: str = "mean",
    mask: torch.Tensor | None = None,
    *,
    log_sigma_noise: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """EDM training loss (arXiv 2206.00364, eq. 8 with Table 1's λ and p_train):
    ``λ(σ) ‖D_θ(x + σ z; σ) − x‖²`` with ln σ ~ N(p_mean, p_std²), λ(σ) = (σ² + σ_d²)/(σ σ_d)²,
    one σ per point. With D = x̃ + σ² s(x̃, σ) this is ``(1 + σ²/σ_d²) ‖σ s_θ(x̃, σ) + z‖²``,
    the form computed here (no cancellation at small σ; docs/method.md §6).

    Args:
        score_fn: conditional network, ((B, d), (B,)) → (B, d) (the score of its denoiser).
        x: clean batch (B, d) float32.
        sigma_data: σ_d. p_mean, p_std: the log-normal law of σ.
        reduction: ``"mean"`` (default) or ``"sum"`` over the batch.
        mask: (B,) bool, True for real points (padded batches).
        log_sigma_noise: (B,) standard normal ε, σ = exp(p_mean + p_std ε).
        noise: (B, d) standard normal z.
        rng: torch Generator for the draws not passed in (ε drawn first).

    Returns:
        Scalar tensor.

    Raises:
        ValueError: a random input missing and no ``rng``; an unknown ``reduction``.
    """
    require_randomness("edm_loss", rng, log_sigma_noise, noise)
    if log_sigma_noise is None:
        log_sigma_noise = torch.randn(x.shape[:1], generator=rng, dtype=x.dtype, device=x.device)
    z = torch.randn(x.shape, generator=rng, dtype=x.dtype, device=x.device) if noise is None else noise
    sigma = torch.exp(p_mean + p_std * log_sigma_noise)  # (B,)
    x_tilde = x + sigma[:, None] * z  # (B, d)
    weight = 1 + (sigma / sigma_data) ** 2  # (B,): λ(σ) σ²
    per_point = weight * ((sigma[:, None] * score_fn(x_tilde, sigma) + z) ** 2).sum(dim=-1)  # (B,)
    return _reduce(per_point, reduction, mask)


def sde_loss(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sde,
    eps: float,
    weighting: str = "sigma2",
    reduction: str = "mean",
    mask: torch.Tensor | None = None,
    stratified: bool = False,
    *,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Continuous-time DSM loss of a score SDE (arXiv 2011.13456, eq. 7; the reference's
    ``get_sde_loss_fn``): ``λ(t) ‖s_θ(x_t, t) + z/σ(t)‖²`` with x_t = α(t) x + σ(t) z and
    t ~ U(eps, T), one t per point, in the form ``w(t) ‖σ(t) s_θ(x_t, t) + z‖²`` with w = 1 for
    λ = σ² (``sigma2``) and w = g(t)²/σ(t)² for λ = g² (``likelihood``; arXiv 2101.09258).

    Args:
        score_fn: s(x, t), ((B, d), (B,)) → (B, d) (``sde_lib.time_score`` of the network).
        x: clean batch (B, d) float32.
        sde: the forward SDE (``torch_dsm.sde_lib``). eps: t_ε.
        weighting: ``sigma2`` or ``likelihood``.
        reduction: ``"mean"`` (default) or ``"sum"`` over the batch.
        mask: (B,) bool, True for real points (padded batches).
        stratified: t_i = eps + (T − eps)(i + u_i)/B (one stratum a point) instead of independent t.
        t: (B,) times; noise: (B, d) standard normal z.
        rng: torch Generator for the draws not passed in (the uniforms u first).

    Returns:
        Scalar tensor.

    Raises:
        ValueError: a random input missing and no ``rng``; an unknown ``reduction`` or ``weighting``.
    """
    require_randomness("sde_loss", rng, t, noise)
    if weighting not in ("sigma2", "likelihood"):
        raise ValueError(f"weighting must be 'sigma2' or 'likelihood', got {weighting!r}")
    n = x.shape[0]
    if t is None:
        u = torch.rand((n,), generator=rng, dtype=x.dtype, device=x.device)
        if stratified:
            u = (torch.arange(n, dtype=x.dtype, device=x.device) + u) / n
        t = eps + (sde.T - eps) * u
    z = torch.randn(x.shape, generator=rng, dtype=x.dtype, device=x.device) if noise is None else noise
    mean, std = sde.marginal_prob(x, t)  # (B, d), (B,)
    per_point = ((std[:, None] * score_fn(mean + std[:, None] * z, t) + z) ** 2).sum(dim=-1)  # (B,)
    if weighting == "likelihood":
        per_point = per_point * (sde.sde(torch.zeros_like(x), t)[1] / std) ** 2
    return _reduce(per_point, reduction, mask)


@torch.no_grad()
def per_level_loss(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: torch.Tensor,
    alphas: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of ``‖σ s_θ(α x + σ z, σ) + z‖²`` over all of ``x`` at each level; returns (L,).

    Args:
        x: (N, d) points. sigmas: (L,). noise: (L, N, d) standard normal draws.
        alphas: (L,) mean coefficients α of the levels (score SDEs: x_t = α(t) x + σ(t) z); None: 1.
    """
    out = []
    for i in range(sigmas.shape[0]):
        s = sigmas[i].expand(x.shape[0])
        a = 1.0 if alphas is None else alphas[i]
        out.append(((sigmas[i] * score_fn(a * x + sigmas[i] * noise[i], s) + noise[i]) ** 2).sum(-1).mean())
    return torch.stack(out)


# ----------------------------------------------------------------------------- the objective registry
# torch losses under the names of dsm_common.registry.OBJECTIVES: (net, x (B, d), sigmas (L,),
# settings, reduction, mask, *, rng) → scalar, ``net`` taking (x) or (x, σ) as the objective's
# conditioning says. Mirror: jax_dsm/losses.py.
OBJECTIVES: Registry[Callable] = Registry("torch objective", "model.objective")


@OBJECTIVES("dsm")
def dsm_objective(net, x: torch.Tensor, sigmas: torch.Tensor, settings, reduction: str = "sum",
                  mask: torch.Tensor | None = None, *, rng: torch.Generator | None = None) -> torch.Tensor:
    """``dsm``: :func:`dsm_loss` at ``settings.sigma`` (``DSMSettings``)."""
    return dsm_loss(net, x, settings.sigma, reduction, mask, rng=rng)


@OBJECTIVES("ncsn")
def ncsn_objective(net, x: torch.Tensor, sigmas: torch.Tensor, settings, reduction: str = "mean",
                   mask: torch.Tensor | None = None, *, rng: torch.Generator | None = None) -> torch.Tensor:
    """``ncsn``: :func:`ncsn_loss` over ``sigmas`` (``NCSNSettings``)."""
    return ncsn_loss(net, x, sigmas, reduction, mask, rng=rng)


@OBJECTIVES("edm")
def edm_objective(net, x: torch.Tensor, sigmas: torch.Tensor, settings, reduction: str = "mean",
                  mask: torch.Tensor | None = None, *, rng: torch.Generator | None = None) -> torch.Tensor:
    """``edm``: :func:`edm_loss` with ``settings`` (``EDMSettings``, σ_data resolved from the data).

    Raises:
        ValueError: ``settings.sigma_data`` not yet resolved (the module sets it at setup).
    """
    if settings.sigma_data is None:
        raise ValueError("edm_loss needs settings.sigma_data (DSMModule.setup sets it from the data)")
    return edm_loss(net, x, settings.sigma_data, settings.p_mean, settings.p_std, reduction, mask, rng=rng)


@functools.lru_cache(maxsize=8)
def _sde(description: tuple):
    from torch_dsm.sde_lib import get_sde

    return get_sde(dict(description))


@OBJECTIVES("sde")
def sde_objective(net, x: torch.Tensor, sigmas: torch.Tensor, settings, reduction: str = "mean",
                  mask: torch.Tensor | None = None, *, rng: torch.Generator | None = None) -> torch.Tensor:
    """``sde``: :func:`sde_loss` of the SDE ``settings`` (``SDESettings``, resolved from the data)
    describe, the network ``net(x, σ)`` fed σ(t), or with ``preconditioning: edm`` x_t/α(t) and
    σ(t)/α(t) (``sde_lib.time_score``).

    Raises:
        ValueError: VE's ``settings.sigma_max`` not yet resolved (the module sets it at setup).
    """
    from torch_dsm.sde_lib import time_score

    if settings.kind == "ve" and settings.sigma_max is None:
        raise ValueError("sde_loss needs settings.sigma_max (DSMModule.setup sets it from the data)")
    description = settings.description()
    sde = _sde(tuple(sorted(description.items())))
    score = time_score(net, sde, description["unscaled"])
    return sde_loss(score, x, sde, settings.t_eps, settings.weighting, reduction, mask,
                    settings.stratified, rng=rng)
