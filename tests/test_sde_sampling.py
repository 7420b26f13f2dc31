"""Predictor–corrector sampling of the score SDEs (``pc_sampler`` and its predictors and correctors
in ``torch_dsm/sde_lib.py`` and ``jax_dsm/sde_lib.py``): with the exact scores of the seed
mixture's marginals (``dsm_common.sde``'s law, through each framework's mixture score) the samplers
recover the mixture; one step of every predictor and corrector and a whole run agree between the
frameworks with shared noise; the corrector's step size by hand.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jax_dsm.mixtures as jm
import jax_dsm.sde_lib as jsde
import torch_dsm.mixtures as tm
import torch_dsm.sde_lib as tsde
from dsm_common.datasets import largest_pairwise_distance, load_dataset
from dsm_common.metrics import gap_mass, mode_weights, per_mode_moments
from dsm_common.mixtures import seed_mixture
from dsm_common.sde import MixtureMarginals, marginal_coefficients

torch.set_num_threads(1)
MIX = seed_mixture()
SIGMA_MAX = largest_pairwise_distance(load_dataset("seed_mixture").points)  # as NCSN's σ₁: 25.1


def _exact(framework: str, sde):
    """s(x, t) of p_t = Σ w_k N(α μ_k, α² Σ_k + s² I): (1/α) q(x/α) with q the mixture blurred by s/α."""
    if framework == "torch":
        ms = tm.mixture_score(MIX, torch.float64)

        def score(x, t):
            mean, std = sde.marginal_prob(torch.ones_like(x), t)
            a = mean[:, 0]
            return (ms(x.double() / a[:, None].double(), (std / a).double()) / a[:, None].double()).to(x.dtype)
    else:
        ms = jm.mixture_score(MIX)

        def score(x, t):
            mean, std = sde.marginal_prob(jnp.ones_like(x), t)
            a = mean[:, 0]
            return ms(x / a[:, None], std / a) / a[:, None]
    return score


def test_the_exact_score_helper_is_the_oracle():
    sde = tsde.VPSDE()
    x = np.random.default_rng(0).standard_normal((5, 2)) * 3
    t = np.linspace(0.1, 0.9, 5)
    got = _exact("torch", sde)(torch.tensor(x), torch.tensor(t)).numpy()
    alpha, s = marginal_coefficients("vp", t)
    np.testing.assert_allclose(got, MixtureMarginals(MIX).score(x, alpha, s), rtol=1e-9)


def _bars(x, weight=0.01, std=0.05):
    x = np.asarray(x, np.float64)
    w = mode_weights(x, MIX)
    assert abs(w[0] - 1 / 3) < weight and gap_mass(x) <= 0.005, (w, gap_mass(x))
    for m in per_mode_moments(x, MIX):
        np.testing.assert_allclose(m["std"], 1.0, atol=std)


@pytest.mark.parametrize(("kind", "predictor", "corrector"), [
    ("ve", "reverse_diffusion", "langevin"),
    ("vp", "euler_maruyama", "none"),
    ("subvp", "euler_maruyama", "none"),
    ("vp", "ancestral", "none"),
])
def test_exact_scores_recover_the_mixture(kind, predictor, corrector):
    """10 000 chains, N = 1000 (JAX): weights within 0.01 of (⅓, ⅔), at most 0.5 % in the gap,
    per-mode standard deviations within 5 % of 1."""
    sde = {"ve": jsde.VESDE(0.01, SIGMA_MAX), "vp": jsde.VPSDE(), "subvp": jsde.subVPSDE()}[kind]
    x0 = sde.prior_sampling((10_000, 2), rng=jax.random.PRNGKey(1))
    _bars(jsde.pc_sampler(sde, _exact("jax", sde), x0, predictor, corrector, rng=jax.random.PRNGKey(2))[0])


def test_torch_exact_scores_recover_the_mixture():
    """The torch twin, VP Euler–Maruyama, 4000 chains (weights within 0.02 at this size)."""
    sde = tsde.VPSDE()
    x0 = sde.prior_sampling((4000, 2), rng=torch.Generator().manual_seed(1))
    _bars(tsde.pc_sampler(sde, _exact("torch", sde), x0, "euler_maruyama", "none", rng=torch.Generator().manual_seed(2))[0],
          weight=0.02)


def _pair(kind: str, n_steps: int = 50):
    kw = {"ve": ({"sigma_min": 0.01, "sigma_max": SIGMA_MAX}, "VESDE"), "vp": ({}, "VPSDE"),
          "subvp": ({}, "subVPSDE")}[kind]
    return getattr(tsde, kw[1])(**kw[0], N=n_steps), getattr(jsde, kw[1])(**kw[0], N=n_steps)


@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("predictor", ["euler_maruyama", "reverse_diffusion", "ancestral"])
def test_one_predictor_step_agrees_across_frameworks(kind, predictor):
    if predictor == "ancestral" and kind == "subvp":
        with pytest.raises(ValueError, match="ancestral sampling is defined for VESDE and VPSDE"):
            tsde.ancestral_predictor(tsde.subVPSDE(), None, torch.zeros(1, 2), torch.zeros(1), torch.zeros(1, 2))
        return
    ts_, js_ = _pair(kind)
    rng = np.random.default_rng(3)
    x, z = (5 * rng.standard_normal((64, 2))).astype(np.float32), rng.standard_normal((64, 2)).astype(np.float32)
    t = np.full(64, 0.5, np.float32)
    a = tsde.PREDICTORS[predictor](ts_, _exact("torch", ts_), torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(z))
    b = jsde.PREDICTORS[predictor](js_, _exact("jax", js_), jnp.asarray(x), jnp.asarray(t), jnp.asarray(z))
    for u, v in zip(a, b):
        np.testing.assert_allclose(u.numpy(), np.asarray(v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["ve", "vp"])
@pytest.mark.parametrize("alpha_rule", ["reference", "paper"])
def test_langevin_corrector_step_by_hand_and_across_frameworks(kind, alpha_rule):
    """step = 2α (snr · mean‖z‖ / mean‖s‖)², α = 1 (VE), 1 − β_i (VP, the reference's) or
    ∏_{j ≤ i} (1 − β_j) (VP, the paper's); one step x̄ = x + step·s, x = x̄ + √(2 step) z."""
    ts_, js_ = _pair(kind, 100)
    rng = np.random.default_rng(4)
    x = (5 * rng.standard_normal((32, 2))).astype(np.float32)
    zs = rng.standard_normal((1, 32, 2)).astype(np.float32)
    t = np.full(32, 0.3, np.float32)
    score = _exact("torch", ts_)(torch.from_numpy(x).double(), torch.from_numpy(t).double()).numpy()
    i = int(round(0.3 * 99))
    betas = np.linspace(0.1 / 100, 20 / 100, 100)
    alpha = 1.0 if kind == "ve" else ((1 - betas[i]) if alpha_rule == "reference" else np.prod(1 - betas[: i + 1]))
    step = 2 * alpha * (0.16 * np.linalg.norm(zs[0], axis=1).mean() / np.linalg.norm(score, axis=1).mean()) ** 2
    want = x + step * score + np.sqrt(2 * step) * zs[0]
    a, _ = tsde.langevin_corrector(ts_, _exact("torch", ts_), torch.from_numpy(x), torch.from_numpy(t),
                                   torch.from_numpy(zs), 0.16, alpha_rule)
    b, _ = jsde.langevin_corrector(js_, _exact("jax", js_), jnp.asarray(x), jnp.asarray(t), jnp.asarray(zs), 0.16,
                                   alpha_rule)
    np.testing.assert_allclose(a.numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(b), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kind", "predictor", "corrector"), [("ve", "reverse_diffusion", "langevin"),
                                                              ("vp", "euler_maruyama", "langevin")])
def test_whole_pc_run_agrees_across_frameworks(kind, predictor, corrector):
    """N = 50 steps, 32 chains, shared predictor and corrector noise: final states within 1e-4 (data units ≈ 10)."""
    ts_, js_ = _pair(kind)
    rng = np.random.default_rng(5)
    x0 = (rng.standard_normal((32, 2)) * (SIGMA_MAX if kind == "ve" else 1.0)).astype(np.float32)
    zp = rng.standard_normal((50, 32, 2)).astype(np.float32)
    zc = rng.standard_normal((50, 1, 32, 2)).astype(np.float32)
    a = tsde.pc_sampler(ts_, _exact("torch", ts_), torch.from_numpy(x0), predictor, corrector,
                        keep_every=10, noise=(torch.from_numpy(zp), torch.from_numpy(zc)))
    b = jsde.pc_sampler(js_, _exact("jax", js_), jnp.asarray(x0), predictor, corrector,
                        keep_every=10, noise=(jnp.asarray(zp), jnp.asarray(zc)))
    np.testing.assert_allclose(a[0].numpy(), np.asarray(b[0]), atol=1e-4)
    assert a[1].shape == b[1].shape == (5, 32, 2)  # the states after steps 10, 20, …, 50; the last is the result
    np.testing.assert_allclose(a[1].numpy(), np.asarray(b[1]), atol=1e-4)
    np.testing.assert_array_equal(a[1][-1].numpy(), a[0].numpy())


def test_pc_sampler_refuses_unknown_names_and_missing_noise():
    for sampler, sde, x in ((tsde.pc_sampler, tsde.VPSDE(N=2), torch.zeros(2, 2)),
                            (jsde.pc_sampler, jsde.VPSDE(N=2), jnp.zeros((2, 2)))):
        with pytest.raises(ValueError, match="predictor must be one of"):
            sampler(sde, lambda y, t: y, x, "ddim", "none", rng=None)
        with pytest.raises(ValueError, match="pc_sampler needs noise or rng"):
            sampler(sde, lambda y, t: y, x)


def test_exact_scores_recover_the_mixture_with_fewer_steps():
    """VP Euler–Maruyama with N = 100 instead of 1000 (nothing in the samplers is tied to N): the
    same bars, 10 000 chains. (VE reverse diffusion + Langevin at N = 100 puts 0.017 too much weight
    on the small mode, mean of 3 seeds, 0.011 at N = 300: a discretisation error of its own,
    docs/method.md §7.)"""
    sde = jsde.VPSDE(N=100)
    x0 = sde.prior_sampling((10_000, 2), rng=jax.random.PRNGKey(3))
    _bars(jsde.pc_sampler(sde, _exact("jax", sde), x0, "euler_maruyama", "none", rng=jax.random.PRNGKey(4))[0])


def test_native_pc_draws_agree_across_frameworks():
    """VP Euler–Maruyama (N = 500, exact scores) with each side's own prior draws and noise streams,
    5000 chains each: the left weights agree by a two-proportion z-test (|z| < 3.9) and the
    per-mode standard deviations within 5 %; the streams differ."""
    ts_, js_ = _pair("vp", 500)
    a, _ = tsde.pc_sampler(ts_, _exact("torch", ts_), ts_.prior_sampling((5000, 2), rng=torch.Generator().manual_seed(0)),
                           "euler_maruyama", "none", rng=torch.Generator().manual_seed(1))
    b, _ = jsde.pc_sampler(js_, _exact("jax", js_), js_.prior_sampling((5000, 2), rng=jax.random.PRNGKey(0)),
                           "euler_maruyama", "none", rng=jax.random.PRNGKey(1))
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    pa, pb = mode_weights(a, MIX)[0], mode_weights(b, MIX)[0]
    pooled = (pa + pb) / 2
    assert abs((pa - pb) / np.sqrt(pooled * (1 - pooled) * 2 / 5000)) < 3.9
    for ma, mb in zip(per_mode_moments(a, MIX), per_mode_moments(b, MIX)):
        np.testing.assert_allclose(ma["std"], mb["std"], rtol=0.05)
    assert not np.allclose(a[:10], b[:10], atol=1e-2)
