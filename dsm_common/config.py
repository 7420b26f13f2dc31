"""Typed settings both frameworks read from the same YAML, and the method registry's entries.

Every class here is a plain dataclass, so LightningCLI and the JAX command line (both built on
jsonargparse) turn it into the same nested YAML section:

* ``model.objective`` names the training objective (``dsm``: one noise level, the reference
  recipe; ``ncsn``: many levels) and ``model.dsm`` / ``model.ncsn`` hold its settings;
* ``model.sampler.name`` names the sampler (``langevin``, ``annealed_langevin``; unset: the
  objective's default) and ``model.sampler.langevin`` / ``model.sampler.annealed_langevin`` hold
  its settings; the rest of ``model.sampler`` (chains, initial law, seed, trajectory demo) is
  common to all samplers.

The methods and their equations: ``docs/method.md``; how to add one: ``docs/methods.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Optional

import numpy as np

from dsm_common.registry import OBJECTIVES, SAMPLERS, ObjectiveSpec, SamplerSpec
from dsm_common.validation import (
    DSMInputError,
    check_finite,
    check_fits_memory,
    check_non_negative,
    check_non_negative_int,
    check_positive,
    check_positive_int,
)

__all__ = [
    "DSMSettings",
    "NCSNSettings",
    "EDMSettings",
    "HeunSettings",
    "EulerSettings",
    "SDESettings",
    "PCSettings",
    "ODESettings",
    "sde_levels",
    "sde_prior_std",
    "sde_end_time",
    "data_sigma",
    "LangevinSettings",
    "AnnealedLangevinSettings",
    "SamplerConfig",
    "geometric_sigmas",
    "check_model_options",
    "MethodChoice",
    "resolve_methods",
    "check_sampler_fits",
    "check_hidden_dims",
    "check_sampler_memory",
    "settings_record",
    "legacy_option_message",
]


# ----------------------------------------------------------------------------- objectives
@dataclass
class DSMSettings:
    """``model.dsm``: single-scale denoising score matching (docs/method.md §1).

    Attributes:
        sigma: the noise level σ (recipe: 3), in training-space units.
    """

    sigma: float = 3.0

    def validate(self) -> DSMSettings:
        check_positive("model.dsm.sigma", self.sigma)
        return self


@dataclass
class NCSNSettings:
    """``model.ncsn``: noise-conditional score network over many levels (docs/method.md §3).

    Attributes:
        num_scales: L ≥ 2 geometric levels.
        sigma_max: σ₁; None: the largest pairwise distance in the training data.
        sigma_min: σ_L.
    """

    num_scales: int = 10
    sigma_max: Optional[float] = None
    sigma_min: float = 0.01

    def validate(self) -> NCSNSettings:
        if check_positive_int("model.ncsn.num_scales", self.num_scales) < 2:
            raise DSMInputError(f"model.ncsn.num_scales must be at least 2, got {self.num_scales} (one level: objective dsm)")
        check_positive("model.ncsn.sigma_min", self.sigma_min)
        if self.sigma_max is not None:
            check_positive("model.ncsn.sigma_max", self.sigma_max)
        return self


def geometric_sigmas(sigma_max: float, sigma_min: float, num_scales: int) -> np.ndarray:
    """Noise levels σ₁ > … > σ_L, geometric from ``sigma_max`` to ``sigma_min`` (arXiv 1907.05600).

    Returns:
        (L,) float64 array. L = 1 returns ``[sigma_min]``.

    Raises:
        DSMInputError: non-positive levels, ``sigma_max ≤ sigma_min`` with L > 1, L < 1.
    """
    check_positive("model.ncsn.sigma_max", sigma_max)
    check_positive("model.ncsn.sigma_min", sigma_min)
    check_positive_int("model.ncsn.num_scales", num_scales)
    if num_scales == 1:
        return np.array([float(sigma_min)])
    if sigma_max <= sigma_min:
        raise DSMInputError(f"model.ncsn.sigma_max ({sigma_max}) must exceed model.ncsn.sigma_min ({sigma_min})")
    return np.geomspace(sigma_max, sigma_min, num_scales)


def _ncsn_levels(s: NCSNSettings, points: np.ndarray | None) -> np.ndarray:
    """σ₁ = ``sigma_max`` or the largest pairwise distance in ``points`` (arXiv 2006.09011,
    technique 1); without points either, a placeholder ``2 σ_L`` that training replaces."""
    sigma_max = s.sigma_max
    if sigma_max is None:
        from dsm_common.datasets import largest_pairwise_distance

        sigma_max = largest_pairwise_distance(points) if points is not None else 2 * s.sigma_min
    return geometric_sigmas(sigma_max, s.sigma_min, s.num_scales)


@dataclass
class EDMSettings:
    """``model.edm``: the EDM formulation (Karras et al. 2022, arXiv 2206.00364; docs/method.md §6).

    The network is the preconditioned denoiser D(x; σ) = c_skip x + c_out F(c_in x; c_noise),
    trained at σ drawn log-normally, ln σ ~ N(p_mean, p_std²), with the weight λ(σ) = 1/c_out².
    The defaults are ``configs/edm.yaml``'s, chosen by measurement on the seed mixture.

    Attributes:
        sigma_data: the data's standard deviation σ_data (over all coordinates, about the mean);
            None: computed from the training points.
        p_mean, p_std: the log-normal law of the training σ, in units of the training space.
        sigma_min, sigma_max: the range the samplers integrate over (EDM: 0.002 and 80).
    """

    sigma_data: Optional[float] = None
    p_mean: float = 0.0
    p_std: float = 1.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def validate(self) -> EDMSettings:
        if self.sigma_data is not None:
            check_positive("model.edm.sigma_data", self.sigma_data)
        check_finite("model.edm.p_mean", self.p_mean)
        check_positive("model.edm.p_std", self.p_std)
        check_positive("model.edm.sigma_min", self.sigma_min)
        check_positive("model.edm.sigma_max", self.sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise DSMInputError(f"model.edm.sigma_max ({self.sigma_max}) must exceed model.edm.sigma_min ({self.sigma_min})")
        return self


def data_sigma(points: np.ndarray) -> float:
    """σ_data of ``points`` (N, d): the root mean square of every coordinate about its mean."""
    points = np.asarray(points, np.float64)
    return float(np.sqrt(np.mean((points - points.mean(axis=0)) ** 2)))


def _edm_network(s: EDMSettings | SDESettings, points: np.ndarray | None) -> dict:
    """The preconditioned network's options: σ_data as given (``s.sigma_data``), from ``points``,
    or 1 as a placeholder that training replaces."""
    sigma_data = s.sigma_data if s.sigma_data is not None else (data_sigma(points) if points is not None else 1.0)
    return {"preconditioning": "edm", "sigma_data": float(sigma_data)}


OBJECTIVES.register("dsm", ObjectiveSpec(DSMSettings, "none", "langevin", lambda s, points: np.array([float(s.sigma)])))
OBJECTIVES.register("ncsn", ObjectiveSpec(NCSNSettings, "sigma", "annealed_langevin", _ncsn_levels))
OBJECTIVES.register("edm", ObjectiveSpec(EDMSettings, "sigma", "heun",
                                         lambda s, points: np.array([float(s.sigma_max), float(s.sigma_min)]),
                                         network=_edm_network))


SDE_EPS = {"ve": 1e-5, "vp": 1e-3, "subvp": 1e-3}  # t_ε by default (the reference's training and likelihood ε)
SDE_LEVELS = 10  # the noise levels a score-SDE model reports its per-level loss at (times uniform in [t_ε, 1])


@dataclass
class SDESettings:
    """``model.sde``: score matching over the continuum of noise levels of a score SDE
    (Song et al. 2021, arXiv 2011.13456; docs/method.md §7).

    The network is the noise-conditional MLP s_θ(x, σ) fed σ = σ(t), the standard deviation of the
    SDE's perturbation kernel at t (VE: σ_min (σ_max/σ_min)^t; VP: √(1 − α(t)²); sub-VP:
    1 − α(t)²), which fixes t: s(x, t) = s_θ(x, σ(t)). With ``preconditioning: edm`` the network is
    instead EDM's preconditioned denoiser of the unscaled point x_t/α(t) = x + (σ(t)/α(t)) z, and
    s(x, t) = s_θ(x/α(t), σ(t)/α(t))/α(t) (arXiv 2206.00364, eq. 4 and Table 1). Loss:
    E_t λ(t) E‖s(x_t, t) + z/σ(t)‖², t ~ U(t_ε, 1), x_t = α(t) x + σ(t) z.

    Attributes:
        kind: ``ve``, ``vp`` or ``subvp``.
        sigma_min, sigma_max: VE's range; sigma_max None: the largest pairwise distance in the
            training data (as for NCSN).
        beta_min, beta_max: VP's and sub-VP's β₀, β₁ (the reference's 0.1 and 20).
        eps: t_ε, the smallest time trained on and where samplers stop and likelihoods start;
            None: 1e-5 (VE) or 1e-3 (VP, sub-VP).
        weighting: λ(t) = σ(t)² (``sigma2``) or g(t)² (``likelihood``: the loss bounds the
            negative log-likelihood, arXiv 2101.09258).
        stratified: draw the batch's times stratified, t_i = t_ε + (1 − t_ε)(i + u_i)/B, instead
            of independently.
        preconditioning: ``none`` (the network fed σ(t), its output divided by σ(t)) or ``edm``
            (EDM's preconditioned denoiser, in the σ-space of x_t/α(t); docs/method.md §7).
        sigma_data: ``edm``: the σ_data of the preconditioning; None: computed from the
            training points (as for ``model.edm``).
    """

    kind: Literal["ve", "vp", "subvp"] = "vp"
    sigma_min: float = 0.01
    sigma_max: Optional[float] = None
    beta_min: float = 0.1
    beta_max: float = 20.0
    eps: Optional[float] = None
    weighting: Literal["sigma2", "likelihood"] = "sigma2"
    stratified: bool = False
    preconditioning: Literal["none", "edm"] = "none"
    sigma_data: Optional[float] = None

    def validate(self) -> SDESettings:
        from dsm_common.validation import check_choice

        check_choice("model.sde.kind", self.kind, ("ve", "vp", "subvp"))
        check_choice("model.sde.weighting", self.weighting, ("sigma2", "likelihood"))
        check_choice("model.sde.preconditioning", self.preconditioning, ("none", "edm"))
        if self.sigma_data is not None:
            check_positive("model.sde.sigma_data", self.sigma_data)
            if self.preconditioning != "edm":
                raise DSMInputError(f"model.sde.sigma_data={self.sigma_data:g} needs model.sde.preconditioning=edm "
                                    "(the plain network has no σ_data)")
        check_positive("model.sde.sigma_min", self.sigma_min)
        if self.sigma_max is not None and check_positive("model.sde.sigma_max", self.sigma_max) <= self.sigma_min:
            raise DSMInputError(f"model.sde.sigma_max ({self.sigma_max:g}) must exceed model.sde.sigma_min ({self.sigma_min:g})")
        check_positive("model.sde.beta_min", self.beta_min)
        if check_positive("model.sde.beta_max", self.beta_max) <= self.beta_min:
            raise DSMInputError(f"model.sde.beta_max ({self.beta_max:g}) must exceed model.sde.beta_min ({self.beta_min:g})")
        if self.eps is not None and not 0 < check_positive("model.sde.eps", self.eps) < 1:
            raise DSMInputError(f"model.sde.eps must lie in (0, 1), got {self.eps}")
        return self

    @property
    def t_eps(self) -> float:
        return float(self.eps if self.eps is not None else SDE_EPS[self.kind])

    def resolved(self, points: np.ndarray | None) -> SDESettings:
        """These settings with σ_max (VE) from ``points`` and t_ε filled in (unchanged where given;
        without points a placeholder σ_max = 2 σ_min, which training replaces)."""
        sigma_max = self.sigma_max
        if sigma_max is None and self.kind == "ve":
            from dsm_common.datasets import largest_pairwise_distance

            sigma_max = largest_pairwise_distance(points) if points is not None else 2 * self.sigma_min
        return replace(self, sigma_max=sigma_max, eps=self.t_eps)

    def description(self, points: np.ndarray | None = None) -> dict:
        """The SDE as the samplers and weight files take it: ``{"kind", "sigma_min", "sigma_max",
        "beta_min", "beta_max", "eps", "unscaled"}`` (resolved, ``sde_lib.get_sde`` on each side);
        ``unscaled``: the network scores x_t/α(t) at σ(t)/α(t) (``preconditioning: edm``;
        ``sde_lib.time_score``)."""
        r = self.resolved(points)
        return {"kind": r.kind, "sigma_min": float(r.sigma_min),
                "sigma_max": None if r.sigma_max is None else float(r.sigma_max),
                "beta_min": float(r.beta_min), "beta_max": float(r.beta_max), "eps": float(r.eps),
                "unscaled": r.preconditioning == "edm"}


def sde_levels(description: dict, n: int = SDE_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """``(σ(t), α(t))`` at ``n`` times uniform from 1 down to t_ε: the noise levels a score-SDE
    model is reported at (largest first) and the mean coefficients that go with them."""
    from dsm_common.sde import marginal_coefficients

    d = description
    t = np.linspace(1.0, d["eps"], n)
    alpha, std = marginal_coefficients(d["kind"], t, d["sigma_min"], d["sigma_max"] or 2 * d["sigma_min"],
                                       d["beta_min"], d["beta_max"])
    return std, alpha


def network_scale(description: dict | None, sigma: float) -> tuple[float, float]:
    """``(a, σ_net)`` such that a model's score at noise level σ is s_θ(x/a, σ_net)/a: (1, σ) for
    a network fed σ (``description`` None or ``unscaled`` false), else (α, σ/α) with α the SDE's
    mean coefficient at the time whose kernel std is σ (``dsm_common.sde.mean_coefficient``)."""
    if not description or not description.get("unscaled"):
        return 1.0, float(sigma)
    from dsm_common.sde import mean_coefficient

    alpha = float(mean_coefficient(description["kind"], sigma))
    return alpha, float(sigma) / alpha


def per_level_inputs(description: dict | None, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The levels and mean coefficients ``per_level_loss`` evaluates a model's network at, for its
    reported levels ``sigmas`` (L,): ``(sigmas, None)`` without an SDE; ``(σ(t), α(t))`` for a
    network fed σ(t); ``(σ(t)/α(t), None)`` for an unscaled one, whose loss ‖σ s + z‖² at x_t =
    α x + σ z is ‖σ̂ s_θ(x + σ̂ z, σ̂) + z‖² with σ̂ = σ/α."""
    sigmas = np.asarray(sigmas, np.float64)
    if description is None:
        return sigmas, None
    alphas = sde_levels(description, len(sigmas))[1]
    return (sigmas / alphas, None) if description.get("unscaled") else (sigmas, alphas)


def sde_prior_std(description: dict) -> float:
    """The standard deviation of a score SDE's prior at T = 1 (VE: σ_max; VP, sub-VP: 1): the
    score-SDE samplers start at x₀ times it."""
    return float(description["sigma_max"]) if description["kind"] == "ve" else 1.0


def sde_end_time(settings, description: dict) -> float:
    """Where a score-SDE sampler or likelihood stops or starts: its settings' ``eps``, else the model's t_ε."""
    return float(settings.eps if settings.eps is not None else description["eps"])


def _sde_network(s: SDESettings, points: np.ndarray | None) -> dict:
    """A score SDE's network options: EDM's preconditioning (σ_data as for ``model.edm``) or none."""
    return _edm_network(s, points) if s.preconditioning == "edm" else {}


OBJECTIVES.register("sde", ObjectiveSpec(SDESettings, "sde", "pc",
                                         lambda s, points: sde_levels(s.description(points))[0],
                                         network=_sde_network,
                                         resolve=lambda s, points: s.resolved(points),
                                         sde=lambda s, points: s.description(points)))


def check_model_options(lr: float, optimizer: str, reduction: str, ema_decay: float | None = None,
                        weight_decay: float = 0.0) -> None:
    """Validate the model options both frameworks share; raise DSMInputError naming the bad one."""
    check_positive("model.lr", lr)
    if optimizer not in ("sgd", "adam", "adamw"):
        raise DSMInputError(f"model.optimizer must be sgd, adam or adamw, got {optimizer!r}")
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise DSMInputError(f"model.weight_decay must be a number ≥ 0, got {weight_decay!r}")
    if weight_decay and optimizer != "adamw":
        raise DSMInputError(f"model.weight_decay={weight_decay} needs model.optimizer=adamw (decoupled weight decay), "
                            f"not {optimizer}")
    if reduction not in ("sum", "mean"):
        raise DSMInputError(f"model.reduction must be sum or mean, got {reduction!r}")
    number = isinstance(ema_decay, (int, float)) and not isinstance(ema_decay, bool)
    if ema_decay is not None and not (number and 0.0 <= ema_decay < 1.0):
        raise DSMInputError(f"model.ema_decay must be in [0, 1) (or null: no average), got {ema_decay!r}")


# ----------------------------------------------------------------------------- samplers
@dataclass
class LangevinSettings:
    """``model.sampler.langevin``: Euler–Maruyama Langevin dynamics (docs/method.md §1).

    ``x ← x + (ε/2) s(x) + √ε z`` for ``n_steps`` steps; a noise-conditional network is scored at
    its smallest level σ_L.

    Attributes:
        step_size: ε (recipe: 0.01).
        n_steps: steps in all (recipe: 10 000).
    """

    step_size: float = 0.01
    n_steps: int = 10_000

    def validate(self) -> LangevinSettings:
        check_positive("model.sampler.langevin.step_size", self.step_size)
        check_positive_int("model.sampler.langevin.n_steps", self.n_steps)
        return self


@dataclass
class AnnealedLangevinSettings:
    """``model.sampler.annealed_langevin``: annealed Langevin dynamics (docs/method.md §3).

    For each level σ_i, α_i = ε σ_i²/σ_L², then ``n_steps_each`` steps of
    ``x ← x + (α_i/2) s(x, σ_i) + √α_i z``; optionally a final denoising step. The defaults are
    ``configs/ncsn.yaml``'s (measured on the seed mixture).

    Attributes:
        step_size: ε.
        n_steps_each: T, steps per level.
        denoise: finish with ``x ← x + σ_L² s(x, σ_L)`` (Tweedie's formula).
    """

    step_size: float = 2e-5
    n_steps_each: int = 200
    denoise: bool = True

    def validate(self) -> AnnealedLangevinSettings:
        check_positive("model.sampler.annealed_langevin.step_size", self.step_size)
        check_positive_int("model.sampler.annealed_langevin.n_steps_each", self.n_steps_each)
        return self


def _annealed_demo(s: AnnealedLangevinSettings, steps: int, step_size: float, keep: int, n_levels: int):
    """The trajectory demo of annealed Langevin: ``steps`` split evenly over the levels, no
    denoising step, states kept within each level, at the sampler's own ε (its steps are
    α_i = ε σ_i²/σ_L²: the plain demo's ``step_size`` would make the first levels' steps leap far
    off the data)."""
    per_level = max(steps // n_levels, 1)
    return AnnealedLangevinSettings(s.step_size, per_level, False), min(keep, per_level)


@dataclass
class HeunSettings:
    """``model.sampler.heun``: the EDM sampler (arXiv 2206.00364, Algorithm 2; docs/method.md §6).

    N levels σ_i = (σ_max^(1/ρ) + i/(N−1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, then σ_N = 0; the chains
    start at σ_max·x₀ (x₀: ``model.sampler``'s initial states, standard normal by default) and
    follow the probability-flow ODE dx/dσ = −σ s(x, σ) with Heun's second-order steps (Euler's on
    the last, to σ = 0): 2N − 1 network evaluations. With ``s_churn`` > 0, each step first raises
    σ_i to σ̂ = σ_i(1 + γ), γ = min(s_churn/N, √2 − 1) for σ_i in [s_tmin, s_tmax], adding noise of
    variance (σ̂² − σ_i²) s_noise² (the stochastic sampler).

    Attributes:
        num_steps: N ≥ 2.
        rho: ρ of the schedule (EDM: 7).
        s_churn, s_tmin, s_tmax, s_noise: the stochasticity (EDM's names; s_tmax None: ∞).
        sigma_max, sigma_min: the range; None: the model's (``model.edm``).
    """

    num_steps: int = 20
    rho: float = 7.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: Optional[float] = None
    s_noise: float = 1.0
    sigma_max: Optional[float] = None
    sigma_min: Optional[float] = None

    section = "heun"

    def validate(self):
        p = f"model.sampler.{self.section}"
        if check_positive_int(f"{p}.num_steps", self.num_steps) < 2:
            raise DSMInputError(f"{p}.num_steps must be at least 2, got {self.num_steps}")
        check_positive(f"{p}.rho", self.rho)
        check_non_negative(f"{p}.s_churn", self.s_churn)
        check_non_negative(f"{p}.s_tmin", self.s_tmin)
        if self.s_tmax is not None:
            check_non_negative(f"{p}.s_tmax", self.s_tmax)
        check_non_negative(f"{p}.s_noise", self.s_noise)
        if self.s_tmax is not None and self.s_tmax < self.s_tmin:
            raise DSMInputError(f"{p}.s_tmax ({self.s_tmax:g}) must be at least {p}.s_tmin ({self.s_tmin:g})")
        for name in ("sigma_max", "sigma_min"):
            if getattr(self, name) is not None:
                check_positive(f"{p}.{name}", getattr(self, name))
        return self

    def schedule(self, sigmas: np.ndarray) -> np.ndarray:
        """(N + 1,) float64 levels σ_0 > … > σ_{N−1} > σ_N = 0, over ``[sigma_min, sigma_max]``
        or, where not set, the model's range ``sigmas`` (largest first).

        Raises:
            DSMInputError: σ_max ≤ σ_min.
        """
        hi = float(self.sigma_max if self.sigma_max is not None else sigmas[0])
        lo = float(self.sigma_min if self.sigma_min is not None else sigmas[-1])
        if hi <= lo:
            raise DSMInputError(f"model.sampler.{self.section}: sigma_max ({hi:g}) must exceed sigma_min ({lo:g})")
        i = np.arange(self.num_steps, dtype=np.float64)
        t = (hi ** (1 / self.rho) + i / (self.num_steps - 1) * (lo ** (1 / self.rho) - hi ** (1 / self.rho))) ** self.rho
        return np.append(t, 0.0)

    def gammas(self, t: np.ndarray) -> np.ndarray:
        """(N,) γ_i of the churn at the levels ``t[:-1]`` (0 without churn)."""
        t = np.asarray(t[:-1], np.float64)
        tmax = np.inf if self.s_tmax is None else self.s_tmax
        g = min(self.s_churn / self.num_steps, np.sqrt(2.0) - 1.0)
        return np.where((t >= self.s_tmin) & (t <= tmax), g, 0.0)


@dataclass
class EulerSettings(HeunSettings):
    """``model.sampler.euler``: the EDM loop with Euler's first-order steps (N evaluations), for
    comparison with :class:`HeunSettings` (the same settings)."""

    section = "euler"


def _edm_describe(kind: str):
    def describe(s: HeunSettings, n_levels: int) -> str:
        churn = f", S_churn = {s.s_churn:g}" if s.s_churn else ""
        return f"EDM {kind}, {s.num_steps} steps, ρ = {s.rho:g}{churn}"
    return describe


SAMPLERS.register("langevin", SamplerSpec(
    LangevinSettings, "any",
    nfe=lambda s, n_levels: s.n_steps,
    describe=lambda s, n_levels: f"Langevin, {s.n_steps} steps, ε = {s.step_size:.3g}",
    demo=lambda s, steps, step_size, keep, n_levels: (LangevinSettings(step_size, steps), min(keep, steps)),
    frames=lambda s, n_levels, frames: max(1, s.n_steps // frames),
))
SAMPLERS.register("annealed_langevin", SamplerSpec(
    AnnealedLangevinSettings, "sigma",
    nfe=lambda s, n_levels: s.n_steps_each * n_levels + int(s.denoise),
    describe=lambda s, n_levels: f"annealed Langevin, {n_levels} levels × {s.n_steps_each} steps, ε = {s.step_size:.3g}",
    demo=_annealed_demo,
    frames=lambda s, n_levels, frames: min(s.n_steps_each, max(1, round(n_levels * s.n_steps_each / frames))),
))
SAMPLERS.register("heun", SamplerSpec(
    HeunSettings, "sigma",
    nfe=lambda s, n_levels: 2 * s.num_steps - 1,
    describe=_edm_describe("Heun"),
    demo=lambda s, steps, step_size, keep, n_levels: (s, 1),  # one chain through every step: few of them
    frames=lambda s, n_levels, frames: max(1, s.num_steps // frames),
    step_levels=lambda s, sigmas: s.schedule(np.asarray(sigmas, np.float64))[1:],
))
SAMPLERS.register("euler", SamplerSpec(
    EulerSettings, "sigma",
    nfe=lambda s, n_levels: s.num_steps,
    describe=_edm_describe("Euler"),
    demo=lambda s, steps, step_size, keep, n_levels: (s, 1),
    frames=lambda s, n_levels, frames: max(1, s.num_steps // frames),
    step_levels=lambda s, sigmas: s.schedule(np.asarray(sigmas, np.float64))[1:],
))



@dataclass
class PCSettings:
    """``model.sampler.pc``: predictor–corrector sampling of a score SDE (arXiv 2011.13456,
    Algorithm 1; docs/method.md §7), from the SDE's prior at T = 1 to t_ε over N steps.

    Attributes:
        num_steps: N, the steps of the discretisation (the reference's 1000).
        predictor: ``euler_maruyama``, ``reverse_diffusion``, ``ancestral`` (VE and VP) or ``none``.
        corrector: ``langevin`` or ``none``.
        snr: the corrector's signal-to-noise ratio r (step 2α (r ‖z‖/‖s‖)²).
        n_corrector: corrector steps per time step.
        denoise: return the last step's mean (no noise on the last step).
        alpha_rule: the corrector's α for VP: ``reference`` (1 − β_i) or ``paper`` (∏ (1 − β_j)).
        eps: the end time; None: the model's t_ε.
    """

    num_steps: int = 1000
    predictor: Literal["euler_maruyama", "reverse_diffusion", "ancestral", "none"] = "reverse_diffusion"
    corrector: Literal["langevin", "none"] = "langevin"
    snr: float = 0.16
    n_corrector: int = 1
    denoise: bool = True
    alpha_rule: Literal["reference", "paper"] = "reference"
    eps: Optional[float] = None

    def validate(self) -> PCSettings:
        from dsm_common.validation import check_choice

        p = "model.sampler.pc"
        check_positive_int(f"{p}.num_steps", self.num_steps)
        check_choice(f"{p}.predictor", self.predictor, ("euler_maruyama", "reverse_diffusion", "ancestral", "none"))
        check_choice(f"{p}.corrector", self.corrector, ("langevin", "none"))
        if self.predictor == "none" and self.corrector == "none":
            raise DSMInputError(f"{p}: predictor and corrector cannot both be none")
        check_positive(f"{p}.snr", self.snr)
        check_positive_int(f"{p}.n_corrector", self.n_corrector)
        check_choice(f"{p}.alpha_rule", self.alpha_rule, ("reference", "paper"))
        if self.eps is not None and not 0 < check_positive(f"{p}.eps", self.eps) < 1:
            raise DSMInputError(f"{p}.eps must lie in (0, 1), got {self.eps}")
        return self

    def nfe(self) -> int:
        """Network evaluations per chain: N per predictor step, N n_corrector for the corrector."""
        return self.num_steps * (int(self.predictor != "none") + (self.n_corrector if self.corrector != "none" else 0))


@dataclass
class ODESettings:
    """``model.sampler.ode``: sampling by the probability-flow ODE dx/dt = f − ½ g² s (arXiv
    2011.13456, §4.3; docs/method.md §7) from the SDE's prior at T = 1 to t_ε, and, for the
    likelihood, the same ODE from t_ε to 1 with its divergence.

    Attributes:
        solver: ``dopri5`` (adaptive Dormand–Prince: torchdiffeq, diffrax) or ``heun`` (fixed
            steps, uniform in t, the same arithmetic on both sides).
        num_steps: ``heun``'s steps (2 evaluations each).
        rtol, atol: ``dopri5``'s tolerances (the reference's 1e-5).
        denoise: finish with one noise-free reverse-diffusion step at t_ε.
        eps: the end time; None: the model's t_ε.
        hutchinson: the likelihood's divergence by Hutchinson's estimator with one Rademacher probe
            a point, fixed for the solve (seed ``model.sampler.seed``), instead of exactly.
    """

    solver: Literal["dopri5", "heun"] = "dopri5"
    num_steps: int = 100
    rtol: float = 1e-5
    atol: float = 1e-5
    denoise: bool = False
    eps: Optional[float] = None
    hutchinson: bool = False

    def validate(self) -> ODESettings:
        from dsm_common.validation import check_choice

        p = "model.sampler.ode"
        check_choice(f"{p}.solver", self.solver, ("dopri5", "heun"))
        check_positive_int(f"{p}.num_steps", self.num_steps)
        check_positive(f"{p}.rtol", self.rtol)
        check_positive(f"{p}.atol", self.atol)
        if self.eps is not None and not 0 < check_positive(f"{p}.eps", self.eps) < 1:
            raise DSMInputError(f"{p}.eps must lie in (0, 1), got {self.eps}")
        return self


def _sde_times(s, sde: dict) -> np.ndarray:
    """(N,) the time of each of a PC or fixed-step ODE run's N steps: for PC the time the step is
    taken at (uniform from 1, the last at t_ε), for the ODE the time it reaches (the last t_ε)."""
    eps = s.eps if s.eps is not None else sde["eps"]
    if isinstance(s, ODESettings):
        return np.linspace(1.0, eps, s.num_steps + 1)[1:]
    return np.linspace(1.0, eps, s.num_steps)


SAMPLERS.register("pc", SamplerSpec(
    PCSettings, "sde",
    nfe=lambda s, n_levels: s.nfe(),
    describe=lambda s, n_levels: (f"PC, {s.predictor.replace('_', ' ')} + {s.corrector}"
                                  f"{f' (r = {s.snr:g})' if s.corrector != 'none' else ''}, N = {s.num_steps}"),
    demo=lambda s, steps, step_size, keep, n_levels: (s, max(1, s.num_steps // 100)),  # one chain, 100 states
    frames=lambda s, n_levels, frames: max(1, s.num_steps // frames),
    step_times=_sde_times,
))
SAMPLERS.register("ode", SamplerSpec(
    ODESettings, "sde",
    nfe=lambda s, n_levels: 2 * s.num_steps + int(s.denoise) if s.solver == "heun" else None,  # dopri5: as it ran
    describe=lambda s, n_levels: ("probability-flow ODE, " + (f"Heun, {s.num_steps} steps" if s.solver == "heun"
                                                              else f"Dormand–Prince, tol {s.rtol:g}")),
    demo=lambda s, steps, step_size, keep, n_levels: (s, max(1, s.num_steps // 100)),
    frames=lambda s, n_levels, frames: max(1, s.num_steps // frames),
    step_times=_sde_times,
))


MAX_FRAMES = 1000  # animation frames


@dataclass
class SamplerConfig:
    """``model.sampler``: which sampler runs after training, and what every sampler shares.

    Attributes:
        name: a registered sampler (``langevin``, ``annealed_langevin``); None: the objective's
            default (``dsm``: ``langevin``; ``ncsn``: ``annealed_langevin``).
        n_chains: number of independent chains (= samples returned).
        init: initial law, ``normal`` (N(0, init_scale² I)) or ``uniform`` ([−init_scale, init_scale]²),
            in training space.
        init_scale: std (normal) or half-width (uniform) of the initial law.
        seed: seed of the sampler's own random stream.
        langevin: settings of ``langevin``.
        annealed_langevin: settings of ``annealed_langevin``.
        heun, euler: settings of the EDM samplers ``heun`` and ``euler``.
        pc, ode: settings of the score-SDE samplers ``pc`` and ``ode`` (``ode`` also sets how
            the likelihood is solved).
        nll_points: score-SDE models: held-out points whose negative log-likelihood (the
            probability-flow ODE's) ``metrics.json`` reports (0: none); fresh draws of the data's
            law where it is known, else the training points.
        trajectory_steps: network evaluations of the one-chain trajectory demo from the origin (0: none).
        trajectory_step_size: ε of the trajectory demo of plain Langevin (annealed Langevin's demo
            takes the sampler's own ε).
        trajectory_keep_every: keep every k-th state of the trajectory demo.
        plain_step_size: multi-scale models: ε of the plain-Langevin comparison run (``s(x, σ_L)``,
            as many evaluations as the sampler, same initial states); None: ``langevin.step_size``.
        animation_frames: about this many frames of ``animation.gif``, the sampler moving the first
            ``animation_chains`` chains through a full run (0: no animation).
        animation_chains: chains shown in the animation (at most ``n_chains``).
    """

    name: Optional[str] = None
    n_chains: int = 100
    init: Literal["normal", "uniform"] = "normal"
    init_scale: float = 1.0
    seed: int = 0
    langevin: LangevinSettings = field(default_factory=LangevinSettings)
    annealed_langevin: AnnealedLangevinSettings = field(default_factory=AnnealedLangevinSettings)
    heun: HeunSettings = field(default_factory=HeunSettings)
    euler: EulerSettings = field(default_factory=EulerSettings)
    pc: PCSettings = field(default_factory=PCSettings)
    ode: ODESettings = field(default_factory=ODESettings)
    nll_points: int = 1000
    trajectory_steps: int = 100_000
    trajectory_step_size: float = 0.001
    trajectory_keep_every: int = 1000
    plain_step_size: Optional[float] = None
    animation_frames: int = 0
    animation_chains: int = 200

    def settings(self, name: str):
        """The settings of sampler ``name``: its section here, or (a sampler registered without a
        section in this class) its settings class's defaults."""
        spec = SAMPLERS[name]
        value = getattr(self, name, None)
        if isinstance(value, dict):
            value = spec.settings(**value)
        return value if isinstance(value, spec.settings) else spec.settings()

    def validate(self) -> SamplerConfig:
        """Check every field; raise DSMInputError naming the first bad one."""
        if self.name is not None:
            SAMPLERS[self.name]  # noqa: B018 (raises for an unknown name)
        check_positive_int("model.sampler.n_chains", self.n_chains)
        check_positive("model.sampler.init_scale", self.init_scale)
        if self.init not in ("normal", "uniform"):
            raise DSMInputError(f"model.sampler.init must be normal or uniform, got {self.init!r}")
        for name in SAMPLERS:
            self.settings(name).validate()
        check_non_negative_int("model.sampler.nll_points", self.nll_points)
        check_non_negative_int("model.sampler.trajectory_steps", self.trajectory_steps)
        if self.trajectory_steps:
            check_positive("model.sampler.trajectory_step_size", self.trajectory_step_size)
            check_positive_int("model.sampler.trajectory_keep_every", self.trajectory_keep_every)
        if self.plain_step_size is not None:
            check_positive("model.sampler.plain_step_size", self.plain_step_size)
        check_non_negative_int("model.sampler.animation_frames", self.animation_frames)
        if self.animation_frames:
            check_positive_int("model.sampler.animation_chains", self.animation_chains)
            if self.animation_frames > MAX_FRAMES:
                raise DSMInputError(f"model.sampler.animation_frames must be at most {MAX_FRAMES} (a GIF of "
                                    f"{self.animation_frames} frames is too large to view), got {self.animation_frames}")
        return self

    def initial_states(self, rng: np.random.Generator) -> np.ndarray:
        """Initial states (n_chains, 2) float32 drawn with a numpy Generator."""
        if self.init == "normal":
            x0 = self.init_scale * rng.standard_normal((self.n_chains, 2))
        else:
            x0 = rng.uniform(-self.init_scale, self.init_scale, (self.n_chains, 2))
        return x0.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], default_sampler: str = "langevin") -> SamplerConfig:
        """From ``to_dict``'s form, or the flat form of older weight files (``kind``, ``step_size``,
        ``n_steps``, ``denoise``, ``keep_every``), translated; their flat step settings belong to
        the sampler ``kind`` names, or without one to ``default_sampler`` (the objective's)."""
        d = dict(d or {})
        if any(k in d for k in LEGACY_SAMPLER):
            kind = d.pop("kind", None)
            name = {"annealed": "annealed_langevin", "langevin": "langevin"}.get(kind)
            step, n_steps, denoise = d.pop("step_size", None), d.pop("n_steps", None), d.pop("denoise", None)
            d.pop("keep_every", None)
            section = "annealed_langevin" if (name or default_sampler) == "annealed_langevin" else "langevin"
            values = {"step_size": step, ("n_steps_each" if section == "annealed_langevin" else "n_steps"): n_steps}
            if section == "annealed_langevin" and denoise is not None:
                values["denoise"] = denoise
            d[section] = {k: v for k, v in values.items() if v is not None}
            d["name"] = name
            if section == "annealed_langevin" and d.get("plain_step_size") is None:
                d["plain_step_size"] = step  # the comparison's ε was the annealed ε then
        known = {f.name for f in fields(cls)}
        out = {k: v for k, v in d.items() if k in known}
        for name in SAMPLERS:
            if isinstance(out.get(name), dict):
                out[name] = SAMPLERS[name].settings(**out[name])
        return cls(**out)


# ----------------------------------------------------------------------------- the model's choices, once
@dataclass(frozen=True)
class MethodChoice:
    """The methods a ``DSMModule`` (either framework) was configured with, checked.

    Attributes:
        objective: its registered name. spec: its ``ObjectiveSpec``. settings: its settings.
        sampler: the ``SamplerConfig``. sampler_name: the sampler that runs after training.
    """

    objective: str
    spec: ObjectiveSpec
    settings: Any
    sampler: SamplerConfig
    sampler_name: str

    @property
    def conditional(self) -> bool:
        """Whether the network takes σ besides x (``sigma`` and ``sde`` objectives)."""
        return self.spec.conditioning != "none"

    def sde(self, points: np.ndarray | None = None) -> dict | None:
        """The score SDE's description (``ObjectiveSpec.sde``), or None for the other objectives."""
        return self.spec.sde(self.settings, points) if self.spec.sde else None

    def resolved(self, points: np.ndarray) -> MethodChoice:
        """These choices with the objective's settings filled in from the training ``points``
        (``ObjectiveSpec.resolve``; unchanged where there is nothing to fill in)."""
        return replace(self, settings=self.spec.resolve(self.settings, points)) if self.spec.resolve else self

    def noise_levels(self, points: np.ndarray | None = None) -> np.ndarray:
        """(L,) float64, largest first (σ₁ from ``points`` when the settings leave it to the data)."""
        return self.spec.noise_levels(self.settings, points)

    def network_options(self, points: np.ndarray | None = None) -> dict:
        """Further ``ScoreMLP`` options of the objective's network (``ObjectiveSpec.network``)."""
        return self.spec.network(self.settings, points) if self.spec.network else {}


def check_hidden_dims(hidden_dims) -> list[int]:
    """``model.hidden_dims`` as a list of widths ≥ 1 (empty: a linear score) whose network fits in
    memory; raise DSMInputError naming the value otherwise."""
    dims = list(hidden_dims)
    if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in dims):
        raise DSMInputError(f"model.hidden_dims must be positive integers, got {dims!r}")
    widths = [3, *dims, 2]  # the widest network: a conditional one, (x, log σ) in
    n_params = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    # float32 parameters, their gradients and up to two optimiser moments: 16 bytes a parameter.
    check_fits_memory("model.hidden_dims", n_params, 16, shown=dims)
    return [int(h) for h in dims]


def check_sampler_memory(sampler: SamplerConfig, hidden_dims: list[int], memory: int | None = None) -> None:
    """Refuse, before training, a chain count whose sampling would not fit in memory.

    Every step holds, per chain, float32 values for the state, its noise and drift (2 each) and,
    per hidden layer of width h, its pre-activation, activation and one temporary (3 h): about
    ``4 (6 + 3 Σh)`` bytes a chain; the trajectory demo keeps 8 bytes every
    ``trajectory_keep_every`` steps. ``memory``: bytes (default: this machine's).

    Raises:
        DSMInputError: naming ``model.sampler.n_chains`` (or ``trajectory_steps``) and the memory it needs.
    """
    check_fits_memory(f"model.sampler.n_chains={sampler.n_chains} with model.hidden_dims", sampler.n_chains,
                      4 * (6 + 3 * sum(hidden_dims)), memory, shown=list(hidden_dims))
    if sampler.trajectory_steps:  # the demo keeps one float32 state (2 values) every trajectory_keep_every steps
        check_fits_memory("model.sampler.trajectory_steps", sampler.trajectory_steps // sampler.trajectory_keep_every,
                          8, memory, shown=sampler.trajectory_steps)


def resolve_methods(objective: str, sections: dict[str, Any], sampler: SamplerConfig | None, lr: float,
                    optimizer: str, reduction: str, lr_schedule: str, init: str,
                    ema_decay: float | None = None, weight_decay: float = 0.0) -> MethodChoice:
    """Check a ``DSMModule``'s arguments (the same on both sides) and resolve its methods.

    Args:
        objective: ``model.objective``. sections: the objectives' settings sections by name
            (``{"dsm": DSMSettings | dict | None, "ncsn": …}``); a missing one takes its defaults.
        sampler: ``model.sampler`` (None: defaults). The rest: the shared optimiser options and
            ``model.ema_decay`` (None, or a decay in [0, 1)) and ``model.weight_decay`` (≥ 0; adamw only).

    Raises:
        DSMInputError: an unknown name, a bad value, or a sampler that needs a network conditioned
            on σ with an objective whose network is not.
    """
    from dsm_common.init import INIT_LAWS
    from dsm_common.validation import check_choice

    check_model_options(lr, optimizer, reduction, ema_decay, weight_decay)
    check_choice("model.lr_schedule", lr_schedule, ("constant", "cosine"))
    check_choice("model.init", init, INIT_LAWS)
    spec = OBJECTIVES[objective]
    for name, given in sections.items():  # every section given is checked, not only the chosen one
        if given is not None:
            entry = OBJECTIVES[name]
            (entry.settings(**given) if isinstance(given, dict) else given).validate()
    settings = sections.get(objective)
    if isinstance(settings, dict):
        settings = spec.settings(**settings)
    settings = (settings if isinstance(settings, spec.settings) else spec.settings()).validate()
    sampler = (sampler if sampler is not None else SamplerConfig()).validate()
    name = sampler.name or spec.default_sampler
    check_sampler_fits(name, spec.conditioning, f"model.objective: {objective}", "model.sampler.name")
    return MethodChoice(objective, spec, settings, sampler, name)


def check_sampler_fits(name: str, conditioning: str, what: str, option: str) -> None:
    """Refuse sampler ``name`` for a network of ``conditioning`` (``none``, ``sigma``, ``sde``):
    a σ-conditional sampler needs a network trained over σ levels (ncsn, edm), a score-SDE sampler
    a score-SDE model (sde). ``what`` names the network in the message, ``option`` the option.

    Raises:
        DSMInputError: the sampler cannot run on such a network.
    """
    need = SAMPLERS[name].conditioning
    if need == "sigma" and conditioning != "sigma":
        raise DSMInputError(f"{option}={name} needs a network conditioned on σ over noise levels "
                            f"(model.objective: ncsn or edm), not {what}")
    if need == "sde" and conditioning != "sde":
        raise DSMInputError(f"{option}={name} needs a score-SDE model (model.objective: sde), not {what}")


def settings_record(settings: dict[str, Any]) -> dict[str, Any]:
    """A JSON-able copy of a module's settings: dataclasses as dicts, tuples as lists, without the
    ``_``-prefixed entries LightningCLI adds (``_instantiator``, ``_class_path``)."""
    def plain(v):
        if hasattr(v, "__dataclass_fields__"):
            return plain(asdict(v))
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return {k: plain(v) for k, v in settings.items() if not str(k).startswith("_")}  # no CLI plumbing


# ----------------------------------------------------------------------------- older configuration files
LEGACY_SAMPLER = {
    "kind": "model.sampler.name (langevin or annealed_langevin)",
    "step_size": "model.sampler.langevin.step_size or model.sampler.annealed_langevin.step_size",
    "n_steps": "model.sampler.langevin.n_steps (total steps) or model.sampler.annealed_langevin.n_steps_each",
    "denoise": "model.sampler.annealed_langevin.denoise",
    "keep_every": "nothing (it had no effect on the run's samples)",
}
LEGACY_MODEL = {
    "sigma": "model.dsm.sigma (with model.objective: dsm)",
    "num_scales": "model.objective: ncsn with model.ncsn.num_scales (one level: model.objective: dsm)",
    "sigma_max": "model.ncsn.sigma_max",
    "sigma_min": "model.ncsn.sigma_min",
}


def legacy_option_message(key: str, where: str) -> str | None:
    """The one-line message for an option of the older flat layout (``model.sigma``,
    ``model.sampler.step_size``, …), saying what to write instead; None for a current option."""
    parts = key.split(".")
    hint = None
    if len(parts) == 2 and parts[0] == "model":
        hint = LEGACY_MODEL.get(parts[1])
    elif len(parts) == 3 and parts[:2] == ["model", "sampler"]:
        hint = LEGACY_SAMPLER.get(parts[2])
    if hint is None:
        return None
    return f"{where}: {key} is the older layout; write {hint} instead (docs/methods.md)"
