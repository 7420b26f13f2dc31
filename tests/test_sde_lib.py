"""The score SDEs (``torch_dsm/sde_lib.py``, ``jax_dsm/sde_lib.py``) and the exact mixture oracle
(``dsm_common/sde.py``), against values worked out independently: the kernel's moments must solve
the linear SDE's moment equations (dα/dt = −½β α, d s²/dt = −β s² + g², checked by finite
differences of the float64 coefficients against each framework's drift and diffusion), the
probability-flow ODE of N(0, I) data under VP is still (its drift is 0), the discretisations by
hand, and the oracle's score is the gradient of its log-density.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jax_dsm.sde_lib as jsde
import torch_dsm.sde_lib as tsde
from dsm_common.mixtures import GaussianMixture, seed_mixture
from dsm_common.sde import MixtureMarginals, marginal_coefficients

KINDS = {"ve": ("VESDE", {"sigma_min": 0.01, "sigma_max": 25.0}), "vp": ("VPSDE", {}), "subvp": ("subVPSDE", {})}
T = np.linspace(0.05, 0.95, 7)


def _sde(framework: str, kind: str):
    name, kw = KINDS[kind]
    return getattr(tsde if framework == "torch" else jsde, name)(**kw)


def _call(framework, fn, x, t):
    if framework == "torch":
        out = fn(torch.tensor(x, dtype=torch.float64), torch.tensor(t, dtype=torch.float64))
    else:
        out = fn(jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32))
    return tuple(np.asarray(o, np.float64) for o in out)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_marginals_match_the_float64_coefficients(framework, kind):
    x = np.ones((len(T), 2))
    mean, std = _call(framework, _sde(framework, kind).marginal_prob, x, T)
    alpha, s = marginal_coefficients(kind, T, **KINDS[kind][1])
    np.testing.assert_allclose(mean[:, 0], alpha, rtol=1e-6)
    np.testing.assert_allclose(np.broadcast_to(std, T.shape), s, rtol=1e-6)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_kernel_moments_solve_the_sde(framework, kind):
    """For dx = −½β(t) x dt + g(t) dw (VE: β = 0), x_t = α x₀ + s z has dα/dt = −½β α and
    d(s²)/dt = −β s² + g²: finite differences of the float64 α, s against the framework's f, g."""
    h = 1e-5
    kw = KINDS[kind][1]
    a_p, s_p = marginal_coefficients(kind, T + h, **kw)
    a_m, s_m = marginal_coefficients(kind, T - h, **kw)
    alpha, s = marginal_coefficients(kind, T, **kw)
    drift, g = _call(framework, _sde(framework, kind).sde, np.ones((len(T), 2)), T)
    minus_half_beta = drift[:, 0]  # f(x = 1, t) = −½ β(t)
    # JAX computes in float32: −β s² + g² cancels two terms of order β ≤ 20 near t = 1.
    rtol, atol = (1e-6, 1e-9) if framework == "torch" else (2e-5, 2e-5)
    np.testing.assert_allclose((a_p - a_m) / (2 * h), minus_half_beta * alpha, rtol=rtol, atol=atol)
    np.testing.assert_allclose((s_p**2 - s_m**2) / (2 * h), 2 * minus_half_beta * s**2 + g**2, rtol=max(rtol, 1e-5),
                               atol=atol)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_probability_flow_of_a_standard_normal_under_vp_is_still(framework):
    """N(0, I) data under VP stay N(0, I): score −x, so the ODE's drift −½βx − ½β(−x) is 0 and the
    reverse SDE's −½βx − β(−x) = ½βx."""
    sde = _sde(framework, "vp")
    x = np.random.default_rng(0).standard_normal((len(T), 2))
    neg = (lambda y, t: -y)
    ode_drift, ode_g = _call(framework, sde.reverse(neg, probability_flow=True).sde, x, T)
    rev_drift, rev_g = _call(framework, sde.reverse(neg).sde, x, T)
    beta = 0.1 + T * (20 - 0.1)
    np.testing.assert_allclose(ode_drift, 0, atol=1e-5)
    np.testing.assert_allclose(ode_g, 0)
    np.testing.assert_allclose(rev_drift, 0.5 * beta[:, None] * x, rtol=1e-5)
    np.testing.assert_allclose(rev_g, np.sqrt(beta), rtol=1e-6)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_discretisations_by_hand(framework):
    """SMLD: G_0 = σ_min, G_i = √(σ_i² − σ_{i−1}²); DDPM: f_i = (√(1 − β_i) − 1) x, G_i = √β_i,
    β_i = β₀/N + i (β₁ − β₀)/(N (N − 1))."""
    n = 100  # β_i ≤ 0.2
    ve, vp = (tsde if framework == "torch" else jsde).VESDE(0.01, 25.0, N=n), \
        (tsde if framework == "torch" else jsde).VPSDE(N=n)
    t = np.array([0.0, 50 / 99, 1.0])  # steps 0, 50, 99
    x = np.full((3, 2), 2.0)
    _, g = _call(framework, ve.discretize, x, t)
    sig = np.exp(np.linspace(np.log(0.01), np.log(25.0), n))
    np.testing.assert_allclose(g, [0.01, np.sqrt(sig[50] ** 2 - sig[49] ** 2), np.sqrt(sig[99] ** 2 - sig[98] ** 2)], rtol=1e-4)
    f, g = _call(framework, vp.discretize, x, t)
    beta = 0.1 / n + np.array([0, 50, 99]) * (20 - 0.1) / (n * (n - 1))
    np.testing.assert_allclose(g, np.sqrt(beta), rtol=1e-5)
    np.testing.assert_allclose(f[:, 0], (np.sqrt(1 - beta) - 1) * 2.0, rtol=1e-4)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_prior(framework, kind):
    """prior_logp is log N(z; 0, σ² I) (σ = σ_max for VE, 1 else), by hand; the prior draws have that std."""
    sde = _sde(framework, kind)
    std = KINDS[kind][1].get("sigma_max", 1.0)
    z = np.array([[0.5, -1.0], [2.0, 0.0]])
    want = -np.log(2 * np.pi * std**2) - np.sum(z**2, axis=1) / (2 * std**2)
    if framework == "torch":
        got = sde.prior_logp(torch.tensor(z)).numpy()
        draws = sde.prior_sampling((20_000, 2), rng=torch.Generator().manual_seed(0)).numpy()
    else:
        import jax

        got = np.asarray(sde.prior_logp(jnp.asarray(z, jnp.float32)))
        draws = np.asarray(sde.prior_sampling((20_000, 2), rng=jax.random.PRNGKey(0)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.std(draws) == pytest.approx(std, rel=0.02)


def test_oracle_score_is_the_gradient_of_its_log_density():
    m = MixtureMarginals(GaussianMixture(np.array([0.3, 0.7]), np.array([[-2.0, 1.0], [3.0, 0.0]]),
                                         np.array([[[1.0, 0.3], [0.3, 0.5]], np.eye(2)])))
    x = np.random.default_rng(1).standard_normal((6, 2)) * 3
    alpha, s = marginal_coefficients("vp", np.linspace(0.1, 0.9, 6))
    h = 1e-6
    grad = np.stack([(m.log_density(x + h * e, alpha, s) - m.log_density(x - h * e, alpha, s)) / (2 * h)
                     for e in np.eye(2)], axis=1)
    np.testing.assert_allclose(m.score(x, alpha, s), grad, rtol=1e-6, atol=1e-8)
    # α = 1 is the convolution the rest of the project uses.
    seed = MixtureMarginals(seed_mixture())
    np.testing.assert_allclose(seed.score(x, 1.0, 3.0), seed_mixture().convolve(3.0).score(x), rtol=1e-12)
    draws = seed.sample(200_000, 0.5, 2.0, np.random.default_rng(2))
    np.testing.assert_allclose(draws.mean(0), 0.5 * (np.array([-10, 1]) / 3 + 2 * np.array([10, 0]) / 3), atol=0.03)


def test_vp_marginal_tends_to_the_prior():
    """At t = 1 the VP kernel keeps e^{−5.05} of x₀: p_1 of the seed mixture is N(0, I) within 0.07 in the mean."""
    alpha, s = marginal_coefficients("vp", np.array(1.0))
    assert alpha == pytest.approx(np.exp(-0.25 * 19.9 - 0.05)) and s == pytest.approx(np.sqrt(1 - alpha**2))
    assert np.abs(alpha * seed_mixture().means).max() < 0.07


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_unscaled_time_score_is_the_exact_marginal_score(framework, kind):
    """``time_score(…, unscaled=True)`` turns a score of the unscaled law, p ∗ N(0, σ̂² I) at
    x̂ = x/α(t), σ̂ = σ(t)/α(t), into the score of p_t = Σ_k w_k N(α μ_k, α² Σ_k + σ² I) at x: with
    the seed mixture's exact σ-space score it must give the float64 oracle's p_t score."""
    mix = seed_mixture()
    rng = np.random.default_rng(3)
    t = rng.uniform(0.05, 0.95, 64)
    alpha, s = marginal_coefficients(kind, t, **KINDS[kind][1])
    x = MixtureMarginals(mix).sample(64, 1.0, 0.0, rng) * alpha[:, None] + s[:, None] * rng.standard_normal((64, 2))
    want = MixtureMarginals(mix).score(x, alpha, s)
    if framework == "torch":
        from torch_dsm.mixtures import mixture_score

        sigma_space = mixture_score(mix, torch.float64)
        got = tsde.time_score(sigma_space, _sde(framework, kind), unscaled=True)(
            torch.tensor(x), torch.tensor(t)).numpy()
        rtol = 1e-6
    else:
        from jax_dsm.mixtures import mixture_score

        sigma_space = mixture_score(mix)
        got = np.asarray(jsde.time_score(sigma_space, _sde(framework, kind), unscaled=True)(
            jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32)), np.float64)
        rtol = 2e-4  # float32: α(t) down to e^{−4.6} at t = 0.95 scales x by up to 100
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())
    # A network fed σ(t) instead (the default) only agrees where α = 1.
    plain = (tsde.time_score(sigma_space, _sde(framework, kind))(torch.tensor(x), torch.tensor(t)).numpy()
             if framework == "torch" else
             np.asarray(jsde.time_score(sigma_space, _sde(framework, kind))(jnp.asarray(x, jnp.float32),
                                                                          jnp.asarray(t, jnp.float32))))
    assert np.allclose(plain, want, rtol=1e-3, atol=1e-3 * np.abs(want).max()) == (kind == "ve")


def test_mean_coefficient_inverts_the_kernel_std():
    """α as a function of σ: 1 (VE), √(1 − σ²) (VP), √(1 − σ) (sub-VP), against α(t), σ(t) at the same t."""
    from dsm_common.sde import mean_coefficient

    for kind, (_, kw) in KINDS.items():
        alpha, s = marginal_coefficients(kind, T, **kw)
        np.testing.assert_allclose(mean_coefficient(kind, s), alpha, rtol=1e-12)
