"""Score SDEs (arXiv 2011.13456): VE, VP and sub-VP, with the reference code's names (yang-song/
score_sde_pytorch, ``sde_lib.py``) and defaults, T = 1. Mirror: ``jax_dsm/sde_lib.py``; the float64
marginals and the exact mixture oracle: ``dsm_common/sde.py``.

Every SDE dx = f(x, t) dt + g(t) dw has ``sde(x, t) → (f, g)``, ``marginal_prob(x, t) →
(mean, std)`` of the perturbation kernel p_{0t}(x_t | x₀), ``prior_sampling``, ``prior_logp``,
``discretize(x, t) → (f_i, G_i)`` (one step x_{i+1} = x_i + f_i + G_i z of its N-step chain) and
``reverse(score_fn, probability_flow)``: the reverse-time SDE dx = [f − g² s(x, t)] dt + g dw̄, or
the probability-flow ODE dx = [f − ½ g² s(x, t)] dt. ``discretize`` takes the step nearest to
t (N − 1)/T, where the reference truncates: float32 rounding of t = i/(N − 1) would put it a step early.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["SDE", "VESDE", "VPSDE", "subVPSDE", "PREDICTORS", "CORRECTORS", "pc_sampler", "ODE_SOLVERS", "get_sde",
           "time_score", "ode_sampler", "likelihood"]


class SDE:
    """An Itô SDE on [0, T] with an N-step discretisation (abstract)."""

    def __init__(self, N: int):  # noqa: N803 (the reference's name)
        self.N = N

    T = 1.0

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def marginal_prob(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Euler–Maruyama over dt = T/N: ``(f(x, t) dt, g(t) √dt)``."""
        dt = 1 / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    def reverse(self, score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                probability_flow: bool = False) -> SDE:
        """The reverse-time SDE (or, with ``probability_flow``, the ODE) given the score s(x, t)
        (x (n, d), t (n,)): drift f − g² s (f − ½ g² s), diffusion g (0); its ``discretize``
        reverses this SDE's: f_i − G_i² s, G_i (½ and 0 for the ODE)."""
        forward, n_steps = self, self.N

        class ReverseSDE(SDE):
            def __init__(self):
                super().__init__(n_steps)
                self.probability_flow = probability_flow

            def sde(self, x, t):
                drift, diffusion = forward.sde(x, t)
                drift = drift - diffusion[:, None] ** 2 * score_fn(x, t) * (0.5 if probability_flow else 1.0)
                return drift, torch.zeros_like(diffusion) if probability_flow else diffusion

            def discretize(self, x, t):
                f, g = forward.discretize(x, t)
                rev_f = f - g[:, None] ** 2 * score_fn(x, t) * (0.5 if probability_flow else 1.0)
                return rev_f, torch.zeros_like(g) if probability_flow else g

        return ReverseSDE()


class VPSDE(SDE):
    """Variance preserving: dx = −½ β(t) x dt + √β(t) dw, β(t) = β₀ + t (β₁ − β₀)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):  # noqa: N803
        super().__init__(N)
        self.beta_0, self.beta_1 = beta_min, beta_max
        self.discrete_betas = torch.linspace(beta_min / N, beta_max / N, N, dtype=torch.float64)
        self.alphas = 1.0 - self.discrete_betas

    def sde(self, x, t):
        beta_t = self.beta_0 + t * (self.beta_1 - self.beta_0)  # (n,)
        return -0.5 * beta_t[:, None] * x, torch.sqrt(beta_t)

    def _log_mean_coeff(self, t):
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def marginal_prob(self, x, t):
        lmc = self._log_mean_coeff(t)
        return torch.exp(lmc)[:, None] * x, torch.sqrt(-torch.expm1(2 * lmc))

    def prior_sampling(self, shape, *, rng: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(shape, generator=rng)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I) per row of z (n, d)."""
        return -0.5 * z.shape[-1] * math.log(2 * math.pi) - 0.5 * (z**2).sum(-1)

    def discretize(self, x, t):
        """DDPM's chain: f_i = (√(1 − β_i) − 1) x, G_i = √β_i with β_i = the i-th of N betas."""
        i = torch.round(t * (self.N - 1) / self.T).long()  # nearest step (module doc)
        beta = self.discrete_betas.to(x.device, x.dtype)[i]
        alpha = self.alphas.to(x.device, x.dtype)[i]
        return torch.sqrt(alpha)[:, None] * x - x, torch.sqrt(beta)


class subVPSDE(SDE):  # noqa: N801 (the reference's name)
    """Sub-VP: the VP drift, diffusion √(β(t)(1 − e^{−2β₀t − (β₁−β₀)t²})); marginal std 1 − α(t)²."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):  # noqa: N803
        super().__init__(N)
        self.beta_0, self.beta_1 = beta_min, beta_max

    def sde(self, x, t):
        beta_t = self.beta_0 + t * (self.beta_1 - self.beta_0)
        discount = -torch.expm1(-2 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t**2)
        return -0.5 * beta_t[:, None] * x, torch.sqrt(beta_t * discount)

    def marginal_prob(self, x, t):
        lmc = -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0
        return torch.exp(lmc)[:, None] * x, -torch.expm1(2 * lmc)

    def prior_sampling(self, shape, *, rng: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(shape, generator=rng)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * z.shape[-1] * math.log(2 * math.pi) - 0.5 * (z**2).sum(-1)


class VESDE(SDE):
    """Variance exploding: dx = σ(t) √(2 log(σ_max/σ_min)) dw, σ(t) = σ_min (σ_max/σ_min)^t."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):  # noqa: N803
        super().__init__(N)
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.discrete_sigmas = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), N, dtype=torch.float64))

    def sde(self, x, t):
        sigma = self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return torch.zeros_like(x), sigma * math.sqrt(2 * (math.log(self.sigma_max) - math.log(self.sigma_min)))

    def marginal_prob(self, x, t):
        return x, self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def prior_sampling(self, shape, *, rng: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(shape, generator=rng) * self.sigma_max

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, σ_max² I) per row."""
        d = z.shape[-1]
        return -0.5 * d * math.log(2 * math.pi * self.sigma_max**2) - (z**2).sum(-1) / (2 * self.sigma_max**2)

    def discretize(self, x, t):
        """SMLD's chain: f_i = 0, G_i = √(σ_i² − σ_{i−1}²) (σ_{−1} = 0) over N geometric σ_i."""
        i = torch.round(t * (self.N - 1) / self.T).long()  # nearest step (module doc)
        sig = self.discrete_sigmas.to(x.device, x.dtype)
        sigma = sig[i]
        adjacent = torch.where(i == 0, torch.zeros_like(sigma), sig[(i - 1).clamp(min=0)])
        return torch.zeros_like(x), torch.sqrt(sigma**2 - adjacent**2)


# ----------------------------------------------------------------------------- predictors and correctors
# After the reference's sampling.py (arXiv 2011.13456, Algorithms 2–4), with the noise passed in:
# predictor(sde, score_fn, x, t (n,), z (n, d)) → (x, x_mean); corrector(sde, score_fn, x, t, zs
# (n_steps, n, d), snr) → (x, x_mean). Mirror: jax_dsm/sde_lib.py.


def euler_maruyama_predictor(sde: SDE, score_fn, x, t, z):
    """One Euler–Maruyama step of the reverse SDE, dt = −1/N: x̄ = x + f dt, x = x̄ + g √|dt| z."""
    dt = -1.0 / sde.N
    drift, diffusion = sde.reverse(score_fn).sde(x, t)
    x_mean = x + drift * dt
    return x_mean + diffusion[:, None] * math.sqrt(-dt) * z, x_mean


def reverse_diffusion_predictor(sde: SDE, score_fn, x, t, z):
    """The reverse of the SDE's own discretisation: x̄ = x − (f_i − G_i² s), x = x̄ + G_i z."""
    f, g = sde.reverse(score_fn).discretize(x, t)
    x_mean = x - f
    return x_mean + g[:, None] * z, x_mean


def ancestral_predictor(sde: SDE, score_fn, x, t, z):
    """Ancestral sampling of the discrete chain: SMLD's for VE, DDPM's for VP (arXiv 2011.13456, eqs. 46–47).

    Raises:
        ValueError: another SDE.
    """
    i = torch.round(t * (sde.N - 1) / sde.T).long()
    if isinstance(sde, VESDE):
        sig = sde.discrete_sigmas.to(x.device, x.dtype)
        sigma = sig[i]
        adjacent = torch.where(i == 0, torch.zeros_like(sigma), sig[(i - 1).clamp(min=0)])
        x_mean = x + score_fn(x, t) * (sigma**2 - adjacent**2)[:, None]
        std = torch.sqrt(adjacent**2 * (sigma**2 - adjacent**2) / sigma**2)
        return x_mean + std[:, None] * z, x_mean
    if isinstance(sde, VPSDE):
        beta = sde.discrete_betas.to(x.device, x.dtype)[i]
        x_mean = (x + beta[:, None] * score_fn(x, t)) / torch.sqrt(1.0 - beta)[:, None]
        return x_mean + torch.sqrt(beta)[:, None] * z, x_mean
    raise ValueError(f"ancestral sampling is defined for VESDE and VPSDE, not {type(sde).__name__}")


def langevin_corrector(sde: SDE, score_fn, x, t, zs, snr: float, alpha_rule: str = "reference"):
    """Langevin steps at time t with step 2α (snr ‖z‖ / ‖s‖)², the norms the batch means of the
    per-chain norms (the reference's choice; Algorithm 4 of arXiv 2011.13456 writes the norms of
    whole images, which for 2-D points would tie every chain's step to the others' anyway).

    α: 1 for VE and sub-VP; for VP ``alpha_rule="reference"`` takes the reference code's α_i = 1 − β_i,
    ``"paper"`` the paper's ᾱ_i = ∏_{j ≤ i} (1 − β_j).
    """
    alpha = torch.ones_like(t)
    if isinstance(sde, VPSDE):
        i = torch.round(t * (sde.N - 1) / sde.T).long()
        alphas = sde.alphas.to(x.device, x.dtype)
        alpha = alphas[i] if alpha_rule == "reference" else torch.cumprod(alphas, 0)[i]
    x_mean = x
    for z in zs:
        grad = score_fn(x, t)
        grad_norm = torch.linalg.norm(grad, dim=-1).mean()
        noise_norm = torch.linalg.norm(z, dim=-1).mean()
        step = (snr * noise_norm / grad_norm) ** 2 * 2 * alpha  # (n,)
        x_mean = x + step[:, None] * grad
        x = x_mean + torch.sqrt(2 * step)[:, None] * z
    return x, x_mean


PREDICTORS = {"euler_maruyama": euler_maruyama_predictor, "reverse_diffusion": reverse_diffusion_predictor,
              "ancestral": ancestral_predictor, "none": None}
CORRECTORS = {"langevin": langevin_corrector, "none": None}


@torch.inference_mode()
def pc_sampler(sde: SDE, score_fn, x0: torch.Tensor, predictor: str = "reverse_diffusion", corrector: str = "langevin",
               snr: float = 0.16, n_corrector: int = 1, eps: float = 1e-3, denoise: bool = True,
               alpha_rule: str = "reference", keep_every: int = 0, *,
               noise: tuple[torch.Tensor, torch.Tensor] | None = None,
               rng: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predictor–corrector sampling (arXiv 2011.13456, Algorithm 1) from prior draws ``x0`` (n, d)
    over N times from T to ``eps``: at each, the corrector's ``n_corrector`` steps, then the
    predictor's; the last step's mean x̄ is returned with ``denoise`` (the noise-free last step).

    Args:
        sde: the forward SDE (its N steps). score_fn: s(x, t), ((n, d), (n,)) → (n, d).
        x0: (n, d) draws of the prior (``sde.prior_sampling``).
        predictor, corrector: names in ``PREDICTORS``, ``CORRECTORS`` (``none``: skip it).
        snr: the corrector's signal-to-noise ratio. alpha_rule: ``langevin_corrector``'s.
        keep_every: keep the state after every k-th step (0: none).
        noise: ``(predictor z (N, n, d), corrector z (N, n_corrector, n, d))``.
        rng: torch Generator on ``x0``'s device, for the noise when ``noise`` is None.

    Returns:
        ``(x, kept)``: (n, d) samples and (N // k, n, d) kept states or None. Network
        evaluations: N (1 + n_corrector) with both, N or N n_corrector with one.

    Raises:
        ValueError: an unknown name; no ``noise`` and no ``rng``.
    """
    if predictor not in PREDICTORS or corrector not in CORRECTORS:
        raise ValueError(f"predictor must be one of {', '.join(PREDICTORS)} and corrector one of "
                         f"{', '.join(CORRECTORS)}, got {predictor!r}, {corrector!r}")
    if noise is None and rng is None:
        raise ValueError("pc_sampler needs noise or rng")
    n, d = x0.shape
    times = torch.linspace(sde.T, eps, sde.N, dtype=x0.dtype, device=x0.device)
    x, x_mean, kept = x0, x0, []
    for k in range(sde.N):
        t = times[k].expand(n)
        if CORRECTORS[corrector] is not None:
            zs = noise[1][k] if noise is not None else torch.randn((n_corrector, n, d), generator=rng, dtype=x0.dtype,
                                                                   device=x0.device)
            x, x_mean = langevin_corrector(sde, score_fn, x, t, zs, snr, alpha_rule)
        if PREDICTORS[predictor] is not None:
            z = noise[0][k] if noise is not None else torch.randn((n, d), generator=rng, dtype=x0.dtype, device=x0.device)
            x, x_mean = PREDICTORS[predictor](sde, score_fn, x, t, z)
        if keep_every and (k + 1) % keep_every == 0:
            kept.append(x_mean if denoise and k == sde.N - 1 else x)
    return x_mean if denoise else x, (torch.stack(kept) if kept else None)


# ----------------------------------------------------------------------------- the probability-flow ODE
# dx/dt = f(x, t) − ½ g(t)² s(x, t) (arXiv 2011.13456, eq. 13) from T to ε for samples, and from ε
# to T, with the divergence of its drift, for log-likelihoods (§4.3, Appendix D.2). Solvers:
# ``dopri5``, torchdiffeq's adaptive Dormand–Prince, or ``heun``, fixed steps on a uniform grid,
# the same arithmetic as the JAX twin's. Mirror: jax_dsm/sde_lib.py.

ODE_SOLVERS = ("dopri5", "heun")


def get_sde(description: dict, N: int = 1000) -> SDE:  # noqa: N803
    """The SDE of a model's description ``{"kind": "ve" | "vp" | "subvp", "sigma_min", "sigma_max",
    "beta_min", "beta_max", …}`` (``dsm_common.config.SDESettings.description``) with N steps.

    Raises:
        ValueError: an unknown kind.
    """
    kind = description["kind"]
    if kind == "ve":
        return VESDE(description["sigma_min"], description["sigma_max"], N)
    if kind in ("vp", "subvp"):
        return (VPSDE if kind == "vp" else subVPSDE)(description["beta_min"], description["beta_max"], N)
    raise ValueError(f"sde kind must be ve, vp or subvp, got {kind!r}")


def time_score(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sde: SDE, unscaled: bool = False):
    """s(x, t) from a network conditioned on the noise level, s(x, σ): σ = the perturbation
    kernel's standard deviation σ(t) at t (``marginal_prob``), which fixes t for every SDE here.

    ``unscaled``: the network scores the unscaled point x/α(t) at σ(t)/α(t), the form of EDM's
    preconditioned networks (x_t = α(t) x̂ with x̂ = x₀ + (σ(t)/α(t)) z, arXiv 2206.00364, eq. 4),
    and s(x, t) = s_θ(x/α(t), σ(t)/α(t))/α(t); α = 1 for VE, where both forms agree.
    """
    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, std = sde.marginal_prob(torch.ones_like(x[:, :1]), t)  # α(t) (n, 1), σ(t) (n,)
        if not unscaled:
            return score_fn(x, std)
        return score_fn(x / alpha, std / alpha[:, 0]) / alpha

    return score


def _check_solver(solver: str, n_steps: int) -> None:
    if solver not in ODE_SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(ODE_SOLVERS)}, got {solver!r}")
    if solver == "heun" and n_steps < 1:
        raise ValueError(f"the heun solver needs n_steps ≥ 1, got {n_steps}")


def _solve(func, y0: tuple[torch.Tensor, ...], t0: float, t1: float, solver: str, n_steps: int, rtol: float,
           atol: float, keep_every: int = 0) -> tuple[tuple[torch.Tensor, ...], list | None, int]:
    """Integrate dy/dt = func(t (scalar tensor), y) (a tuple of tensors) from t0 to t1; returns
    ``(y(t1), kept, evaluations of func)``, ``kept`` the states at every ``keep_every``-th time of
    the uniform grid of ``n_steps`` steps (None for 0)."""
    calls = [0]

    def counted(t, y):
        calls[0] += 1
        return func(t, y)

    grid = torch.linspace(t0, t1, n_steps + 1, dtype=y0[0].dtype, device=y0[0].device)
    n_kept = n_steps // keep_every if keep_every else 0
    if solver == "dopri5":
        from torchdiffeq import odeint

        ends = grid[-1:] if n_steps % max(keep_every, 1) or not n_kept else grid[:0]  # t1, unless the last kept time
        ts = torch.cat([grid[:1], grid[keep_every::keep_every][:n_kept] if n_kept else grid[:0], ends])
        # step_t: the last step ends at t1 (as diffrax's do); left free, torchdiffeq steps past t1 and
        # interpolates, evaluating the score at t < 0 where the VP marginals are undefined.
        ys = odeint(counted, y0, ts, rtol=rtol, atol=atol, method="dopri5", options={"step_t": ts[-1:]})
        kept = [tuple(y[j] for y in ys) for j in range(1, n_kept + 1)] if n_kept else None
        return tuple(y[-1] for y in ys), kept, calls[0]
    y, kept = y0, []
    for i in range(n_steps):  # Heun's method: the trapezoid of the slopes at both ends of an Euler step
        h = grid[i + 1] - grid[i]
        d1 = counted(grid[i], y)
        y_euler = tuple(a + h * b for a, b in zip(y, d1))
        d2 = counted(grid[i + 1], y_euler)
        y = tuple(a + 0.5 * h * (b + c) for a, b, c in zip(y, d1, d2))
        if keep_every and (i + 1) % keep_every == 0:
            kept.append(y)
    return y, (kept if n_kept else None), calls[0]


@torch.inference_mode()
def ode_sampler(sde: SDE, score_fn, x0: torch.Tensor, solver: str = "dopri5", n_steps: int = 100, rtol: float = 1e-5,
                atol: float = 1e-5, eps: float = 1e-3, denoise: bool = False,
                keep_every: int = 0) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Samples by solving the probability-flow ODE from prior draws ``x0`` (n, d) at T to ``eps``
    (arXiv 2011.13456, §4.3; the reference's ``get_ode_sampler``), all chains as one system.

    Args:
        sde: the forward SDE. score_fn: s(x, t), ((n, d), (n,)) → (n, d).
        x0: (n, d) float32 prior draws (``sde.prior_sampling``).
        solver: ``dopri5`` (adaptive, tolerances ``rtol``, ``atol``) or ``heun`` (``n_steps``
            uniform steps in t, 2 evaluations each).
        eps: the end time ε > 0.
        denoise: finish with one noise-free reverse-diffusion step at ε (Tweedie's formula for VE).
        keep_every: keep the states at every k-th time of the uniform grid of ``n_steps`` steps
            (both solvers: ``dopri5`` interpolates there); 0: none.

    Returns:
        ``(x (n, d), kept (n_steps // k, n, d) or None, nfe)``: the samples, the kept states and
        the score evaluations per chain.

    Raises:
        ValueError: an unknown solver, or ``heun`` with ``n_steps`` < 1.
    """
    _check_solver(solver, n_steps)
    n = x0.shape[0]
    flow = sde.reverse(score_fn, probability_flow=True)

    def func(t, y):
        return (flow.sde(y[0], t.expand(n))[0],)

    (x,), kept, nfe = _solve(func, (x0,), sde.T, eps, solver, n_steps, rtol, atol, keep_every)
    if denoise:
        _, x = reverse_diffusion_predictor(sde, score_fn, x, torch.full((n,), eps, dtype=x.dtype, device=x.device),
                                           torch.zeros_like(x))
        nfe += 1
    return x, (torch.stack([k[0] for k in kept]) if kept else None), nfe


def likelihood(sde: SDE, score_fn, x: torch.Tensor, solver: str = "dopri5", n_steps: int = 100, rtol: float = 1e-5,
               atol: float = 1e-5, eps: float = 1e-5, prior_logp: Callable[[torch.Tensor], torch.Tensor] | None = None,
               *, probe: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """log p_ε(x) in nats through the probability-flow ODE (arXiv 2011.13456, eq. 39; the
    reference's ``get_likelihood_fn``): solve dx/dt = f̃(x, t), dΔ/dt = ∇·f̃(x, t) from ε to T and
    return log p_T(x_T) + Δ_T.

    The divergence is exact, the trace of the Jacobian from d Jacobian-vector products (forward
    mode, ``torch.func.jvp``; each evaluation costs d of them), or with ``probe`` Hutchinson's
    estimate vᵀ (∂f̃/∂x) v with the probe v fixed for the whole solve (Rademacher ±1 or standard
    normal draws: unbiased over the probe's law).

    Args:
        sde: the forward SDE. score_fn: s(x, t), ((n, d), (n,)) → (n, d).
        x: (n, d) float32 points.
        solver, n_steps, rtol, atol: as for :func:`ode_sampler`.
        eps: the start time ε.
        prior_logp: log p_T, (n, d) → (n,); None: ``sde.prior_logp`` (the prior the SDE nears at T).
        probe: (n, d) Hutchinson probe; None: the exact divergence.

    Returns:
        ``(log_p (n,), z (n, d), nfe)``: the log-likelihoods, the points at T, the evaluations of
        the ODE's right-hand side (each d or 1 JVPs through the network).

    Raises:
        ValueError: an unknown solver, or ``heun`` with ``n_steps`` < 1.
    """
    _check_solver(solver, n_steps)
    n, d = x.shape
    flow = sde.reverse(score_fn, probability_flow=True)
    basis = torch.eye(d, dtype=x.dtype, device=x.device)

    def func(t, y):
        tt = t.expand(n)
        drift = lambda v: flow.sde(v, tt)[0]  # noqa: E731
        if probe is not None:
            f, jv = torch.func.jvp(drift, (y[0],), (probe,))
            return f, (jv * probe).sum(-1)
        div = torch.zeros(n, dtype=x.dtype, device=x.device)
        for i in range(d):
            f, jv = torch.func.jvp(drift, (y[0],), (basis[i].expand(n, d),))
            div = div + jv[:, i]
        return f, div

    with torch.no_grad():
        delta0 = torch.zeros(n, dtype=x.dtype, device=x.device)
        (z, delta), _, nfe = _solve(func, (x, delta0), eps, sde.T, solver, n_steps, rtol, atol)
        log_p = (prior_logp or sde.prior_logp)(z) + delta
    return log_p, z, nfe
