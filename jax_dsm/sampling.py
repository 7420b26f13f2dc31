"""Samplers: Euler–Maruyama Langevin dynamics, annealed Langevin and the EDM sampler (docs/method.md §1, §3, §6).

    x_{k+1} = x_k + (ε/2) s(x_k) + √ε z_k,    z_k ~ N(0, I)

Mirror: ``torch_dsm/sampling.py``. The steps run inside one ``jit``-compiled ``lax.scan``; with a
progress bar the run is cut into equal chunks (one compiled function, called once per chunk),
and step k draws its noise from ``fold_in(rng, k)``, so the samples are the same with or without
the bar.
Score functions are passed as ``jax.tree_util.Partial`` (e.g. ``Partial(model.apply, variables)``)
so parameters are traced arguments, not constants baked into the compiled code; a plain
callable is wrapped. Initial states and per-step noise can be passed in; only the final states,
or every k-th state, are kept.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.tree_util import Partial
from tqdm.auto import tqdm

from dsm_common.registry import Registry
from dsm_common.validation import require_randomness

__all__ = ["langevin", "annealed_langevin", "edm_sampler", "chunk_length", "SAMPLERS", "run_langevin",
           "run_annealed_langevin", "run_heun", "run_euler", "run_pc", "run_ode"]


def chunk_length(n_steps: int, keep_every: int, target_chunks: int) -> int:
    """Largest chunk of steps that divides ``n_steps``, is a multiple of ``keep_every`` and
    gives at least ``target_chunks`` chunks where possible (so every chunk has one shape)."""
    unit = keep_every or 1
    units = n_steps // unit
    for n_chunks in range(min(target_chunks, units), units + 1):
        if units % n_chunks == 0:
            return units // n_chunks * unit
    return unit


@partial(jax.jit, static_argnames=("n_steps", "keep_every"))
def _langevin_scan(score_fn, x, step_size, n_steps, keep_every, key=None, noise=None, start=0):
    """``n_steps`` Langevin steps in one scan; noise from ``noise`` (n_steps, n, d) or ``key``.

    With ``key``, step k of the whole run (k = ``start`` + i) draws its noise from
    ``fold_in(key, k)``, so the result does not depend on how the run is cut into chunks."""
    if noise is None:
        xs = jax.vmap(jax.random.fold_in, (None, 0))(key, start + jnp.arange(n_steps))  # per-step keys
    else:
        xs = noise

    def step(x, xs_k):
        z = jax.random.normal(xs_k, x.shape, x.dtype) if noise is None else xs_k
        return x + 0.5 * step_size * score_fn(x) + jnp.sqrt(step_size) * z, None

    if not keep_every:
        x, _ = lax.scan(step, x, xs)
        return x, None
    blocks = xs.reshape((n_steps // keep_every, keep_every) + xs.shape[1:])

    def block(x, xs_block):
        x, _ = lax.scan(step, x, xs_block)
        return x, x

    return lax.scan(block, x, blocks)  # (x, kept (n_steps // keep_every, n, d))


def _as_partial(fn: Callable) -> Partial:
    return fn if isinstance(fn, Partial) else Partial(fn)


def _start(name: str, score_fn: Callable, x0, rng, noise) -> tuple[Partial, jnp.ndarray]:
    """A sampler's checks and inputs: randomness given, the score as a ``Partial``, x₀ as an array."""
    require_randomness(name, rng, noise)
    return _as_partial(score_fn), jnp.asarray(x0)


def _run_chunks(score_fn, x, step, n_steps, keep_every, bar, key, noise, start):
    """Steps ``start`` … ``start + n_steps − 1`` of a run, in equal compiled chunks when ``bar`` is on."""
    chunk = chunk_length(n_steps, keep_every, 20) if not bar.disable else n_steps
    if chunk * (n_steps // chunk) != n_steps:
        chunk = n_steps  # no equal split that respects keep_every: one chunk
    kept = []
    for c in range(n_steps // chunk):
        lo = c * chunk
        if noise is not None:
            x, k = _langevin_scan(score_fn, x, step, chunk, keep_every, noise=noise[lo : lo + chunk])
        else:
            x, k = _langevin_scan(score_fn, x, step, chunk, keep_every, key=key, start=jnp.int32(start + lo))
        if k is not None:
            kept.append(k)
        if not bar.disable:
            x.block_until_ready()
            bar.update(chunk)
    return x, kept


def langevin(
    score_fn: Callable[[jnp.ndarray], jnp.ndarray],
    x0: jnp.ndarray,
    step_size: float,
    n_steps: int,
    keep_every: int = 0,
    progress: bool = False,
    *,
    noise: jnp.ndarray | None = None,
    rng: jax.Array | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray | None]:
    """Run ``n_steps`` of Euler–Maruyama Langevin dynamics from ``x0``, compiled.

    Args:
        score_fn: score, (n, d) → (n, d); a ``Partial`` to keep parameters traced.
        x0: initial states, (n, d) float32.
        step_size: ε > 0.
        n_steps: number of steps.
        keep_every: keep the state after every ``keep_every``-th step (0: keep none).
        progress: show a tqdm bar, advanced between compiled chunks (the result is the same).
        noise: (n_steps, n, d) standard normal draws z_k.
        rng: PRNG key for the per-step noise when ``noise`` is None (step k: ``fold_in(rng, k)``).

    Returns:
        ``(x, kept)``: final states (n, d) and kept states (n_steps // keep_every, n, d) or None.

    Raises:
        ValueError: neither ``noise`` nor ``rng``.
    """
    score_fn, x = _start("langevin", score_fn, x0, rng, noise)
    step = jnp.asarray(step_size, x.dtype)
    # keep_every not dividing n_steps: keep over the largest multiple of keep_every, then run the
    # remaining steps without keeping (the torch sampler's result).
    n_main = n_steps - n_steps % keep_every if keep_every else n_steps
    kept = []
    with tqdm(total=n_steps, desc="Langevin", disable=not progress) as bar:
        if n_main:
            x, kept = _run_chunks(score_fn, x, step, n_main, keep_every, bar, rng, noise, 0)
        if n_steps > n_main:
            rest = None if noise is None else noise[n_main:]
            x, _ = _run_chunks(score_fn, x, step, n_steps - n_main, 0, bar, rng, rest, n_main)
    return x, (jnp.concatenate(kept) if kept else None)


def _at_level(score_fn, sigma, x):
    return score_fn(x, jnp.broadcast_to(sigma, x.shape[:1]))


def annealed_langevin(
    score_fn: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray],
    x0: jnp.ndarray,
    sigmas: Sequence[float] | jnp.ndarray,
    step_size: float,
    n_steps_each: int,
    denoise: bool = True,
    keep_every: int = 0,
    progress: bool = False,
    *,
    noise: jnp.ndarray | None = None,
    rng: jax.Array | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray | None]:
    """Annealed Langevin dynamics (arXiv 1907.05600, Algorithm 1), the paper's step form.

    For each level σ_i (largest first): α_i = ε σ_i² / σ_L², then ``n_steps_each`` steps of
    ``x ← x + (α_i/2) s(x, σ_i) + √α_i z``. Optionally a final denoising step
    ``x ← x + σ_L² s(x, σ_L)`` (Tweedie's formula; arXiv 2006.09011). Each level is one compiled
    scan (the same compiled function for every level).

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
        rng: PRNG key when ``noise`` is None, split into one key per level.

    Returns:
        ``(x, kept)`` as for :func:`langevin`; ``kept`` concatenates the levels.

    Raises:
        ValueError: neither ``noise`` nor ``rng``.
    """
    score_fn, x = _start("annealed_langevin", score_fn, x0, rng, noise)
    sig = jnp.asarray(sigmas, x.dtype)
    keys = None if noise is not None else jax.random.split(rng, sig.shape[0])
    kept = []
    for i in tqdm(range(sig.shape[0]), desc="annealed Langevin", disable=not progress):
        alpha = step_size * (sig[i] / sig[-1]) ** 2
        x, k = langevin(
            Partial(_at_level, score_fn, sig[i]), x, alpha, n_steps_each, keep_every,
            rng=None if keys is None else keys[i], noise=None if noise is None else noise[i],
        )
        if k is not None:
            kept.append(k)
    if denoise:
        x = x + sig[-1] ** 2 * _at_level(score_fn, sig[-1], x)
    return x, (jnp.concatenate(kept) if kept else None)


def _edm_step(score_fn, x, t_cur, t_next, gamma, s_noise, eps, heun: bool):
    """One step of :func:`edm_sampler` (its doc); ``eps`` None: no churn."""
    t_hat = t_cur * (1 + gamma)
    if eps is not None:
        x = x + t_cur * jnp.sqrt(gamma * (2 + gamma)) * s_noise * eps  # √(σ̂² − σ_i²), no cancellation
    d = -t_hat * score_fn(x, jnp.broadcast_to(t_hat, x.shape[:1]))  # (n, d)
    x_next = x + (t_next - t_hat) * d
    if heun:
        d_next = -t_next * score_fn(x_next, jnp.broadcast_to(t_next, x.shape[:1]))
        x_next = x + (t_next - t_hat) * (0.5 * d + 0.5 * d_next)
    return x_next


@partial(jax.jit, static_argnames=("heun", "churn", "keep"))
def _edm_scan(score_fn, x0, t_steps, gammas, s_noise, heun: bool, churn: bool, keep: bool, key, noise):
    n_steps = gammas.shape[0]

    def eps_at(i, x):
        if not churn:
            return None
        return noise[i] if noise is not None else jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)

    def step(x, i):
        x = _edm_step(score_fn, x, t_steps[i], t_steps[i + 1], gammas[i], s_noise, eps_at(i, x), heun)
        return x, (x if keep else None)

    x, states = lax.scan(step, x0 * t_steps[0], jnp.arange(n_steps - 1))  # Heun's steps (or Euler's)
    last = n_steps - 1  # the last step, to σ_N = 0: Euler's
    x = _edm_step(score_fn, x, t_steps[last], t_steps[last + 1], gammas[last], s_noise, eps_at(last, x), False)
    return x, (jnp.concatenate([states, x[None]]) if keep else None)  # (N, n, d): the state after every step


def edm_sampler(
    score_fn: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray],
    x0: jnp.ndarray,
    t_steps: Sequence[float] | jnp.ndarray,
    gammas: Sequence[float] | jnp.ndarray | None = None,
    s_noise: float = 1.0,
    heun: bool = True,
    keep_every: int = 0,
    progress: bool = False,
    *,
    noise: jnp.ndarray | None = None,
    rng: jax.Array | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray | None]:
    """The EDM sampler (arXiv 2206.00364, Algorithm 2; docs/method.md §6) on the probability-flow
    ODE dx/dσ = −σ s(x, σ), from x = σ_0 x₀, compiled as one ``lax.scan``.

    Step i: σ̂ = σ_i (1 + γ_i) and x̂ = x + √(σ̂² − σ_i²) s_noise ε_i (no noise where γ_i = 0), the
    slope d = −σ̂ s(x̂, σ̂), the Euler step x' = x̂ + (σ_{i+1} − σ̂) d, and, for ``heun`` and every
    step but the last (σ_N = 0), Heun's correction x' = x̂ + (σ_{i+1} − σ̂)(d + d')/2 with
    d' = −σ_{i+1} s(x', σ_{i+1}). Network evaluations: 2N − 1 (Heun) or N (Euler).

    Args:
        score_fn: conditional score, ((n, d), (n,)) → (n, d), best a ``Partial``.
        x0: (n, d) float32 standard normal latents.
        t_steps: (N + 1,) levels σ_0 > … > σ_N = 0 (``HeunSettings.schedule``).
        gammas: (N,) churn γ_i (``HeunSettings.gammas``); None: all 0 (deterministic).
        s_noise: S_noise.
        heun: second-order steps (else Euler's).
        keep_every: keep the state after every k-th step (0: none).
        progress: unused (one compiled call; the torch twin shows a bar).
        noise: (N, n, d) standard normal ε, used at the steps with γ_i > 0.
        rng: PRNG key for ε when ``noise`` is None and some γ_i > 0 (step i: ``fold_in(rng, i)``).

    Returns:
        ``(x, kept)``: final states (n, d), and (N // k, n, d) kept states or None.

    Raises:
        ValueError: some γ_i > 0 with neither ``noise`` nor ``rng``.
    """
    t = jnp.asarray(t_steps, x0.dtype)
    g = jnp.zeros(t.shape[0] - 1, x0.dtype) if gammas is None else jnp.asarray(gammas, x0.dtype)
    churn = bool(jnp.any(g > 0))
    if churn:
        require_randomness("edm_sampler", rng, noise)
    x, states = _edm_scan(_as_partial(score_fn), x0, t, g, jnp.asarray(s_noise, x0.dtype), heun, churn,
                          bool(keep_every), rng if churn and noise is None else None, noise if churn else None)
    kept = states[keep_every - 1 :: keep_every] if keep_every else None
    return x, (kept if kept is not None and kept.shape[0] else None)


# ----------------------------------------------------------------------------- the sampler registry
# JAX functions under the names of dsm_common.registry.SAMPLERS: (score_fn(x, σ (n,)) as a Partial,
# x0 (n, d), sigmas (L,), settings, keep_every, progress, *, rng) → (final, kept); the score-SDE
# samplers also take sde= (the model's SDE) and may add the NFE as a third value. Mirror: torch_dsm/sampling.py.
SAMPLERS: Registry[Callable] = Registry("jax sampler", "model.sampler.name")


@SAMPLERS("langevin")
def run_langevin(score_fn, x0: jnp.ndarray, sigmas: jnp.ndarray, settings, keep_every: int = 0,
                 progress: bool = False, *, rng: jax.Array | None = None):
    """``langevin`` with its settings (``LangevinSettings``); the network is scored at σ_L = ``sigmas[-1]``."""
    score = Partial(_at_level, _as_partial(score_fn), jnp.asarray(sigmas)[-1])
    return langevin(score, x0, settings.step_size, settings.n_steps, keep_every, progress, rng=rng)


@SAMPLERS("annealed_langevin")
def run_annealed_langevin(score_fn, x0: jnp.ndarray, sigmas: jnp.ndarray, settings, keep_every: int = 0,
                          progress: bool = False, *, rng: jax.Array | None = None):
    """``annealed_langevin`` with its settings (``AnnealedLangevinSettings``) over all of ``sigmas``."""
    return annealed_langevin(score_fn, x0, sigmas, settings.step_size, settings.n_steps_each, settings.denoise,
                             keep_every, progress, rng=rng)


def _run_edm(heun: bool, score_fn, x0: jnp.ndarray, sigmas: jnp.ndarray, settings, keep_every: int, progress: bool,
             rng: jax.Array | None):
    t = settings.schedule(np.asarray(sigmas, np.float64))  # (N + 1,), from HeunSettings/EulerSettings
    return edm_sampler(score_fn, x0, jnp.asarray(t, x0.dtype), jnp.asarray(settings.gammas(t), x0.dtype),
                       settings.s_noise, heun, keep_every, progress, rng=rng)


@SAMPLERS("heun")
def run_heun(score_fn, x0: jnp.ndarray, sigmas: jnp.ndarray, settings, keep_every: int = 0,
             progress: bool = False, *, rng: jax.Array | None = None):
    """``heun`` with its settings (``HeunSettings``) over the model's range ``sigmas``: :func:`edm_sampler`."""
    return _run_edm(True, score_fn, x0, sigmas, settings, keep_every, progress, rng)


@SAMPLERS("euler")
def run_euler(score_fn, x0: jnp.ndarray, sigmas: jnp.ndarray, settings, keep_every: int = 0,
              progress: bool = False, *, rng: jax.Array | None = None):
    """``euler`` with its settings (``EulerSettings``) over the model's range ``sigmas``: :func:`edm_sampler`."""
    return _run_edm(False, score_fn, x0, sigmas, settings, keep_every, progress, rng)


def _sde_start(x0: jnp.ndarray, settings, description: dict):
    """The chains' start at T = 1, x₀ times the prior's std (``sde_prior_std``), and the end time."""
    from dsm_common.config import sde_end_time, sde_prior_std

    return x0 * sde_prior_std(description), sde_end_time(settings, description)


@SAMPLERS("pc")
def run_pc(score_fn, x0: jnp.ndarray, sigmas: jnp.ndarray, settings, keep_every: int = 0,
           progress: bool = False, *, sde: dict | None = None, rng: jax.Array | None = None):
    """``pc`` with its settings (``PCSettings``) on the model's SDE ``sde`` (``SDESettings.description``):
    ``sde_lib.pc_sampler`` from x₀ times the prior's std, the network fed σ(t), or x/α(t) and σ(t)/α(t) for an
    unscaled model (``time_score``)."""
    from jax_dsm.sde_lib import get_sde, pc_sampler, time_score

    forward = get_sde(sde, settings.num_steps)
    start, eps = _sde_start(x0, settings, sde)
    score = time_score(score_fn, forward, sde.get("unscaled", False))
    return pc_sampler(forward, score, start, settings.predictor, settings.corrector, settings.snr,
                      settings.n_corrector, eps, settings.denoise, settings.alpha_rule, keep_every, rng=rng)


@SAMPLERS("ode")
def run_ode(score_fn, x0: jnp.ndarray, sigmas: jnp.ndarray, settings, keep_every: int = 0,
            progress: bool = False, *, sde: dict | None = None, rng: jax.Array | None = None):
    """``ode`` with its settings (``ODESettings``) on the model's SDE ``sde``: ``sde_lib.ode_sampler``
    from x₀ times the prior's std; returns ``(final, kept, nfe)`` (an adaptive solver's NFE as it ran)."""
    from jax_dsm.sde_lib import get_sde, ode_sampler, time_score

    forward = get_sde(sde)
    start, eps = _sde_start(x0, settings, sde)
    score = time_score(score_fn, forward, sde.get("unscaled", False))
    return ode_sampler(forward, score, start, settings.solver, settings.num_steps, settings.rtol,
                       settings.atol, eps, settings.denoise, keep_every)
