"""Sampling after training, written once: which sampler runs, the trajectory demo, the comparison.

A framework supplies a :class:`Backend` (its trained network and its registered samplers, numpy in
and numpy out); :func:`run_samplers` decides what runs, with which settings and seeds, and times it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from dsm_common.config import SamplerConfig, check_sampler_fits, sde_prior_std
from dsm_common.registry import SAMPLERS

__all__ = ["Backend", "Generated", "run_samplers"]


class Backend(Protocol):
    """One framework's trained network, as the run around it needs it (numpy in, numpy out).

    Attributes:
        framework: ``torch`` or ``jax``.
        conditional: whether the network is conditioned on σ.
        sigmas: (L,) float64 noise levels, largest first.
        preconditioning: ``{"name": "edm", "sigma_data": …}`` for a preconditioned network, else None.
        sde: a score-SDE model's SDE (``SDESettings.description``), else None.
        last_nfe: network evaluations per chain of the last ``sample`` call, where its sampler
            reported them (an adaptive solver's), else None.
    """

    framework: str
    conditional: bool
    sigmas: np.ndarray
    preconditioning: dict | None
    sde: dict | None
    last_nfe: int | None

    def sample(self, name: str, x0: np.ndarray, settings, keep_every: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the framework's sampler ``name`` (its registry) from ``x0`` (n, 2) with ``settings``,
        its random stream seeded with ``seed``; return ``(final (n, 2), kept or None)``."""

    def likelihood(self, points: np.ndarray, settings, seed: int) -> tuple[np.ndarray, int]:
        """Score-SDE models: ``(log p (n,) float64 in nats, NFE)`` of ``points`` (n, 2) in training
        space through the probability-flow ODE, solved as ``settings`` (``ODESettings``) say."""

    def score_at(self, sigma: float) -> Callable[[np.ndarray], np.ndarray]:
        """The network's score at level ``sigma`` as a numpy function (n, 2) → (n, 2)."""

    def per_level_loss(self, points: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """(L,) mean loss of ``points`` at each level with the given noise (L, N, 2)."""

    def save_weights(self, path, config: dict) -> None:
        """Write the network to ``path`` in the canonical layout with ``config`` as metadata."""


@dataclass
class Generated:
    """Sampler outputs in training space: final states, the trajectory demo, comparisons."""

    samples: np.ndarray
    trajectory: np.ndarray | None
    comparison: list[tuple[str, np.ndarray]] | None
    sample_seconds: float
    sampler: str
    nfe: int
    describe: str = ""  # the sampler and its settings, in words (figure titles)
    trajectory_step: np.ndarray | None = None  # (T,) sampler step of each trajectory state (0: the origin)
    trajectory_sigma: np.ndarray | None = None  # (T,) noise level in force at each state (multi-level samplers)
    animation: np.ndarray | None = None  # (F, m, 2) frames of the animation: initial states, kept states, final
    animation_labels: list[str] | None = None  # (F,) what each frame shows: the step, or the level in force
    reverse: list[tuple[str, np.ndarray]] | None = None  # score-SDE samplers: (label, states) along the reverse process


def run_samplers(cfg: SamplerConfig, name: str, backend: Backend) -> Generated:
    """Run sampler ``name``, the one-chain trajectory demo and, for a multi-level sampler, plain Langevin.

    * Main run: ``cfg.n_chains`` chains from ``cfg.initial_states`` (numpy, seed ``cfg.seed``),
      timed (``sample_seconds``, compilation included for JAX).
    * Trajectory demo (docs/method.md §1): one chain from the origin, ``trajectory_steps``
      evaluations of step ``trajectory_step_size`` (a multi-level sampler splits them over its
      levels), every ``trajectory_keep_every``-th state kept, origin first; seed ``cfg.seed + 1``.
    * A sampler that needs a σ-conditional network: plain Langevin with ``s(x, σ_L)`` from the same
      initial states, step ``plain_step_size`` (default: ``langevin.step_size``) and as many
      evaluations as the sampler, seed ``cfg.seed + 2``, for the side-by-side figure; a score-SDE
      sampler: the other one (``pc`` against ``ode``) from the same initial states.
    * A score-SDE sampler: the first ``REVERSE_CHAINS`` chains at t = 1 and after each quarter of
      a run (seed ``cfg.seed + 6``), for ``reverse_process.png``.
    * Animation (``cfg.animation_frames`` > 0): the sampler's full run from the first
      ``cfg.animation_chains`` initial states, every k-th state kept (``SamplerSpec.frames``),
      seed ``cfg.seed + 3``; frames are the initial states, the kept ones and the final ones.

    Raises:
        DSMInputError: an unknown sampler, or one that needs a σ-conditional network without one.
    """
    cfg.validate()
    spec = SAMPLERS[name]
    sde = getattr(backend, "sde", None)
    network = "sde" if sde else ("sigma" if backend.conditional else "none")
    check_sampler_fits(name, network, {"sde": "a score-SDE model", "sigma": "this network",
                                       "none": "a network not conditioned on σ"}[network], "model.sampler.name")
    settings = cfg.settings(name)
    n_levels = len(backend.sigmas)
    x0 = cfg.initial_states(np.random.default_rng(cfg.seed))
    t0 = time.perf_counter()
    samples, _ = backend.sample(name, x0, settings, 0, cfg.seed)
    seconds = time.perf_counter() - t0
    nfe = spec.nfe(settings, n_levels)
    if nfe is None:  # an adaptive solver: as many as it took
        nfe = backend.last_nfe

    trajectory = step = level_sigma = None
    if cfg.trajectory_steps:
        origin = np.zeros((1, 2), np.float32)
        demo, keep = spec.demo(settings, cfg.trajectory_steps, cfg.trajectory_step_size, cfg.trajectory_keep_every, n_levels)
        _, kept = backend.sample(name, origin, demo, keep, cfg.seed + 1)
        trajectory = np.concatenate([origin, np.asarray(kept)[:, 0, :]]) if kept is not None else origin
        n_kept = len(trajectory) - 1
        step = np.arange(n_kept + 1) * keep  # every keep-th step is kept (within each level, levels in turn)
        # The levels keep equal shares (samplers over a continuum of levels are coloured by step).
        if spec.conditioning == "sigma" and spec.step_levels is None and n_kept and n_kept % n_levels == 0:
            per_level = n_kept // n_levels
            level_sigma = np.concatenate([[backend.sigmas[0]], np.repeat(backend.sigmas, per_level)])

    comparison = None
    if spec.conditioning == "sde":  # the other way to sample the same SDE: PC against the probability-flow ODE
        other = "ode" if name == "pc" else "pc"
        other_settings = cfg.settings(other)
        other_samples, _ = backend.sample(other, x0, other_settings, 0, cfg.seed + 2)
        other_nfe = SAMPLERS[other].nfe(other_settings, n_levels) or backend.last_nfe
        comparison = [(f"{SAMPLERS[other].describe(other_settings, n_levels)}, {other_nfe} NFE", np.asarray(other_samples)),
                      (f"{spec.describe(settings, n_levels)}, {nfe} NFE", np.asarray(samples))]
    elif spec.conditioning != "any":
        plain = SAMPLERS["langevin"].settings(cfg.plain_step_size or cfg.langevin.step_size, nfe)
        plain_samples, _ = backend.sample("langevin", x0, plain, 0, cfg.seed + 2)
        comparison = [
            (f"plain Langevin, s(x, σ_L), {plain.n_steps} steps, ε = {plain.step_size:.3g}", np.asarray(plain_samples)),
            (spec.describe(settings, n_levels), np.asarray(samples)),
        ]
    reverse = None
    if spec.conditioning == "sde":  # the chains at t = 1 and after each quarter of the run
        chains = x0[:REVERSE_CHAINS]
        keep = max(1, settings.num_steps // 4)
        final, kept = backend.sample(name, chains, settings, keep, cfg.seed + 6)
        times = spec.step_times(settings, sde)
        reverse = [("t = 1 (the prior)", np.asarray(chains) * sde_prior_std(sde))]
        reverse += [(f"t = {times[(i + 1) * keep - 1]:.3g}", np.asarray(k)) for i, k in enumerate([] if kept is None else kept)]
        reverse[-1] = (reverse[-1][0] + " (final)", np.asarray(final))
    frames = labels = None
    if cfg.animation_frames:
        chains = x0[: cfg.animation_chains]
        keep = (spec.frames(settings, n_levels, cfg.animation_frames) if spec.frames
                else max(1, nfe // cfg.animation_frames))
        final, kept = backend.sample(name, chains, settings, keep, cfg.seed + 3)
        final, kept = np.asarray(final), ([] if kept is None else list(np.asarray(kept)))
        if spec.step_times is not None:  # a score-SDE sampler: the time of each kept step
            times = spec.step_times(settings, sde)
            labels = [f"t = {times[(i + 1) * keep - 1]:.3g}, step {(i + 1) * keep} of {len(times)}"
                      for i in range(len(kept))]
        elif spec.step_levels is not None:  # the sampler's own schedule: σ after each kept step
            levels = spec.step_levels(settings, backend.sigmas)
            labels = [f"σ = {levels[(i + 1) * keep - 1]:.3g}, step {(i + 1) * keep} of {len(levels)}"
                      for i in range(len(kept))]
        elif spec.conditioning == "sigma":  # states kept within each level, the levels in equal shares
            labels = [f"level σ = {v:.3g}" for v in np.repeat(backend.sigmas, len(kept) // n_levels)]
        else:
            labels = [f"step {(i + 1) * keep} of {nfe}" for i in range(len(kept))]
        frames, labels = [chains, *kept], ["initial states", *labels]
        if not (kept and np.array_equal(kept[-1], final)):  # the final states differ (a final denoising step)
            frames.append(final)
            labels.append(f"final states, after {nfe} evaluations")
        frames = np.stack(frames)
    return Generated(np.asarray(samples), trajectory, comparison, seconds, name, nfe, spec.describe(settings, n_levels),
                     step, level_sigma, frames, labels, reverse)


REVERSE_CHAINS = 2000  # chains shown in reverse_process.png

