"""Distribution parity with each framework's own random numbers (docs/parity.md).

The Langevin sampler of each framework, started and driven by its own RNG (fixed seeds), on
n = 10 000 chains, with (a) the exact score of Υ_σ (no training) and (b) one fixed set of
weights (the fixtures' ``score`` MLP). The two samples go through ``stats.two_sample_battery``:
z-tests on means, variances, covariance and mode weights, Kolmogorov–Smirnov on both marginals
and three random projections, Bonferroni so that the family-wise false-alarm rate of each test
is ≤ 1e-4. No rerun: the seeds are fixed and the first verdict is the verdict.

Negative control: the same battery must reject when one side runs with a step of 1.5 ε.

Sizes: CI runs fewer, longer steps (ε·steps = 10 for the exact score, 5 for the MLP, the same
time horizon as ε = 0.01 × 1000 and × 500 steps); the ``slow`` cases run ε = 0.01 × 1000 steps.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsm_common.mixtures import seed_mixture
from parity_tests.native import jax_langevin, jax_score, torch_langevin, torch_score
from parity_tests.stats import two_sample_battery

N_CHAINS = 10_000
SEED_TORCH, SEED_JAX, SEED_JAX_WRONG = 11, 22, 33
WRONG_FACTOR = 1.5

CASES = [
    pytest.param(("exact", 0.05, 200), id="exact-score"),
    pytest.param(("mlp", 0.1, 50), id="fixed-mlp"),
    pytest.param(("exact", 0.01, 1000), id="exact-score-full", marks=pytest.mark.slow),
    pytest.param(("mlp", 0.01, 1000), id="fixed-mlp-full", marks=pytest.mark.slow),
]


def _target(fx):
    return seed_mixture().convolve(float(fx["sigma"]))


@pytest.fixture(scope="module")
def samples(fx):
    """Cache: (device, case, side, step factor) → samples, so the negative control reuses the torch run."""
    cache: dict = {}

    def get(dev, case, side, factor=1.0):
        key = (dev.name, case, side, factor)
        if key not in cache:
            kind, eps, n_steps = case
            kw = {"params": {k[6:]: v for k, v in fx.items() if k.startswith("score.")}} if kind == "mlp" else {
                "mixture": _target(fx)}
            if side == "torch":
                cache[key] = torch_langevin(torch_score(dev, **kw), N_CHAINS, factor * eps, n_steps, SEED_TORCH, dev)
            else:
                seed = SEED_JAX if factor == 1.0 else SEED_JAX_WRONG
                cache[key] = jax_langevin(jax_score(dev, **kw), N_CHAINS, factor * eps, n_steps, seed, dev)
            assert np.all(np.isfinite(cache[key])), f"{side} sampler diverged"
        return cache[key]

    return get


@pytest.mark.parametrize("case", CASES)
def test_native_rng_samplers_agree_in_law(case, fx, device, samples):
    battery = two_sample_battery(samples(device, case, "torch"), samples(device, case, "jax"), _target(fx))
    print(battery.table())
    assert not battery.rejected, "torch and JAX samplers differ in law:\n" + battery.table()


@pytest.mark.parametrize("case", CASES)
def test_negative_control_wrong_step_size_is_rejected(case, fx, device, samples):
    """JAX with ε × 1.5 against torch with ε: the battery must see it."""
    battery = two_sample_battery(samples(device, case, "torch"), samples(device, case, "jax", WRONG_FACTOR), _target(fx))
    print(battery.table())
    assert battery.rejected, "the battery did not reject a sampler with a 1.5× step size:\n" + battery.table()
