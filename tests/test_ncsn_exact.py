"""Annealed Langevin with exact scores (docs/method.md §2, §3): no training, only the sampler.

* Seed mixture Υ = ⅓ N((−10, 1), I) + ⅔ N((10, 0), I) with the sampler of ``configs/ncsn.yaml``
  (read from the file: L, σ_L, ε, T, initial law; σ₁ = the largest pairwise distance of the
  config's 300 points, as training sets it): mode weights within 0.02 of (⅓, ⅔), at most 0.5 % in
  the gap |x₁| < 5, per-mode standard deviations within 10 % of 1.
* The paper's toy ⅕ N((−5,−5), I) + ⅘ N((5,5), I) (arXiv 1907.05600): annealed Langevin (same L,
  σ_L, ε, T; σ₁ = 20, about the toy's largest pairwise distance; uniform start on [−8, 8]²)
  recovers the weights within 0.02; plain Langevin with the σ → 0 score (ε = 0.1, 1000 steps, same
  start) does not: it keeps the start's near-even split between the basins.

Expected values, from an exact grid computation of the sampler's law on x₁ (no sampling noise):
the left weight comes out 0.006 too high on the seed mixture and 0.008 too high on the toy (the
chains stop crossing near σ ≈ 4 and lag the shrinking left share a little). With n chains the
binomial standard error is √(w(1−w)/n): 0.0047 (seed) and 0.0040 (toy) at n = 10 000, so the
full-size checks hold with about 3 standard errors to spare. The CI-size torch checks (n = 2000,
SE 0.0105 / 0.0089) use 0.045 and 0.04: bias plus 3.7–3.9 standard errors. Every run has a fixed
seed (no reruns).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.distance import pdist

from dsm_common import metrics
from dsm_common.config import NCSNSettings, geometric_sigmas
from dsm_common.datasets import load_dataset
from dsm_common.mixtures import ncsn_toy_mixture, seed_mixture

NCSN_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ncsn.yaml"
TOY_SIGMA_MAX = 20.0
TOY_INIT = 8.0
PLAIN_STEP, PLAIN_STEPS = 0.1, 1000


def ncsn_sampler() -> dict:
    """The annealed sampler of configs/ncsn.yaml: levels (from its data), ε, T, start, denoising."""
    cfg = yaml.safe_load(NCSN_CONFIG.read_text())
    model, data, sampler = cfg["model"], cfg["data"], cfg["model"]["sampler"]
    ds = load_dataset(data["dataset"], data.get("n_points"), data.get("seed", 0))
    ncsn = NCSNSettings(**model["ncsn"])
    assert ncsn.sigma_max is None  # σ₁ from the data, by hand here
    sigmas = geometric_sigmas(float(np.max(pdist(ds.points))), ncsn.sigma_min, ncsn.num_scales)
    assert sampler["init"] == "uniform" and sampler["name"] == "annealed_langevin"
    annealed = sampler["annealed_langevin"]
    return {"sigmas": sigmas, "step_size": annealed["step_size"], "n_steps": annealed["n_steps_each"],
            "init_scale": sampler["init_scale"], "denoise": annealed.get("denoise", True)}


def uniform_start(n: int, half_width: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-half_width, half_width, (n, 2)).astype(np.float32)


def seed_figures(x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Mode weights, gap mass and per-mode stds (2 modes × 2 axes) of samples of the seed mixture."""
    mix = seed_mixture()
    assert np.isfinite(x).all()
    stds = np.array([m["std"] for m in metrics.per_mode_moments(x, mix)])
    return metrics.mode_weights(x, mix), metrics.gap_mass(x), stds


def check_seed(x: np.ndarray, weight_tol: float = 0.02) -> None:
    w, gap, stds = seed_figures(x)
    assert np.abs(w - [1 / 3, 2 / 3]).max() < weight_tol, w
    assert gap <= 0.005, gap
    assert np.abs(stds - 1).max() < 0.10, stds


def toy_left(x: np.ndarray) -> float:
    assert np.isfinite(x).all()
    return float(metrics.mode_weights(x, ncsn_toy_mixture())[0])


def check_toy(annealed_fn, plain_fn, n: int, seed: int, tol: float) -> None:
    """The paper's toy with one framework's samplers: annealed within ``tol`` of ⅕ on the left, plain
    Langevin with the σ → 0 score off by more than 0.15."""
    s = ncsn_sampler()
    sigmas = np.geomspace(TOY_SIGMA_MAX, s["sigmas"][-1], len(s["sigmas"]))
    annealed = toy_left(annealed_fn(ncsn_toy_mixture(), sigmas, n, TOY_INIT, seed, s))
    plain = toy_left(plain_fn(ncsn_toy_mixture(), float(sigmas[-1]), n, seed))
    assert abs(annealed - 0.2) < tol, annealed
    assert abs(plain - 0.2) > 0.15, plain


# --- JAX ---------------------------------------------------------------------------------------


def _jax_annealed(mixture, sigmas, n, init_scale, seed, s):
    import jax
    import jax.numpy as jnp

    from jax_dsm.mixtures import mixture_score
    from jax_dsm.sampling import annealed_langevin

    x, _ = annealed_langevin(mixture_score(mixture), jnp.asarray(uniform_start(n, init_scale, seed)),
                             jnp.asarray(sigmas, jnp.float32), s["step_size"], s["n_steps"],
                             rng=jax.random.PRNGKey(seed), denoise=s["denoise"])
    return np.asarray(x, np.float64)


def _jax_plain(mixture, sigma, n, seed):
    import jax
    import jax.numpy as jnp
    from jax.tree_util import Partial

    from jax_dsm.mixtures import mixture_score
    from jax_dsm.sampling import langevin

    score = Partial(lambda sc, x: sc(x, sigma), mixture_score(mixture))
    x, _ = langevin(score, jnp.asarray(uniform_start(n, TOY_INIT, seed)), PLAIN_STEP, PLAIN_STEPS,
                    rng=jax.random.PRNGKey(seed))
    return np.asarray(x, np.float64)


def test_seed_mixture_exact_score_jax():
    """10 000 chains, the config's sampler (≈ 10–20 s): the three NCSN criteria (weights, gap, per-mode spread)."""
    s = ncsn_sampler()
    check_seed(_jax_annealed(seed_mixture(), s["sigmas"], 10_000, s["init_scale"], 0, s))


def test_toy_annealed_recovers_weights_plain_does_not_jax():
    """The paper's toy, 10 000 chains each: annealed within 0.02 of ⅕, plain off by more than 0.15."""
    check_toy(_jax_annealed, _jax_plain, 10_000, seed=1, tol=0.02)


# --- torch -------------------------------------------------------------------------------------


def _torch_annealed(mixture, sigmas, n, init_scale, seed, s):
    import torch

    from torch_dsm.mixtures import mixture_score
    from torch_dsm.sampling import annealed_langevin

    torch.set_num_threads(1)
    x, _ = annealed_langevin(mixture_score(mixture), torch.from_numpy(uniform_start(n, init_scale, seed)),
                             torch.as_tensor(sigmas, dtype=torch.float32), s["step_size"], s["n_steps"],
                             denoise=s["denoise"], rng=torch.Generator().manual_seed(seed))
    return x.double().numpy()


def _torch_plain(mixture, sigma, n, seed):
    import torch

    from torch_dsm.mixtures import mixture_score
    from torch_dsm.sampling import langevin

    torch.set_num_threads(1)
    score = mixture_score(mixture)
    x, _ = langevin(lambda y: score(y, sigma), torch.from_numpy(uniform_start(n, TOY_INIT, seed)), PLAIN_STEP,
                    PLAIN_STEPS, rng=torch.Generator().manual_seed(seed))
    return x.double().numpy()


def test_seed_mixture_exact_score_torch_ci_size():
    """2000 chains: gap and stds as at full size, weights within 0.045."""
    s = ncsn_sampler()
    check_seed(_torch_annealed(seed_mixture(), s["sigmas"], 2000, s["init_scale"], 2, s), weight_tol=0.045)


def test_toy_annealed_recovers_weights_plain_does_not_torch_ci_size():
    """2000 chains each: annealed within 0.04 of ⅕, plain off by more than 0.15."""
    check_toy(_torch_annealed, _torch_plain, 2000, seed=3, tol=0.04)


@pytest.mark.slow
def test_seed_mixture_exact_score_torch_full_size():
    s = ncsn_sampler()
    check_seed(_torch_annealed(seed_mixture(), s["sigmas"], 10_000, s["init_scale"], 0, s))


@pytest.mark.slow
def test_toy_annealed_recovers_weights_plain_does_not_torch_full_size():
    check_toy(_torch_annealed, _torch_plain, 10_000, seed=1, tol=0.02)
