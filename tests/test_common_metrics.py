"""Metrics of docs/method.md §5 on hand-made arrays (dsm_common.metrics)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dsm_common import metrics
from dsm_common.mixtures import GaussianMixture, seed_mixture


def test_energy_distance_by_hand():
    # One point each: 2‖x − y‖ − 0 − 0 = 2 · 5.
    assert metrics.energy_distance(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])) == pytest.approx(10.0, abs=1e-12)
    # x = {(0,0), (1,0)}, y = {(0,0)}: E‖X−Y‖ = ½, E‖X−X'‖ over all 4 ordered pairs = (0+1+1+0)/4 = ½,
    # E‖Y−Y'‖ = 0, so 2·½ − ½ − 0 = ½.
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert metrics.energy_distance(x, np.array([[0.0, 0.0]])) == pytest.approx(0.5, abs=1e-12)
    # x = {(0,0), (0,2)}, y = {(2,0), (2,2)}: cross distances 2, 2√2, 2√2, 2 (mean 1 + √2);
    # within x: (0 + 2 + 2 + 0)/4 = 1, within y: 1. So 2(1 + √2) − 2 = 2√2.
    x = np.array([[0.0, 0.0], [0.0, 2.0]])
    y = np.array([[2.0, 0.0], [2.0, 2.0]])
    assert metrics.energy_distance(x, y) == pytest.approx(2 * np.sqrt(2), abs=1e-12)
    assert metrics.energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)


def test_energy_distance_matches_scipy_in_one_dimension():
    """On points of the x₁ axis the V-statistic equals scipy's energy distance squared (1-D only there)."""
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=37), rng.normal(1.0, 2.0, size=23)
    x = np.stack([u, np.zeros_like(u)], 1)
    y = np.stack([v, np.zeros_like(v)], 1)
    # scipy.stats.energy_distance returns sqrt(2E|X−Y| − E|X−X'| − E|Y−Y'|) for the empirical laws.
    assert metrics.energy_distance(x, y) == pytest.approx(stats.energy_distance(u, v) ** 2, rel=1e-10)


def test_mean_distance_chunks_agree_with_brute_force():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(11, 2)), rng.normal(size=(7, 2))
    brute = np.mean(np.linalg.norm(a[:, None] - b[None], axis=-1))
    assert metrics._mean_distance(a, b, chunk=3) == pytest.approx(brute, rel=1e-12)


def test_mode_weights_and_gap_mass_on_constructed_points():
    target = seed_mixture().convolve(3.0)
    # Three points at the left mode, one at the right: weights [¾, ¼].
    pts = np.array([[-10.0, 1.0], [-12.0, 0.0], [-8.0, 3.0], [11.0, -1.0]])
    np.testing.assert_array_equal(metrics.mode_weights(pts, target), [0.75, 0.25])
    # The boundary of Υ_σ's components (equal covariances 10 I): log⅓ − ‖x−μ₁‖²/20 = log⅔ − ‖x−μ₂‖²/20,
    # on the x₁ axis (x₂ = 0): ‖x−μ₁‖² − ‖x−μ₂‖² = 40 x₁ + 1 = −20 ln 2, so x₁* = −(1 + 20 ln 2)/40 ≈ −0.372.
    x_star = -(1 + 20 * np.log(2)) / 40
    pts = np.array([[x_star - 1e-6, 0.0], [x_star + 1e-6, 0.0]])
    np.testing.assert_array_equal(metrics.mode_weights(pts, target), [0.5, 0.5])
    np.testing.assert_array_equal(target.assign(pts), [0, 1])
    # Gap |x₁| < 5 (strict): −4.9, 0, 4.99 are in; −6, 5, 7 are out (x₂ is irrelevant).
    pts = np.array([[-6.0, 0.0], [-4.9, 9.0], [0.0, -3.0], [4.99, 0.0], [5.0, 1.0], [7.0, 2.0]])
    assert metrics.gap_mass(pts) == 0.5


def test_fisher_divergence_exact_and_scaled_scores():
    target = seed_mixture().convolve(3.0)
    # The exact score: 0 (the learned score sees the float32 cast of the draws, so tiny, not exactly 0).
    d0 = metrics.fisher_divergence(target.score, target, 2000, np.random.default_rng(0))
    assert 0.0 <= d0 < 1e-10
    # s = 2 · exact: ‖2s − s‖² / ‖s‖² = 1 on every draw, so exactly 1 on the same draws
    # (up to the float32 cast of x, relative ~1e-7).
    d2 = metrics.fisher_divergence(lambda x: 2 * target.score(x), target, 2000, np.random.default_rng(0))
    assert d2 == pytest.approx(1.0, rel=1e-5)
    # s = 0: ‖0 − s‖² / ‖s‖² = 1 as well; s = −exact: 4.
    assert metrics.fisher_divergence(lambda x: np.zeros_like(x), target, 500, np.random.default_rng(0)) == 1.0
    d_neg = metrics.fisher_divergence(lambda x: -target.score(x), target, 500, np.random.default_rng(0))
    assert d_neg == pytest.approx(4.0, rel=1e-5)


def test_fisher_divergence_of_a_shifted_score_by_hand():
    """s = exact + c: E‖c‖² / E‖∇log p‖² with the same draws (same seed), recomputed here."""
    target = GaussianMixture(np.array([1.0]), np.zeros((1, 2)), 4.0 * np.eye(2))  # score −x/4
    c = np.array([0.3, -0.4])  # ‖c‖² = 0.25
    d = metrics.fisher_divergence(lambda x: -x / 4 + c, target, 5000, np.random.default_rng(3))
    x = target.sample(5000, np.random.default_rng(3))
    expected = 0.25 / np.mean(np.sum((x / 4) ** 2, axis=1))  # E‖x/4‖² = 2·4/16 = ½ in expectation
    assert d == pytest.approx(expected, rel=1e-6)  # float32 cast of x inside: relative ~1e-7
    assert d == pytest.approx(0.5, rel=0.06)  # and about 0.25 / 0.5 (chi-square, 5000 draws: sd 1.4 %, 4 sd)


def test_per_mode_moments_on_constructed_points():
    target = seed_mixture().convolve(3.0)
    pts = np.array([[-11.0, 0.0], [-9.0, 2.0], [9.0, 1.0], [11.0, -1.0], [10.0, 0.0]])
    out = metrics.per_mode_moments(pts, target)
    assert [m["count"] for m in out] == [2, 3]
    np.testing.assert_allclose(out[0]["mean"], [-10.0, 1.0])
    np.testing.assert_allclose(out[0]["cov"], [[2.0, 2.0], [2.0, 2.0]])  # unbiased, n − 1 = 1
    np.testing.assert_allclose(out[1]["mean"], [10.0, 0.0])
    np.testing.assert_allclose(out[1]["cov"], [[1.0, -1.0], [-1.0, 1.0]])
    assert out[1]["true_cov"] == [[10.0, 0.0], [0.0, 10.0]]
