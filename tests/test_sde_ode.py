"""The probability-flow ODE of the score SDEs (``ode_sampler`` and ``likelihood`` in
``torch_dsm/sde_lib.py`` and ``jax_dsm/sde_lib.py``), graded with the exact scores of the seed
mixture's marginals: samples, log-likelihoods against the exact log p_ε, Hutchinson's estimator,
the count of evaluations, and the fixed-step solver across frameworks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.experimental import io_callback
from test_sde_sampling import MIX, SIGMA_MAX, _bars, _exact, _pair

import jax_dsm.sde_lib as jsde
import torch_dsm.sde_lib as tsde
from dsm_common.sde import MixtureMarginals, marginal_coefficients

torch.set_num_threads(1)
MARGINALS = MixtureMarginals(MIX)
EPS = {"ve": 1e-5, "vp": 1e-3, "subvp": 1e-3}


def _coefficients(kind, t):
    return marginal_coefficients(kind, t, 0.01, SIGMA_MAX)


def _exact_prior_logp(kind, framework):
    """log p_1 of the exact marginal at T = 1 (the law the ODE carries p_ε to)."""
    a, s = _coefficients(kind, 1.0)
    if framework == "jax":
        return lambda z: MARGINALS.log_density(np.asarray(z, np.float64), a, s)
    return lambda z: torch.from_numpy(MARGINALS.log_density(z.double().numpy(), a, s))


@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
def test_ode_samples_from_the_exact_marginal_at_t1_recover_the_mixture(kind):
    """10 000 chains (JAX, Dormand–Prince) started from draws of the exact p_1: weights within 0.01
    of (⅓, ⅔), at most 0.5 % in the gap, per-mode stds within 5 % of 1. (From the SDE's own prior
    the ODE, being deterministic, keeps the prior's mismatch with p_1: docs/method.md §7.)"""
    _, sde = _pair(kind, 1000)
    a, s = _coefficients(kind, 1.0)
    x0 = MARGINALS.sample(10_000, a, s, np.random.default_rng(7)).astype(np.float32)
    x, _, nfe = jsde.ode_sampler(sde, _exact("jax", sde), jnp.asarray(x0), eps=EPS[kind])
    _bars(x)
    assert 50 < nfe < 400


def test_torch_ode_samples_match_the_jax_ones():
    """The torch twin (torchdiffeq's Dormand–Prince) from the same 4000 draws of the exact p_1 (VP):
    the two adaptive solvers, each within its tolerances, land within 0.02 of each other (data units
    ≈ 10; measured 0.007) and put every chain in the same mode. (The mode weights of a deterministic
    map of 4000 draws swing by ±0.0075 with the draws: the 10 000-chain test above grades them.)"""
    ts_, js_ = _pair("vp", 1000)
    a, s = _coefficients("vp", 1.0)
    x0 = MARGINALS.sample(4000, a, s, np.random.default_rng(8)).astype(np.float32)
    x, kx, _ = tsde.ode_sampler(ts_, _exact("torch", ts_), torch.from_numpy(x0), eps=1e-3, keep_every=25)
    y, ky, _ = jsde.ode_sampler(js_, _exact("jax", js_), jnp.asarray(x0), eps=1e-3, keep_every=25)
    assert kx.shape == ky.shape == (4, 4000, 2)  # the states at t = 0.75, 0.5, 0.25 and t_ε, interpolated
    np.testing.assert_allclose(kx.numpy(), np.asarray(ky), atol=0.02)
    np.testing.assert_allclose(kx[-1].numpy(), x.numpy(), atol=1e-5)
    np.testing.assert_allclose(x.numpy(), np.asarray(y), atol=0.02)
    assert np.array_equal(x.numpy()[:, 0] < 0, np.asarray(y)[:, 0] < 0)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("kind", ["ve", "vp"])
def test_ode_likelihood_with_the_exact_prior_is_the_exact_log_density(framework, kind):
    """With log p_1 of the exact marginal as the prior, the ODE log-likelihood of 1000 points equals
    the exact log p_ε(x) within 1e-3 nats a point on average (measured: ≤ 1e-4); the SDE's own prior
    lowers it by the prior's mismatch (VE with σ_max = 25.1: ≈ 0.013 nats; VP: ≈ 0.0007)."""
    lib = tsde if framework == "torch" else jsde
    sde = _pair(kind, 1000)[0 if framework == "torch" else 1]
    x = MIX.sample(1000, np.random.default_rng(9)).astype(np.float32)
    a, s = _coefficients(kind, EPS[kind])
    exact = MARGINALS.log_density(x, a, s)
    xin = torch.from_numpy(x) if framework == "torch" else jnp.asarray(x)
    log_p, z, nfe = lib.likelihood(sde, _exact(framework, sde), xin, eps=EPS[kind],
                                   prior_logp=_exact_prior_logp(kind, framework))
    err = np.asarray(log_p, np.float64) - exact
    assert np.mean(np.abs(err)) < 1e-3, np.mean(np.abs(err))
    own, _, _ = lib.likelihood(sde, _exact(framework, sde), xin, eps=EPS[kind])
    gap = np.mean(exact - np.asarray(own, np.float64))
    assert (0.005 < gap < 0.03) if kind == "ve" else (0 < gap < 0.003), gap
    assert np.asarray(z).shape == x.shape and nfe > 10


def _jacobian_trace(sde, score, x, t):
    """The exact divergence of the probability-flow drift by finite differences in float64 (numpy check)."""
    flow = sde.reverse(score, probability_flow=True)
    h, out = 1e-4, np.zeros(len(x))
    for i in range(2):
        e = np.zeros_like(x)
        e[:, i] = h
        up = flow.sde(torch.from_numpy(x + e), torch.full((len(x),), t, dtype=torch.float64))[0].numpy()
        down = flow.sde(torch.from_numpy(x - e), torch.full((len(x),), t, dtype=torch.float64))[0].numpy()
        out += (up[:, i] - down[:, i]) / (2 * h)
    return out


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_hutchinson_probes_average_to_the_exact_trace(framework):
    """In 2-D, the probes (1, 1) and (1, −1) average to the exact trace: with the fixed-step solver
    (the same trajectory and steps whatever the probe) their two log-likelihoods average to the
    exact-divergence one; one right-hand side's divergence matches finite differences."""
    lib = tsde if framework == "torch" else jsde
    sde = _pair("vp", 1000)[0 if framework == "torch" else 1]
    x = MIX.sample(200, np.random.default_rng(10)).astype(np.float32)
    conv = (lambda a: torch.from_numpy(np.ascontiguousarray(a))) if framework == "torch" else jnp.asarray
    run = lambda probe: np.asarray(lib.likelihood(sde, _exact(framework, sde), conv(x), "heun", 50, eps=1e-3,  # noqa: E731
                                                  probe=None if probe is None else conv(np.tile(probe, (200, 1))))[0],
                                   np.float64)
    exact = run(None)
    both = 0.5 * (run(np.array([1.0, 1.0], np.float32)) + run(np.array([1.0, -1.0], np.float32)))
    np.testing.assert_allclose(both, exact, rtol=0, atol=2e-4)
    # One evaluation of the divergence against finite differences of the drift (float64, torch).
    t64 = tsde.VPSDE()
    xs = 3 * np.random.default_rng(11).standard_normal((20, 2))
    fd = _jacobian_trace(t64, _exact("torch", t64), xs, 0.4)
    tt = torch.full((20,), 0.4, dtype=torch.float64)
    drift = lambda v: t64.reverse(_exact("torch", t64), probability_flow=True).sde(v, tt)[0]  # noqa: E731
    div = sum(torch.func.jvp(drift, (torch.from_numpy(xs),), (torch.eye(2, dtype=torch.float64)[i].expand(20, 2),))[1][:, i]
              for i in range(2))
    np.testing.assert_allclose(div.numpy(), fd, rtol=1e-5, atol=1e-6)


def test_hutchinson_with_random_rademacher_probes_is_unbiased():
    """One Rademacher probe a point, fixed for the whole solve: over 1000 points the mean difference
    from the exact-divergence log-likelihood is within three standard errors of 0, and its spread is
    not 0 (the estimator is random)."""
    sde = jsde.VPSDE()
    x = jnp.asarray(MIX.sample(1000, np.random.default_rng(12)).astype(np.float32))
    probe = jax.random.rademacher(jax.random.PRNGKey(13), (1000, 2), jnp.float32)
    exact = np.asarray(jsde.likelihood(sde, _exact("jax", sde), x, "heun", 50, eps=1e-3)[0], np.float64)
    hutch = np.asarray(jsde.likelihood(sde, _exact("jax", sde), x, "heun", 50, eps=1e-3, probe=probe)[0], np.float64)
    diff = hutch - exact
    assert diff.std() > 1e-3
    assert abs(diff.mean()) < 3 * diff.std() / np.sqrt(len(diff)), (diff.mean(), diff.std())


def test_dopri5_evaluation_count_is_counted():
    """The NFE ``ode_sampler`` reports for diffrax's Dormand–Prince equals the right-hand sides an
    ordered callback counts; torchdiffeq's are counted directly; the Heun solver takes 2 a step."""
    calls = [0]

    def bump(y):
        calls[0] += 1
        return np.zeros((), np.float32)

    def score(x, t):
        return _exact("jax", sde)(x, t) + io_callback(bump, jax.ShapeDtypeStruct((), jnp.float32), x, ordered=True)

    sde = jsde.VPSDE()
    x0 = jax.random.normal(jax.random.PRNGKey(0), (64, 2))
    _, _, nfe = jsde.ode_sampler(sde, score, x0)
    assert nfe == calls[0] and nfe > 20
    _, _, nfe = jsde.ode_sampler(sde, _exact("jax", sde), x0, "heun", 37)
    assert nfe == 74
    tcalls = [0]
    ts_ = tsde.VPSDE()

    def tscore(x, t):
        tcalls[0] += 1
        return _exact("torch", ts_)(x, t)

    _, _, nfe = tsde.ode_sampler(ts_, tscore, torch.from_numpy(np.array(x0)), denoise=True)
    assert nfe == tcalls[0]


@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
def test_fixed_step_ode_sampler_and_likelihood_agree_across_frameworks(kind):
    """The Heun solver is the same arithmetic on both sides: 100 steps, 64 chains, final states
    within 1e-4 (data units ≈ 10), log-likelihoods within 1e-4 nats."""
    ts_, js_ = _pair(kind, 1000)
    rng = np.random.default_rng(14)
    x0 = (rng.standard_normal((64, 2)) * (SIGMA_MAX if kind == "ve" else 1.0)).astype(np.float32)
    a, ka, na = tsde.ode_sampler(ts_, _exact("torch", ts_), torch.from_numpy(x0), "heun", 100, eps=EPS[kind],
                                 denoise=True, keep_every=20)
    b, kb, nb = jsde.ode_sampler(js_, _exact("jax", js_), jnp.asarray(x0), "heun", 100, eps=EPS[kind], denoise=True,
                                 keep_every=20)
    np.testing.assert_allclose(a.numpy(), np.asarray(b), atol=1e-4)
    assert ka.shape == kb.shape == (5, 64, 2)
    np.testing.assert_allclose(ka.numpy(), np.asarray(kb), atol=1e-4)
    assert na == nb == 201
    x = MIX.sample(64, rng).astype(np.float32)
    la = tsde.likelihood(ts_, _exact("torch", ts_), torch.from_numpy(x), "heun", 100, eps=EPS[kind])[0]
    lb = jsde.likelihood(js_, _exact("jax", js_), jnp.asarray(x), "heun", 100, eps=EPS[kind])[0]
    np.testing.assert_allclose(la.numpy(), np.asarray(lb), atol=1e-4)


def test_ode_functions_refuse_unknown_solvers():
    for lib, x in ((tsde, torch.zeros(2, 2)), (jsde, jnp.zeros((2, 2)))):
        with pytest.raises(ValueError, match="solver must be one of dopri5, heun"):
            lib.ode_sampler(lib.VPSDE(), lambda y, t: y, x, "rk4")
        with pytest.raises(ValueError, match="heun solver needs n_steps ≥ 1"):
            lib.likelihood(lib.VPSDE(), lambda y, t: y, x, "heun", 0)
