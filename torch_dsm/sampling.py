"""Samplers: Euler–Maruyama Langevin dynamics, annealed Langevin and the EDM sampler (docs/method.md §1, §3, §6).

    x_{k+1} = x_k + (ε/2) s(x_k) + √ε z_k,    z_k ~ N(0, I)

Mirror: ``jax_dsm/sampling.py``. Initial states and per-step noise can be passed in (for parity
tests against a numpy recursion or the other framework); only the final states, or every k-th
state, are kept, never the whole chain.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from dsm_common.registry import Registry
from dsm_common.validation import require_randomness

__all__ = ["langevin", "annealed_langevin", "edm_sampler", "SAMPLERS", "run_langevin", "run_annealed_langevin",
           "run_heun", "run_euler", "run_pc", "run_ode"]

_NOISE_FLOATS = 1 << 18  # noise drawn at once when none is passed in: ≤ 1 MiB of float32


@torch.inference_mode()
def langevin(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    step_size: float,
    n_steps: int,
    keep_every: int = 0,
    progress: bool = False,
    *,
    noise: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``n_steps`` of Euler–Maruyama Langevin dynamics from ``x0``.

    Args:
        score_fn: score, (n, d) → (n, d).
        x0: initial states, (n, d) float32.
        step_size: ε > 0.
        n_steps: number of steps.
        keep_every: keep the state after every ``keep_every``-th step (0: keep none).
        progress: show a tqdm bar.
        noise: (n_steps, n, d) standard normal draws z_k.
        rng: torch Generator for the per-step noise when ``noise`` is None.

    Returns:
        ``(x, kept)``: final states (n, d) and kept states (n_steps // keep_every, n, d) or None.

    Raises:
        ValueError: neither ``noise`` nor ``rng``.
    """
    require_randomness("langevin", rng, noise)
    x = x0.clone()
    sqrt_eps, half_eps = math.sqrt(step_size), 0.5 * step_size
    kept = []
    block = None
    # Draw several steps of noise per call (one randn per step is slow for few chains), but never
    # more than _NOISE_FLOATS numbers: memory stays that of the states kept.
    steps_per_block = max(1, min(1024, _NOISE_FLOATS // max(x.numel(), 1)))
    with tqdm(total=n_steps, desc="Langevin", disable=not progress, mininterval=0.5) as bar:
        for k in range(n_steps):
            if noise is not None:
                z = noise[k]
            else:
                j = k % steps_per_block
                if j == 0:
                    m = min(steps_per_block, n_steps - k)
                    block = torch.randn((m,) + tuple(x.shape), generator=rng, dtype=x.dtype, device=x.device)
                z = block[j]
            x = x + half_eps * score_fn(x) + sqrt_eps * z
            if keep_every and (k + 1) % keep_every == 0:
                kept.append(x)
            if (k + 1) % 256 == 0 or k + 1 == n_steps:
                bar.update(k + 1 - bar.n)
    return x, (torch.stack(kept) if kept else None)


def annealed_langevin(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor,
    step_size: float,
    n_steps_each: int,
    denoise: bool = True,
    keep_every: int = 0,
    progress: bool = False,
    *,
    noise: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Annealed Langevin dynamics (arXiv 1907.05600, Algorithm 1), the paper's step form.

    For each level σ_i (largest first): α_i = ε σ_i² / σ_L², then ``n_steps_each`` steps of
    ``x ← x + (α_i/2) s(x, σ_i) + √α_i z``. Optionally a final denoising step
    ``x ← x + σ_L² s(x, σ_L)`` (Tweedie's formula; arXiv 2006.09011).

    Args:
        score_fn: conditional score, ((n, d), (n,)) → (n, d).
        x0: initial states (n, d) float32.
        sigmas: (L,) noise levels, decreasing.
        step_size: ε > 0.
        n_steps_each: T, steps per level.
        denoise: apply the final denoising step.
        keep_every: keep every k-th state within each level (0: none).
        progress: show a tqdm bar over levels.
        noise: (L, T, n, d) standard normal draws.
        rng: torch Generator for the noise when ``noise`` is None (one stream through the levels).

    Returns:
        ``(x, kept)`` as for :func:`langevin`; ``kept`` concatenates the levels.

    Raises:
        ValueError: neither ``noise`` nor ``rng``.
    """
    require_randomness("annealed_langevin", rng, noise)
    sig = torch.as_tensor(sigmas, dtype=x0.dtype)
    host = sig.cpu()  # one copy to the host for the step sizes, not one per level
    alphas = [step_size * float(s / host[-1]) ** 2 for s in host]
    sig = sig.to(x0.device)
    x, kept = x0, []
    for i in tqdm(range(sig.shape[0]), desc="annealed Langevin", disable=not progress):
        level = sig[i].expand(x0.shape[0])
        alpha = alphas[i]
        x, k = langevin(
            lambda y, level=level: score_fn(y, level), x, alpha, n_steps_each, keep_every,
            noise=None if noise is None else noise[i], rng=rng,
        )
        if k is not None:
            kept.append(k)
    if denoise:
        with torch.inference_mode():
            x = x + sig[-1] ** 2 * score_fn(x, sig[-1].expand(x0.shape[0]))
    return x, (torch.cat(kept) if kept else None)


# ----------------------------------------------------------------------------- the sampler registry
# torch functions under the names of dsm_common.registry.SAMPLERS: (score_fn(x, σ (n,)), x0 (n, d),
# sigmas (L,), settings, keep_every, progress, *, rng) → (final, kept); the score-SDE samplers also
# take sde= (the model's SDE) and may add the NFE as a third value. Mirror: jax_dsm/sampling.py.
SAMPLERS: Registry[Callable] = Registry("torch sampler", "model.sampler.name")


@torch.inference_mode()
def edm_sampler(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    t_steps: Sequence[float] | torch.Tensor,
    gammas: Sequence[float] | torch.Tensor | None = None,
    s_noise: float = 1.0,
    heun: bool = True,
    keep_every: int = 0,
    progress: bool = False,
    *,
    noise: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The EDM sampler (arXiv 2206.00364, Algorithm 2; docs/method.md §6) on the probability-flow
    ODE dx/dσ = −σ s(x, σ), from x = σ_0 x₀.

    Step i: σ̂ = σ_i (1 + γ_i) and x̂ = x + √(σ̂² − σ_i²) s_noise ε_i (no noise where γ_i = 0), the
    slope d = −σ̂ s(x̂, σ̂), the Euler step x' = x̂ + (σ_{i+1} − σ̂) d, and, for ``heun`` and every
    step but the last (σ_N = 0), Heun's correction x' = x̂ + (σ_{i+1} − σ̂)(d + d')/2 with
    d' = −σ_{i+1} s(x', σ_{i+1}). Network evaluations: 2N − 1 (Heun) or N (Euler).

    Args:
        score_fn: conditional score, ((n, d), (n,)) → (n, d).
        x0: (n, d) float32 standard normal latents.
        t_steps: (N + 1,) levels σ_0 > … > σ_N = 0 (``HeunSettings.schedule``).
        gammas: (N,) churn γ_i (``HeunSettings.gammas``); None: all 0 (deterministic).
        s_noise: S_noise.
        heun: second-order steps (else Euler's).
        keep_every: keep the state after every k-th step (0: none).
        progress: show a tqdm bar over steps.
        noise: (N, n, d) standard normal ε, used at the steps with γ_i > 0.
        rng: torch Generator for ε when ``noise`` is None and some γ_i > 0.

    Returns:
        ``(x, kept)``: final states (n, d), and (N // k, n, d) kept states or None.

    Raises:
        ValueError: some γ_i > 0 with neither ``noise`` nor ``rng``.
    """
    t = torch.as_tensor(t_steps, dtype=x0.dtype, device=x0.device)
    n_steps = t.shape[0] - 1
    g = torch.zeros(n_steps, dtype=x0.dtype) if gammas is None else torch.as_tensor(gammas, dtype=x0.dtype)
    churned = [bool(v > 0) for v in g.cpu()]  # one copy to the host, not one per step
    g = g.to(x0.device)
    if any(churned):
        require_randomness("edm_sampler", rng, noise)
    x, kept = x0 * t[0], []
    for i in tqdm(range(n_steps), desc="EDM sampler", disable=not progress):
        t_cur, t_next = t[i], t[i + 1]
        t_hat = t_cur * (1 + g[i])
        if churned[i]:
            eps = noise[i] if noise is not None else torch.randn(x.shape, generator=rng, dtype=x.dtype, device=x.device)
            x = x + t_cur * torch.sqrt(g[i] * (2 + g[i])) * s_noise * eps  # √(σ̂² − σ_i²), no cancellation
        d = -t_hat * score_fn(x, t_hat.expand(x.shape[0]))  # (n, d)
        x_next = x + (t_next - t_hat) * d
        if heun and i < n_steps - 1:
            d_next = -t_next * score_fn(x_next, t_next.expand(x.shape[0]))
            x_next = x + (t_next - t_hat) * (0.5 * d + 0.5 * d_next)
        x = x_next
        if keep_every and (i + 1) % keep_every == 0:
            kept.append(x.clone())
    return x, (torch.stack(kept) if kept else None)


@SAMPLERS("langevin")
def run_langevin(score_fn, x0: torch.Tensor, sigmas: torch.Tensor, settings, keep_every: int = 0,
                 progress: bool = False, *, rng: torch.Generator | None = None):
    """``langevin`` with its settings (``LangevinSettings``); the network is scored at σ_L = ``sigmas[-1]``."""
    level = sigmas[-1].expand(x0.shape[0])
    return langevin(lambda x: score_fn(x, level), x0, settings.step_size, settings.n_steps, keep_every, progress, rng=rng)


@SAMPLERS("annealed_langevin")
def run_annealed_langevin(score_fn, x0: torch.Tensor, sigmas: torch.Tensor, settings, keep_every: int = 0,
                          progress: bool = False, *, rng: torch.Generator | None = None):
    """``annealed_langevin`` with its settings (``AnnealedLangevinSettings``) over all of ``sigmas``."""
    return annealed_langevin(score_fn, x0, sigmas, settings.step_size, settings.n_steps_each, settings.denoise,
                             keep_every, progress, rng=rng)


def _run_edm(heun: bool, score_fn, x0: torch.Tensor, sigmas: torch.Tensor, settings, keep_every: int, progress: bool,
             rng: torch.Generator | None):
    t = settings.schedule(sigmas.cpu().numpy().astype("float64"))  # (N + 1,), from HeunSettings/EulerSettings
    return edm_sampler(score_fn, x0, torch.as_tensor(t, dtype=x0.dtype), torch.as_tensor(settings.gammas(t), dtype=x0.dtype),
                       settings.s_noise, heun, keep_every, progress, rng=rng)


@SAMPLERS("heun")
def run_heun(score_fn, x0: torch.Tensor, sigmas: torch.Tensor, settings, keep_every: int = 0,
             progress: bool = False, *, rng: torch.Generator | None = None):
    """``heun`` with its settings (``HeunSettings``) over the model's range ``sigmas``: :func:`edm_sampler`."""
    return _run_edm(True, score_fn, x0, sigmas, settings, keep_every, progress, rng)


@SAMPLERS("euler")
def run_euler(score_fn, x0: torch.Tensor, sigmas: torch.Tensor, settings, keep_every: int = 0,
              progress: bool = False, *, rng: torch.Generator | None = None):
    """``euler`` with its settings (``EulerSettings``) over the model's range ``sigmas``: :func:`edm_sampler`."""
    return _run_edm(False, score_fn, x0, sigmas, settings, keep_every, progress, rng)


def _sde_start(x0: torch.Tensor, settings, description: dict):
    """The chains' start at T = 1, x₀ times the prior's std (``sde_prior_std``), and the end time."""
    from dsm_common.config import sde_end_time, sde_prior_std

    return x0 * sde_prior_std(description), sde_end_time(settings, description)


@SAMPLERS("pc")
def run_pc(score_fn, x0: torch.Tensor, sigmas: torch.Tensor, settings, keep_every: int = 0,
           progress: bool = False, *, sde: dict | None = None, rng: torch.Generator | None = None):
    """``pc`` with its settings (``PCSettings``) on the model's SDE ``sde`` (``SDESettings.description``):
    ``sde_lib.pc_sampler`` from x₀ times the prior's std, the network fed σ(t), or x/α(t) and σ(t)/α(t) for an
    unscaled model (``time_score``)."""
    from torch_dsm.sde_lib import get_sde, pc_sampler, time_score

    forward = get_sde(sde, settings.num_steps)
    start, eps = _sde_start(x0, settings, sde)
    score = time_score(score_fn, forward, sde.get("unscaled", False))
    return pc_sampler(forward, score, start, settings.predictor, settings.corrector, settings.snr,
                      settings.n_corrector, eps, settings.denoise, settings.alpha_rule, keep_every, rng=rng)


@SAMPLERS("ode")
def run_ode(score_fn, x0: torch.Tensor, sigmas: torch.Tensor, settings, keep_every: int = 0,
            progress: bool = False, *, sde: dict | None = None, rng: torch.Generator | None = None):
    """``ode`` with its settings (``ODESettings``) on the model's SDE ``sde``: ``sde_lib.ode_sampler``
    from x₀ times the prior's std; returns ``(final, kept, nfe)`` (an adaptive solver's NFE as it ran)."""
    from torch_dsm.sde_lib import get_sde, ode_sampler, time_score

    forward = get_sde(sde)
    start, eps = _sde_start(x0, settings, sde)
    score = time_score(score_fn, forward, sde.get("unscaled", False))
    return ode_sampler(forward, score, start, settings.solver, settings.num_steps, settings.rtol,
                       settings.atol, eps, settings.denoise, keep_every)
