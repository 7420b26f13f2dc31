"""The split-half energy check (docs/method.md §5; ``dsm_common.metrics.split_half_energy_check``).

Old Faithful has no known law, so samples are graded against the data itself: split the 272
points at random into halves A and B; the energy distance between 136 samples and A should be
within 2× the distance between B and A (medians over 20 splits). Here the check is tried on
stand-ins for a model, in minutes: a smoothed bootstrap of the data (a good model) passes, one
Gaussian with the data's mean and covariance (a model that misses the two clusters) fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsm_common.datasets import load_dataset
from dsm_common.metrics import energy_distance, split_half_energy_check
from dsm_common.report import sample_metrics
from dsm_common.validation import DSMInputError


@pytest.fixture(scope="module")
def faithful() -> np.ndarray:
    ds = load_dataset("old_faithful")
    return ds.to_data_units(ds.points)  # (272, 2) minutes


def test_smoothed_bootstrap_passes(faithful):
    rng = np.random.default_rng(0)
    samples = faithful[rng.integers(0, len(faithful), 2000)] + rng.normal(0, [0.1, 2.0], (2000, 2))
    out = split_half_energy_check(samples, faithful)
    assert out["n_splits"] == 20 and out["n_per_half"] == 136
    assert out["ratio"] < 1.5, out
    assert out["ratio"] == pytest.approx(out["samples_vs_half"] / out["half_vs_half"])


def test_one_gaussian_fails(faithful):
    rng = np.random.default_rng(0)
    samples = rng.multivariate_normal(faithful.mean(0), np.cov(faithful.T), 2000)
    assert split_half_energy_check(samples, faithful)["ratio"] > 2.5


def test_medians_by_hand(faithful):
    """The same splits and subsets, recomputed here: medians of the two energy distances."""
    rng_s = np.random.default_rng(5)
    samples = faithful + rng_s.normal(0, 0.5, faithful.shape)
    out = split_half_energy_check(samples, faithful, n_splits=5, seed=3)
    rng = np.random.default_rng(3)
    to_s, to_h = [], []
    for _ in range(5):
        order = rng.permutation(272)
        a, b = faithful[order[:136]], faithful[order[136:]]
        drawn = samples[rng.choice(272, size=136, replace=False)]
        to_s.append(energy_distance(drawn, a))
        to_h.append(energy_distance(b, a))
    assert out["samples_vs_half"] == pytest.approx(np.median(to_s))
    assert out["half_vs_half"] == pytest.approx(np.median(to_h))
    assert split_half_energy_check(samples, faithful, n_splits=5, seed=3) == out  # deterministic


@pytest.mark.parametrize(
    "samples, data, kw",
    [
        (np.zeros((10, 2)), np.zeros((30, 2)), {}),  # fewer samples than a half
        (np.zeros((10, 3)), np.zeros((10, 2)), {}),  # dimensions differ
        (np.zeros((10, 2)), np.zeros((3, 2)), {}),  # too few data points
        (np.zeros((10, 2)), np.zeros((10, 2)), {"n_splits": 0}),
    ],
)
def test_bad_inputs(samples, data, kw):
    with pytest.raises(DSMInputError):
        split_half_energy_check(samples, data, **kw)


def test_reported_for_data_without_a_law():
    """metrics.json carries the check for Old Faithful (and other data with no known law), not for the mixture."""
    rng = np.random.default_rng(0)
    ds = load_dataset("old_faithful")
    samples = ds.points[rng.integers(0, len(ds), 500)] + 0.05 * rng.standard_normal((500, 2))
    m = sample_metrics(ds, samples, 0.01, np.random.default_rng(0))
    assert m["split_half_energy"]["ratio"] < 2
    seed = load_dataset("seed_mixture")
    assert sample_metrics(seed, seed.points, 0.01, np.random.default_rng(0))["split_half_energy"] is None
