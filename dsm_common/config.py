"""Configuration pieces both frameworks read from the same YAML (``model.sampler``, noise levels).

``SamplerConfig`` is a plain dataclass, so LightningCLI and the JAX command line (both built on
jsonargparse) turn it into the same nested YAML section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from dsm_common.validation import (
    DSMInputError,
    check_non_negative_int,
    check_positive,
    check_positive_int,
)

__all__ = ["SamplerConfig", "geometric_sigmas", "check_model_options"]


@dataclass
class SamplerConfig:
    """Langevin sampler settings (docs/method.md §1 defaults: 100 chains, ε = 0.01, 10 000 steps).

    Attributes:
        n_chains: number of independent chains (= samples returned).
        step_size: ε of ``x ← x + (ε/2) s(x) + √ε z``; for annealed Langevin the ε of
            ``α_i = ε σ_i² / σ_L²``.
        n_steps: Langevin steps (annealed: steps per noise level, T).
        keep_every: keep every k-th state in a trajectory (0: final states only).
        init: initial law, ``normal`` (N(0, init_scale² I)) or ``uniform`` ([−init_scale, init_scale]²),
            in training space.
        init_scale: std (normal) or half-width (uniform) of the initial law.
        kind: ``langevin`` (single noise level) or ``annealed`` (NCSN); None picks ``annealed``
            for a multi-scale model and ``langevin`` otherwise.
        denoise: annealed only: finish with ``x ← x + σ_L² s(x, σ_L)`` (Tweedie denoising).
        seed: seed of the sampler's own random stream.
        trajectory_steps: steps of the single-chain trajectory demo from the origin (0: none).
        trajectory_step_size: ε of the trajectory demo.
        trajectory_keep_every: keep every k-th state of the trajectory demo.
        plain_step_size: multi-scale models: ε of the plain-Langevin comparison run
            (``s(x, σ_L)``, L × n_steps steps, same initial states); None: ``step_size``.
            The annealed ε is tiny at σ_L (α_L = ε), so a fair comparison needs its own step.
    """

    n_chains: int = 100
    step_size: float = 0.01
    n_steps: int = 10_000
    keep_every: int = 0
    init: Literal["normal", "uniform"] = "normal"
    init_scale: float = 1.0
    kind: Optional[Literal["langevin", "annealed"]] = None
    denoise: bool = True
    seed: int = 0
    trajectory_steps: int = 100_000
    trajectory_step_size: float = 0.001
    trajectory_keep_every: int = 1000
    plain_step_size: Optional[float] = None

    def validate(self) -> SamplerConfig:
        """Check every field; raise DSMInputError naming the first bad one."""
        check_positive_int("sampler.n_chains", self.n_chains)
        check_positive("sampler.step_size", self.step_size)
        check_positive_int("sampler.n_steps", self.n_steps)
        check_non_negative_int("sampler.keep_every", self.keep_every)
        check_positive("sampler.init_scale", self.init_scale)
        if self.init not in ("normal", "uniform"):
            raise DSMInputError(f"sampler.init must be normal or uniform, got {self.init!r}")
        check_non_negative_int("sampler.trajectory_steps", self.trajectory_steps)
        if self.trajectory_steps:
            check_positive("sampler.trajectory_step_size", self.trajectory_step_size)
            check_positive_int("sampler.trajectory_keep_every", self.trajectory_keep_every)
        if self.plain_step_size is not None:
            check_positive("sampler.plain_step_size", self.plain_step_size)
        return self

    def initial_states(self, rng: np.random.Generator) -> np.ndarray:
        """Initial states (n_chains, 2) float32 drawn with a numpy Generator."""
        if self.init == "normal":
            x0 = self.init_scale * rng.standard_normal((self.n_chains, 2))
        else:
            x0 = rng.uniform(-self.init_scale, self.init_scale, (self.n_chains, 2))
        return x0.astype(np.float32)


def geometric_sigmas(sigma_max: float, sigma_min: float, num_scales: int) -> np.ndarray:
    """Noise levels σ₁ > … > σ_L, geometric from ``sigma_max`` to ``sigma_min`` (arXiv 1907.05600).

    Returns:
        (L,) float64 array. L = 1 returns ``[sigma_min]``.

    Raises:
        DSMInputError: non-positive levels, ``sigma_max ≤ sigma_min`` with L > 1, L < 1.
    """
    check_positive("model.sigma_max", sigma_max)
    check_positive("model.sigma_min", sigma_min)
    check_positive_int("model.num_scales", num_scales)
    if num_scales == 1:
        return np.array([float(sigma_min)])
    if sigma_max <= sigma_min:
        raise DSMInputError(f"model.sigma_max ({sigma_max}) must exceed model.sigma_min ({sigma_min})")
    return np.geomspace(sigma_max, sigma_min, num_scales)


def check_model_options(sigma: float, lr: float, num_scales: int, optimizer: str, reduction: str) -> None:
    """Validate the model options both frameworks share; raise DSMInputError naming the bad one."""
    check_positive("model.sigma", sigma)
    check_positive("model.lr", lr)
    check_positive_int("model.num_scales", num_scales)
    if optimizer not in ("sgd", "adam"):
        raise DSMInputError(f"model.optimizer must be sgd or adam, got {optimizer!r}")
    if reduction not in ("sum", "mean"):
        raise DSMInputError(f"model.reduction must be sum or mean, got {reduction!r}")


def noise_levels(sigma: float, num_scales: int, sigma_max: float | None, sigma_min: float,
                 points: np.ndarray | None = None) -> np.ndarray:
    """The model's noise levels, (L,) float64, largest first.

    ``num_scales = 1``: ``[sigma]`` (the single-scale recipe). Otherwise geometric from σ₁ to
    ``sigma_min``, with σ₁ = ``sigma_max`` or, when that is None, the largest pairwise distance
    in ``points`` (arXiv 2006.09011, technique 1); without points either, a placeholder
    ``2 · sigma_min`` that training replaces once it sees the data.
    """
    if num_scales == 1:
        return np.array([float(sigma)])
    if sigma_max is None:
        from dsm_common.datasets import largest_pairwise_distance

        sigma_max = largest_pairwise_distance(points) if points is not None else 2 * sigma_min
    return geometric_sigmas(sigma_max, sigma_min, num_scales)
