"""Langevin samplers and exact mixture scores of the JAX side, against numpy.

* ``langevin`` with injected noise against the numpy recursion x_{k+1} = x_k + (ε/2) s(x_k) + √ε z_k
  (docs/method.md §1), with keep_every, and chunked (progress=True) equal to one chunk.
* ``annealed_langevin`` against the numpy recursion of docs/method.md §3 (paper form, α_i = ε σ_i²/σ_L²)
  and the final denoising step x ← x + σ_L² s(x, σ_L).
* ``mixture_score`` against the float64 numpy oracle ``GaussianMixture.score`` (docs/method.md §2).
* Exact-score Langevin on Υ_σ reproducing the reference points of docs/method.md §2.
* The compiled scan is not retraced from chunk to chunk.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from dsm_common.mixtures import GaussianMixture, seed_mixture
from dsm_common.testing import numpy_langevin, numpy_mlp
from jax_dsm import sampling
from jax_dsm.mixtures import mixture_score
from jax_dsm.models import ScoreMLP
from jax_dsm.sampling import annealed_langevin, chunk_length, langevin
from jax_dsm.weights import to_canonical

pytestmark = pytest.mark.usefixtures("jax_full_float32")  # tests/conftest.py






def _mixture():
    """A three-component mixture with full covariances (tests the solves, not just σ² I)."""
    covs = np.array([[[1.0, 0.3], [0.3, 0.5]], [[2.0, -0.4], [-0.4, 1.0]], [[0.7, 0.0], [0.0, 1.5]]])
    return GaussianMixture(np.array([0.2, 0.5, 0.3]), np.array([[-4.0, 1.0], [3.0, 2.0], [0.5, -3.0]]), covs)


# ---------------------------------------------------------------------------------------------
# Plain Langevin with injected noise


@pytest.fixture(scope="module")
def mlp():
    model = ScoreMLP(hidden_dims=(32, 32))
    variables = model.init(jax.random.PRNGKey(5), jnp.zeros((1, 2)))
    return model, variables


def test_langevin_linear_score_against_numpy():
    """Gaussian score s(x) = −(x − m)/v: float32 scan against float64 recursion, 300 steps."""
    rng = np.random.default_rng(0)
    m, v, eps, n_steps = np.array([1.5, -2.0]), 2.0, 0.05, 300
    x0 = rng.standard_normal((6, 2)).astype(np.float32)
    noise = rng.standard_normal((n_steps, 6, 2)).astype(np.float32)
    x, kept = langevin(lambda x: -(x - jnp.asarray(m, jnp.float32)) / v, jnp.asarray(x0), eps, n_steps,
                       noise=jnp.asarray(noise))
    ref, _ = numpy_langevin(lambda x: -(x - m) / v, x0, eps, noise)
    assert kept is None
    # A contracting linear map: float32 rounding stays at a few ulps of |x| ≈ 3; 1e-5 absolute.
    np.testing.assert_allclose(np.asarray(x), ref, rtol=0, atol=1e-5)


def test_langevin_mlp_score_with_keep_every(mlp):
    model, variables = mlp
    rng = np.random.default_rng(1)
    eps, n_steps, keep = 0.01, 200, 20
    x0 = rng.standard_normal((10, 2)).astype(np.float32)
    noise = rng.standard_normal((n_steps, 10, 2)).astype(np.float32)
    x, kept = langevin(Partial(model.apply, variables), jnp.asarray(x0), eps, n_steps, noise=jnp.asarray(noise),
                       keep_every=keep)
    ref, ref_kept = numpy_langevin(lambda x: numpy_mlp(to_canonical(variables), x), x0, eps, noise, keep)
    assert kept.shape == (n_steps // keep, 10, 2)
    # docs/parity.md: sampler states ≤ 1e-4 after 1000 steps with shared noise; 200 steps here.
    np.testing.assert_allclose(np.asarray(kept), ref_kept, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(x), ref, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(kept[-1]), np.asarray(x))  # the last kept state is the final one


@pytest.mark.parametrize("progress", [False, True])
def test_langevin_keep_every_not_dividing_n_steps(mlp, progress):
    """25 steps keeping every 10th: the states after steps 10 and 20 are kept and the final state
    is after step 25 (as the torch sampler and the numpy recursion do), with injected noise and
    with a key (n_steps // keep_every = 2 kept states either way)."""
    model, variables = mlp
    rng = np.random.default_rng(9)
    x0 = rng.standard_normal((4, 2)).astype(np.float32)
    noise = rng.standard_normal((25, 4, 2)).astype(np.float32)
    fn = Partial(model.apply, variables)
    x, kept = langevin(fn, jnp.asarray(x0), 0.01, 25, noise=jnp.asarray(noise), keep_every=10, progress=progress)
    ref, ref_kept = numpy_langevin(lambda x: numpy_mlp(to_canonical(variables), x), x0, 0.01, noise, 10)
    assert kept.shape == (2, 4, 2)
    np.testing.assert_allclose(np.asarray(kept), ref_kept, rtol=0, atol=1e-5)  # float32, 25 steps
    np.testing.assert_allclose(np.asarray(x), ref, rtol=0, atol=1e-5)
    xk, kept_k = langevin(fn, jnp.asarray(x0), 0.01, 25, rng=jax.random.PRNGKey(0), keep_every=10, progress=progress)
    assert kept_k.shape == (2, 4, 2) and np.all(np.isfinite(np.asarray(xk)))
    # Fewer steps than keep_every: nothing to keep, the final state still moves.
    x7, kept7 = langevin(fn, jnp.asarray(x0), 0.01, 7, noise=jnp.asarray(noise[:7]), keep_every=10, progress=progress)
    ref7, _ = numpy_langevin(lambda x: numpy_mlp(to_canonical(variables), x), x0, 0.01, noise[:7])
    assert kept7 is None
    np.testing.assert_allclose(np.asarray(x7), ref7, rtol=0, atol=1e-5)


@pytest.mark.parametrize("keep_every", [0, 10])
def test_langevin_chunked_equals_one_chunk(mlp, keep_every):
    """progress=True cuts the run into equal compiled chunks; with the same injected noise the
    result is the one-chunk result (same float32 operations in the same order: 1e-6 absolute)."""
    model, variables = mlp
    rng = np.random.default_rng(2)
    eps, n_steps = 0.01, 200
    assert n_steps // chunk_length(n_steps, keep_every, 20) >= 10  # really chunked
    x0 = jnp.asarray(rng.standard_normal((5, 2)).astype(np.float32))
    noise = jnp.asarray(rng.standard_normal((n_steps, 5, 2)).astype(np.float32))
    fn = Partial(model.apply, variables)
    x1, k1 = langevin(fn, x0, eps, n_steps, noise=noise, keep_every=keep_every, progress=False)
    x2, k2 = langevin(fn, x0, eps, n_steps, noise=noise, keep_every=keep_every, progress=True)
    np.testing.assert_allclose(np.asarray(x2), np.asarray(x1), rtol=0, atol=1e-6)
    if keep_every:
        assert k2.shape == k1.shape == (n_steps // keep_every, 5, 2)
        np.testing.assert_allclose(np.asarray(k2), np.asarray(k1), rtol=0, atol=1e-6)
    else:
        assert k1 is None and k2 is None


@pytest.mark.parametrize("keep_every,n_steps", [(0, 200), (10, 200), (7, 200)])
def test_langevin_samples_do_not_depend_on_the_progress_bar(mlp, keep_every, n_steps):
    """With a key (no injected noise), step k draws from ``fold_in(rng, k)``: the chunked run
    (progress=True) and the one-chunk run give the same states (1e-6: the same operations)."""
    model, variables = mlp
    x0 = jnp.asarray(np.random.default_rng(4).standard_normal((5, 2)).astype(np.float32))
    fn = Partial(model.apply, variables)
    runs = [langevin(fn, x0, 0.01, n_steps, keep_every, progress, rng=jax.random.PRNGKey(9)) for progress in (False, True)]
    (x1, k1), (x2, k2) = runs
    np.testing.assert_allclose(np.asarray(x2), np.asarray(x1), rtol=0, atol=1e-6)
    if keep_every:
        assert k1.shape == k2.shape == (n_steps // keep_every, 5, 2)
        np.testing.assert_allclose(np.asarray(k2), np.asarray(k1), rtol=0, atol=1e-6)
    # and a different key moves the chains differently (the noise is really drawn)
    x3, _ = langevin(fn, x0, 0.01, n_steps, keep_every, rng=jax.random.PRNGKey(10))
    assert np.abs(np.asarray(x3) - np.asarray(x1)).max() > 1e-2


@pytest.mark.parametrize("progress", [False, True])
def test_langevin_key_noise_is_fresh_every_step(progress):
    """Zero score: x_n − x_0 = √ε Σ z_k ~ N(0, n ε I) when every step (and every chunk) draws
    fresh noise. Reused keys across steps or chunks would inflate the variance (n² ε for one key).
    40 000 coordinates: the variance ratio has SE √(2/40 000) = 0.007; 5 SE bound."""
    n_chains, n_steps, eps = 20_000, 100, 0.04
    x0 = jnp.zeros((n_chains, 2))
    x, _ = langevin(lambda x: 0.0 * x, x0, eps, n_steps, rng=jax.random.PRNGKey(3), progress=progress)
    d = np.asarray(x, np.float64) / np.sqrt(n_steps * eps)
    assert abs(d.var() - 1.0) < 5 * np.sqrt(2 / d.size)
    assert abs(d.mean()) < 5 / np.sqrt(d.size)


def test_langevin_scan_not_retraced_across_chunks(mlp):
    """A chunked run of 20 equal chunks compiles the scan at most once (cache grows by ≤ 1), and a
    second run of the same shape with other parameters and noise compiles nothing new."""
    model, variables = mlp
    other = model.init(jax.random.PRNGKey(99), jnp.zeros((1, 2)))
    x0 = jnp.zeros((3, 2))
    before = sampling._langevin_scan._cache_size()
    langevin(Partial(model.apply, variables), x0, 0.01, 140, rng=jax.random.PRNGKey(0), keep_every=7, progress=True)
    after_first = sampling._langevin_scan._cache_size()
    langevin(Partial(model.apply, other), x0 + 1, 0.02, 140, rng=jax.random.PRNGKey(1), keep_every=7, progress=True)
    after_second = sampling._langevin_scan._cache_size()
    assert 140 // chunk_length(140, 7, 20) == 20
    assert after_first - before <= 1
    assert after_second == after_first


# ---------------------------------------------------------------------------------------------
# Annealed Langevin with injected noise


@pytest.mark.parametrize("denoise, keep_every", [(True, 0), (False, 10), (True, 25)])
def test_annealed_langevin_against_numpy(denoise, keep_every):
    """Exact noised scores of a mixture, s(x, σ) = ∇ log (p ∗ N(0, σ²)) (numpy oracle in the
    recursion, JAX mixture_score in the sampler); α_i = ε σ_i²/σ_L², x ← x + (α_i/2) s + √α_i z."""
    mix = _mixture()
    sigmas = np.array([3.0, 1.5, 0.75])
    eps, t_each, n = 0.02, 50, 8
    rng = np.random.default_rng(4)
    x0 = rng.uniform(-8, 8, (n, 2)).astype(np.float32)
    noise = rng.standard_normal((len(sigmas), t_each, n, 2)).astype(np.float32)

    x, kept = annealed_langevin(mixture_score(mix), jnp.asarray(x0), jnp.asarray(sigmas, jnp.float32), eps, t_each,
                                noise=jnp.asarray(noise), denoise=denoise, keep_every=keep_every)

    ref = x0.astype(np.float64)
    ref_kept = []
    for i, s in enumerate(sigmas):
        alpha = eps * s**2 / sigmas[-1] ** 2  # 0.32, 0.08, 0.02
        ref, k = numpy_langevin(mix.convolve(s).score, ref, alpha, noise[i], keep_every)
        if k is not None:
            ref_kept.append(k)
    if denoise:
        ref = ref + sigmas[-1] ** 2 * mix.convolve(sigmas[-1]).score(ref)

    # 150 steps of a contracting map with float32 noise and scores: docs/parity.md sampler bound 1e-4.
    np.testing.assert_allclose(np.asarray(x), ref, rtol=0, atol=1e-4)
    if keep_every:
        assert kept.shape == (len(sigmas) * t_each // keep_every, n, 2)
        np.testing.assert_allclose(np.asarray(kept), np.concatenate(ref_kept), rtol=0, atol=1e-4)
    else:
        assert kept is None


def test_annealed_denoise_step_is_tweedie():
    """One level, one step with zero noise, then the denoising step: checks both formulas with a
    Gaussian score s(x, σ) = −x/(1 + σ²) (N(0, I) noised by σ), worked out by hand:
    x1 = x0 (1 − (α/2)/(1+σ²)), x2 = x1 − σ² x1/(1+σ²) = x1/(1+σ²)."""
    sigma, eps = 2.0, 0.1  # one level: α = ε σ²/σ_L² = ε = 0.1
    x0 = np.array([[1.0, -2.0]], np.float32)
    noise = np.zeros((1, 1, 1, 2), np.float32)
    fn = lambda x, s: -x / (1 + s[:, None] ** 2)
    x, _ = annealed_langevin(fn, jnp.asarray(x0), jnp.asarray([sigma]), eps, 1, noise=jnp.asarray(noise), denoise=True)
    x1 = x0.astype(np.float64) * (1 - 0.05 / 5)  # 0.99 x0
    expected = x1 / 5  # = 0.198 x0
    np.testing.assert_allclose(np.asarray(x), expected, rtol=1e-6)  # a few float32 operations
    np.testing.assert_allclose(expected, [[0.198, -0.396]], rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Exact mixture scores


@pytest.mark.parametrize("sigma", [0.0, 0.5, 3.0])
def test_mixture_score_against_numpy_oracle(sigma):
    mix = _mixture()
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-10, 10, (200, 2)), mix.sample(100, rng)]).astype(np.float32)
    got = np.asarray(jax.jit(mixture_score(mix))(jnp.asarray(x), sigma))
    want = mix.convolve(sigma).score(x.astype(np.float64)) if sigma else mix.score(x.astype(np.float64))
    # float32 against float64: 1e-5 relative to the score's magnitude (docs/parity.md), plus 1e-5 absolute
    # where responsibilities switch (their softmax is float32).
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_mixture_score_per_point_sigma_and_seed_mixture():
    """sigma as a (n,) array gives each point its own level; the seed mixture at σ = 3."""
    mix = seed_mixture()
    rng = np.random.default_rng(6)
    x = rng.uniform(-20, 20, (50, 2)).astype(np.float32)
    levels = rng.uniform(0.5, 4.0, 50).astype(np.float32)
    got = np.asarray(jax.jit(mixture_score(mix))(jnp.asarray(x), jnp.asarray(levels)))
    want = np.stack([mix.convolve(float(s)).score(xi[None].astype(np.float64))[0] for xi, s in zip(x, levels)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_mixture_score_far_from_the_modes_is_finite_and_exact():
    """At |x| ~ 1e3–1e4 the naive density ratio is 0/0; log-sum-exp keeps the exact value, which
    there is the score of the component that dominates: C_k⁻¹ (μ_k − x)."""
    mix = _mixture()
    x = np.array([[1e3, 1e3], [-1e4, 5e3], [0.0, -3e3], [2e3, -2e3]], np.float32)
    got = np.asarray(mixture_score(mix)(jnp.asarray(x), 0.0))
    want = mix.score(x.astype(np.float64))
    naive = np.exp(mix._component_log_densities(x))  # what a direct density ratio would divide
    assert np.all(naive == 0.0)  # underflows: the naive ratio would be 0/0
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    got3 = np.asarray(mixture_score(mix)(jnp.asarray(x), 3.0))
    assert np.all(np.isfinite(got3))
    np.testing.assert_allclose(got3, mix.convolve(3.0).score(x.astype(np.float64)), rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# docs/method.md §2 reference points


def test_exact_score_langevin_reproduces_spec_reference_points():
    """2000 chains from N(0, I), exact score of Υ_σ (σ = 3), ε = 0.01, 10 000 steps (docs/method.md §2):
    59.7 % right (x₁ > 0) and 6.7 % in the gap |x₁| < 5. Binomial standard errors at n = 2000:
    √(0.597·0.403/2000) = 1.10 % and √(0.067·0.933/2000) = 0.56 %; the bound is 4 SE of one
    estimate (4.4 and 2.2 points). 59.7 % + 4.4 < 66.7 %, so the true weight of Υ_σ is excluded:
    the test sees the finite-time bias of Langevin from N(0, I), not just a mixture."""
    n, eps, n_steps = 2000, 0.01, 10_000
    target = seed_mixture().convolve(3.0)
    x0 = np.random.default_rng(2024).standard_normal((n, 2)).astype(np.float32)
    x, _ = langevin(mixture_score(target), jnp.asarray(x0), eps, n_steps, rng=jax.random.PRNGKey(2024))
    x = np.asarray(x, np.float64)
    assert np.all(np.isfinite(x))
    right = float(np.mean(x[:, 0] > 0))
    gap = float(np.mean(np.abs(x[:, 0]) < 5))
    se_right = np.sqrt(0.597 * 0.403 / n)
    se_gap = np.sqrt(0.067 * 0.933 / n)
    assert abs(right - 0.597) < 4 * se_right, right
    assert abs(gap - 0.067) < 4 * se_gap, gap
