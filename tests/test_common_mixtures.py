"""The exact-score oracle (docs/method.md §2): dsm_common.mixtures.GaussianMixture."""

from __future__ import annotations

import numpy as np
import pytest

from dsm_common.mixtures import GaussianMixture, seed_mixture
from dsm_common.validation import DSMInputError


def _general_mixture() -> GaussianMixture:
    """Three components with full, unequal covariances (nothing cancels in the score)."""
    covs = np.array([[[1.0, 0.3], [0.3, 0.5]], [[2.0, -0.7], [-0.7, 1.0]], [[0.4, 0.0], [0.0, 3.0]]])
    return GaussianMixture(np.array([0.2, 0.5, 0.3]), np.array([[-2.0, 1.0], [3.0, 0.0], [0.0, -4.0]]), covs)


def _finite_difference_grad(f, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Central differences of f: (n, 2) → (n,), step h (n,) per point; returns (n, 2)."""
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, j] = h
        out[:, j] = (f(x + e) - f(x - e)) / (2 * h)
    return out


@pytest.mark.parametrize("sigma", [0.0, 0.5, 3.0])
def test_score_matches_finite_difference_of_log_density(sigma):
    mix = _general_mixture().convolve(sigma)
    rng = np.random.default_rng(1)
    near = rng.uniform(-6, 6, (200, 2))
    far = np.array([[60.0, -40.0], [-300.0, 250.0], [1e3, 1e3], [-2e3, 5.0]])
    x = np.concatenate([near, far])
    # Step relative to |x| keeps the round-off of log p (|log p| ~ |x|²) against 2h small.
    h = 1e-5 * np.maximum(1.0, np.abs(x).max(axis=1))
    fd = _finite_difference_grad(mix.log_density, x, h)
    s = mix.score(x)
    assert np.all(np.isfinite(s))
    # Central-difference truncation O(h²) plus round-off ~ 1e-16 |log p| / h: both < 1e-6 relative
    # to the score's size (|s| ≥ 1 at the far points, O(1) near).
    bound = 1e-6 * (1 + np.abs(s).max(axis=1, keepdims=True))
    assert np.all(np.abs(s - fd) <= bound), np.max(np.abs(s - fd) / bound)


def test_score_of_single_gaussian_is_linear():
    """One component: ∇ log N(x; μ, C) = C⁻¹ (μ − x), worked out in closed form."""
    c = np.array([[2.0, 0.5], [0.5, 1.0]])
    mix = GaussianMixture(np.array([1.0]), np.array([[1.0, -1.0]]), c)
    x = np.array([[0.0, 0.0], [3.0, 2.0], [1e4, -1e4]])
    # C⁻¹ = (1 / det) [[1, −0.5], [−0.5, 2]], det = 1.75.
    cinv = np.array([[1.0, -0.5], [-0.5, 2.0]]) / 1.75
    expected = (np.array([1.0, -1.0]) - x) @ cinv.T
    np.testing.assert_allclose(mix.score(x), expected, rtol=1e-12, atol=1e-12)


def test_seed_score_far_from_modes_is_finite_and_exact():
    """Far out the naive ratio Σ w N(x) C⁻¹(μ − x) / Σ w N(x) is 0/0; the oracle must not be.

    Υ_σ (σ = 3) has covariances 10 I. Far to the right the second component's responsibility is
    1 − O(e^{−2·10·x₁/10}), so the score is (μ₂ − x)/10; far to the left it is (μ₁ − x)/10.
    """
    target = seed_mixture().convolve(3.0)
    x = np.array([[1e4, 0.0], [1e4, 3e3], [-1e4, 0.0], [-5e3, -7e3]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow, 0/0 or ∞/∞ inside
        s = target.score(x)
    mu1, mu2 = np.array([-10.0, 1.0]), np.array([10.0, 0.0])
    expected = np.array([(mu2 - x[0]) / 10, (mu2 - x[1]) / 10, (mu1 - x[2]) / 10, (mu1 - x[3]) / 10])
    np.testing.assert_allclose(s, expected, rtol=1e-12)
    # The naive formula really does break there (this is why log-sum-exp is needed).
    with np.errstate(all="ignore"):
        dens = np.exp(-np.sum((x[:, None, :] - target.means[None]) ** 2, axis=-1) / 20)
        naive = (dens[..., None] * (target.means[None] - x[:, None, :])).sum(1) / dens.sum(1)[:, None] / 10
    assert np.isnan(naive).all()


def test_seed_score_at_origin_by_hand():
    """At x = 0: r ∝ (⅓ e^{−101/20}, ⅔ e^{−100/20}); score = Σ r_k μ_k / 10."""
    target = seed_mixture().convolve(3.0)
    a, b = (1 / 3) * np.exp(-101 / 20), (2 / 3) * np.exp(-100 / 20)
    r1, r2 = a / (a + b), b / (a + b)
    expected = (r1 * np.array([-10.0, 1.0]) + r2 * np.array([10.0, 0.0])) / 10
    np.testing.assert_allclose(target.score(np.zeros((1, 2)))[0], expected, rtol=1e-12)


def test_log_density_of_seed_mixture_by_hand():
    """The 2-D normal density is (1/(2π c)) exp(−‖x − μ‖²/(2c)) per component (docs/method.md §1's fix)."""
    target = seed_mixture().convolve(3.0)  # c = 10
    x = np.array([[1.0, 2.0]])
    p = (1 / 3) * np.exp(-((11**2 + 1**2) / 20)) / (2 * np.pi * 10) + (2 / 3) * np.exp(-((9**2 + 2**2) / 20)) / (
        2 * np.pi * 10
    )
    np.testing.assert_allclose(target.log_density(x), [np.log(p)], rtol=1e-13)


def test_convolve_and_transform():
    mix = seed_mixture()
    noised = mix.convolve(3.0)
    np.testing.assert_array_equal(noised.covs, np.broadcast_to(10 * np.eye(2), (2, 2, 2)))
    np.testing.assert_array_equal(noised.means, mix.means)
    # Law of (X − shift)/scale: means (μ − shift)/scale, covariances D C D with D = diag(1/scale).
    t = noised.transformed(np.array([1.0, -2.0]), np.array([2.0, 4.0]))
    np.testing.assert_allclose(t.means, [[-5.5, 0.75], [4.5, 0.5]])
    np.testing.assert_allclose(t.covs[0], np.diag([10 / 4, 10 / 16]))
    with pytest.raises(DSMInputError):
        mix.convolve(-1.0)


def test_sample_moments_and_weights():
    """Draws of Υ_σ: component weights ⅓/⅔ and per-component means, within 4 standard errors."""
    target = seed_mixture().convolve(3.0)
    n = 20_000
    x = target.sample(n, np.random.default_rng(0))
    right = x[:, 0] > 0  # components are 20 apart with std √10: misassignment rate ~1e-3
    se = np.sqrt((2 / 3) * (1 / 3) / n)
    assert abs(right.mean() - 2 / 3) < 4 * se + 1e-3
    se_mean = np.sqrt(10 / right.sum())
    np.testing.assert_allclose(x[right].mean(0), [10.0, 0.0], atol=4 * se_mean + 0.05)
