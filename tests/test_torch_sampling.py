"""torch_dsm.sampling.langevin against a numpy recursion of x_{k+1} = x_k + (ε/2) s(x_k) + √ε z_k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsm_common.mixtures import seed_mixture
from dsm_common.testing import numpy_langevin
from torch_dsm.mixtures import mixture_score
from torch_dsm.sampling import langevin

torch.set_num_threads(1)


def _score_torch(x: torch.Tensor) -> torch.Tensor:
    """A nonlinear, contracting score: s(x) = −x + ½ sin(2x) (elementwise)."""
    return -x + 0.5 * torch.sin(2 * x)


def _score_np(x: np.ndarray) -> np.ndarray:
    return -x + 0.5 * np.sin(2 * x)




@pytest.mark.parametrize("keep_every", [0, 1, 7, 1000])
def test_langevin_with_injected_noise_matchesnumpy_langevin(keep_every):
    rng = np.random.default_rng(0)
    n_steps, eps = 1000, 0.01
    x0 = rng.normal(size=(5, 2)).astype(np.float32)
    noise = rng.normal(size=(n_steps, 5, 2)).astype(np.float32)
    x, kept = langevin(_score_torch, torch.from_numpy(x0), eps, n_steps, noise=torch.from_numpy(noise),
                       keep_every=keep_every)
    x_ref, kept_ref = numpy_langevin(_score_np, x0, eps, noise.astype(np.float64), keep_every)
    # docs/parity.md: sampler states after 1000 steps, float32 against float64, ≤ 1e-4 max-abs.
    np.testing.assert_allclose(x.numpy(), x_ref, atol=1e-4)
    if keep_every == 0:
        assert kept is None
    else:
        assert kept.shape == (n_steps // keep_every, 5, 2)  # states after steps k, 2k, …; never the whole chain
        np.testing.assert_allclose(kept.numpy(), kept_ref, atol=1e-4)
        if n_steps % keep_every == 0:  # the last kept state is the final state
            np.testing.assert_array_equal(kept[-1].numpy(), x.numpy())


def test_langevin_does_not_modify_x0_and_keeps_float32():
    x0 = torch.zeros(3, 2)
    noise = torch.ones(4, 3, 2)
    x, _ = langevin(lambda y: torch.zeros_like(y), x0, 0.25, 4, noise=noise)
    # s ≡ 0: x_n = x0 + √ε Σ z = 0 + 0.5 · 4 = 2 in every coordinate.
    np.testing.assert_array_equal(x.numpy(), np.full((3, 2), 2.0, np.float32))
    assert x.dtype == torch.float32 and (x0 == 0).all()


def test_langevin_with_exact_mixture_score_matches_numpy_oracle_recursion():
    """The exact score of Υ_σ in torch inside the torch sampler = numpy oracle inside the numpy recursion."""
    target = seed_mixture().convolve(3.0)
    rng = np.random.default_rng(1)
    x0 = rng.normal(size=(6, 2)).astype(np.float32)
    noise = rng.normal(size=(1000, 6, 2)).astype(np.float32)
    s = mixture_score(seed_mixture())
    x, kept = langevin(lambda y: s(y, 3.0), torch.from_numpy(x0), 0.01, 1000, noise=torch.from_numpy(noise),
                       keep_every=250)
    x_ref, kept_ref = numpy_langevin(target.score, x0, 0.01, noise.astype(np.float64), 250)
    np.testing.assert_allclose(x.numpy(), x_ref, atol=1e-4)  # docs/parity.md sampler tolerance
    np.testing.assert_allclose(kept.numpy(), kept_ref, atol=1e-4)


def test_drawn_noise_has_the_right_law_across_noise_blocks():
    """s ≡ 0: x_n = x_0 + √ε Σ_k z_k ~ N(x_0, n ε I) exactly. 1100 steps cross the sampler's 1024-step
    noise block, so a block drawn twice or a reused draw would change the variance."""
    n_chains, n_steps, eps = 10_000, 1100, 0.01
    gen = torch.Generator().manual_seed(0)
    x, _ = langevin(lambda y: torch.zeros_like(y), torch.zeros(n_chains, 2), eps, n_steps, rng=gen)
    v = x.double().numpy() / np.sqrt(n_steps * eps)  # should be N(0, I)
    m = v.size
    # Family of 4 checks at 4 standard errors each (false alarm ≈ 4 × 6e-5).
    assert abs(v.mean()) < 4 / np.sqrt(m)
    assert abs(v.var() - 1) < 4 * np.sqrt(2 / m)
    assert abs(np.corrcoef(v.T)[0, 1]) < 4 / np.sqrt(n_chains)
    # Same seed, same chains (reproducible); another seed, other chains.
    x2, _ = langevin(lambda y: torch.zeros_like(y), torch.zeros(n_chains, 2), eps, n_steps,
                     rng=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(x.numpy(), x2.numpy())


def test_ornstein_uhlenbeck_stationary_variance():
    """s(x) = −x: x_{k+1} = a x_k + √ε z with a = 1 − ε/2, so Var x_n = ε (1 − a^{2n}) / (1 − a²) from x_0 = 0."""
    n_chains, n_steps, eps = 10_000, 600, 0.05
    x, _ = langevin(lambda y: -y, torch.zeros(n_chains, 2), eps, n_steps, rng=torch.Generator().manual_seed(1))
    a = 1 - eps / 2
    var = eps * (1 - a ** (2 * n_steps)) / (1 - a**2)  # = 1/(1 − ε/4) ≈ 1.0127 once mixed
    v = x.double().numpy()
    assert abs(v.var() / var - 1) < 4 * np.sqrt(2 / v.size)  # 4 standard errors of a normal variance
