"""torch_dsm.mixtures.mixture_score against the numpy oracle dsm_common.mixtures (docs/method.md §2)."""

from __future__ import annotations

import numpy as np
import torch

from dsm_common.mixtures import GaussianMixture, ncsn_toy_mixture, seed_mixture
from torch_dsm.mixtures import mixture_score

torch.set_num_threads(1)


def _general_mixture() -> GaussianMixture:
    covs = np.array([[[1.0, 0.3], [0.3, 0.5]], [[2.0, -0.7], [-0.7, 1.0]], [[0.4, 0.0], [0.0, 3.0]]])
    return GaussianMixture(np.array([0.2, 0.5, 0.3]), np.array([[-2.0, 1.0], [3.0, 0.0], [0.0, -4.0]]), covs)


def _points() -> np.ndarray:
    near = np.random.default_rng(0).uniform(-15, 15, (300, 2))
    far = np.array([[1e3, 0.0], [-1e3, 50.0], [300.0, -400.0], [0.0, 2e3]])
    return np.concatenate([near, far])


def _close(got: np.ndarray, exact: np.ndarray):
    # float32 against the float64 oracle: relative 1e-5 of each point's score size (docs/parity.md float32 bar),
    # which is ≥ 1e-4 in absolute terms near the modes where the score passes through zero.
    err = np.abs(got - exact).max(axis=1)
    bound = 1e-5 * np.maximum(np.abs(exact).max(axis=1), 10.0)
    assert np.all(err <= bound), float(np.max(err / bound))


def test_torch_mixture_score_matches_numpy_oracle():
    x = _points()
    for mix in (seed_mixture(), ncsn_toy_mixture(), _general_mixture()):
        s = mixture_score(mix)
        for sigma in (0.0, 0.3, 3.0):
            got = s(torch.from_numpy(x.astype(np.float32)), sigma).numpy()
            assert np.isfinite(got).all()
            _close(got, mix.convolve(sigma).score(x.astype(np.float32)))


def test_torch_mixture_score_per_point_sigma_and_float64():
    """σ as a (n,) tensor: each row at its own level; float64 agrees to 1e-10 relative."""
    mix = seed_mixture()
    x = _points()
    sig = np.where(np.arange(len(x)) % 2 == 0, 0.5, 3.0)
    s64 = mixture_score(mix, dtype=torch.float64)
    got = s64(torch.from_numpy(x), torch.from_numpy(sig)).numpy()
    exact = np.where((np.arange(len(x)) % 2 == 0)[:, None], mix.convolve(0.5).score(x), mix.convolve(3.0).score(x))
    np.testing.assert_allclose(got, exact, rtol=1e-10, atol=1e-12)
