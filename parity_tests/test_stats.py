"""The two-sample battery itself: calibrated under the null, and powerful against small shifts."""

from __future__ import annotations

import numpy as np

from dsm_common.mixtures import GaussianMixture, seed_mixture
from parity_tests.stats import two_sample_battery

TARGET = seed_mixture().convolve(3.0)


def test_same_law_is_not_rejected():
    rng = np.random.default_rng(0)
    battery = two_sample_battery(TARGET.sample(10_000, rng), TARGET.sample(10_000, rng), TARGET)
    assert len(battery.checks) == 12 and battery.threshold == 1e-4 / 12
    assert not battery.rejected, battery.table()


def test_per_check_false_alarm_rate_is_nominal():
    """200 null repetitions at n = 1000: each check's rate of p < 0.2 is 0.2 within 5 binomial SEs
    (neither anti-conservative nor dead), the premise of Bonferroni at 1e-4 / m."""
    rng = np.random.default_rng(1)
    reps, level = 200, 0.2
    p = np.array([[c.p_value for c in two_sample_battery(TARGET.sample(1000, rng), TARGET.sample(1000, rng), TARGET).checks]
                  for _ in range(reps)])
    rate = (p < level).mean(axis=0)
    se = np.sqrt(level * (1 - level) / reps)
    assert np.all(rate <= level + 5 * se), rate
    assert np.all(rate >= level - 5 * se), rate


def test_small_differences_are_rejected():
    """A shift of 0.1 SD, a 10 % wider axis, mode weights 0.38/0.62 instead of ⅓/⅔ (n = 10 000)."""
    rng = np.random.default_rng(2)
    a = TARGET.sample(10_000, rng)
    shifted = TARGET.sample(10_000, rng) + np.array([1.0, 0.0])
    assert two_sample_battery(a, shifted, TARGET).rejected
    wider = TARGET.sample(10_000, rng) * np.array([1.0, 1.1])
    assert two_sample_battery(a, wider, TARGET).rejected
    reweighted = GaussianMixture(np.array([0.38, 0.62]), TARGET.means, TARGET.covs).sample(10_000, rng)
    assert two_sample_battery(a, reweighted, TARGET).rejected
