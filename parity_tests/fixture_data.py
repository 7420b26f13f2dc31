"""The shared fixtures of the parity suite: what they hold, how they are drawn, how they are read.

Everything here is numpy only, drawn from one ``numpy.random.Generator`` (PCG64) seed, with
elementwise arithmetic only (no BLAS calls), so the file is bit-for-bit reproducible:
``scripts/make_fixtures.py`` writes it and ``test_fixtures.py`` regenerates it and compares.
Both frameworks consume exactly these arrays (docs/parity.md: weights are copied, noise is passed in).

Contents (all float32 unless said; ``W.`` is a canonical weight set, docs/parity.md layout
``dense_{i}.kernel`` (in, out) / ``dense_{i}.bias`` (out,)):

* ``init.*``   the recipe's score MLP 2 → 256 → 256 → 2, drawn like torch's default
  initialisation, U(−1/√fan_in, 1/√fan_in). Forward, loss, gradients, SGD and training.
* ``score.*``  the same widths, hand-built so that ``s(x) ≈ ∇ log Υ_σ(x)`` (a linear pull to
  the nearer mode, switched by a ReLU ramp in x₁), plus a small random part in every unit so all
  weights matter. A fixed, sensible score for the samplers (random weights would let chains
  drift off); used by the value-parity and distribution-parity sampler tests.
* ``cond.*``   a noise-conditional MLP 3 → 256 → 256 → 2 (input (x, log σ)), init-like.
* ``x`` (8, 2), ``z`` (8, 2): a data batch of the seed mixture and its loss noise.
* ``x_eval`` (256, 2): points on [−20, 20]² for forward passes and the exact-score oracle;
  ``x_far`` (16, 2) on a circle of radius 100 (log-sum-exp territory);
  ``sigma_eval`` (256,): per-point noise levels, log-uniform on [0.3, 3], for the conditional net.
* ``ncsn_sigmas`` (5,) float32, ``ncsn_levels`` (8,) int64, ``ncsn_z`` (8, 2): NCSN loss inputs.
* ``sgd_x``, ``sgd_z`` (100, 8, 2): batches and noise of 100 SGD steps.
* ``x0`` (32, 2), ``langevin_noise`` (1000, 32, 2): start and per-step noise of the Langevin
  sampler; ``annealed_x0`` (32, 2), ``annealed_noise`` (5, 100, 32, 2) for annealed Langevin.
* scalars (0-d float64): ``seed``, ``sigma`` (3), ``lr`` (1e-5), ``step_size`` (0.01),
  ``annealed_step_size``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["SEED", "DEFAULT_PATH", "make_fixtures", "save_fixtures", "load_fixtures", "weight_set", "WEIGHT_SETS"]

SEED = 20_240_611
DEFAULT_PATH = Path(__file__).with_name("fixtures.npz")
WEIGHT_SETS = ("init", "score", "cond")

SIGMA = 3.0
LR = 1e-5
BATCH = 8
N_SGD = 100
N_CHAINS = 32
N_STEPS = 1000
STEP_SIZE = 0.01
NCSN_SIGMAS = (3.0, 0.3, 5)  # geometric: σ₁, σ_L, L
ANNEALED_T = 100
ANNEALED_STEP_SIZE = 1e-3
SEED_MEANS = np.array([[-10.0, 1.0], [10.0, 0.0]])


def _init_like(rng: np.random.Generator, widths: list[int]) -> dict[str, np.ndarray]:
    """torch.nn.Linear's default law, U(−1/√fan_in, 1/√fan_in), for kernel and bias."""
    out = {}
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        bound = 1.0 / np.sqrt(a)
        out[f"dense_{i}.kernel"] = rng.uniform(-bound, bound, (a, b))
        out[f"dense_{i}.bias"] = rng.uniform(-bound, bound, (b,))
    return out


def _score_weights(rng: np.random.Generator, sigma: float, hidden: int = 256, jitter: float = 0.03) -> dict[str, np.ndarray]:
    """A ReLU MLP close to the score of Υ_σ = ⅓ N(μ₁, (1+σ²)I) + ⅔ N(μ₂, (1+σ²)I).

    s(x) = −c (x − μ(x)) with c = 1/(1+σ²), μ(x) ramping from μ₁ to μ₂ as x₁ crosses the
    boundary b over a width w: μ(x) = μ₁ + (μ₂ − μ₁) clamp((x₁ − b)/w + ½, 0, 1).
    Units 0–3 carry ±x₁, ±x₂ (x = relu(x) − relu(−x)), units 4–5 the ramp; the second layer
    passes units 0–5 through; the rest is an init-like random part scaled by ``jitter`` at the
    output.
    """
    w = _init_like(rng, [2, hidden, hidden, 2])
    c = 1.0 / (1.0 + sigma**2)
    mu1, mu2 = SEED_MEANS
    # Equal responsibilities: |x−μ₁|² − |x−μ₂|² = 2(1+σ²) ln(w₁/w₂) along x₂ = ½, solved for x₁.
    b = (2 * (1 + sigma**2) * np.log(0.5) + (mu2 @ mu2 - mu1 @ mu1) - 2 * 0.5 * (mu2[1] - mu1[1])) / (2 * (mu2[0] - mu1[0]))
    width = 4.0
    k0, b0 = w["dense_0.kernel"], w["dense_0.bias"]
    k0[:, :6] = 0.0
    b0[:6] = 0.0
    k0[0, 0], k0[0, 1], k0[1, 2], k0[1, 3] = 1.0, -1.0, 1.0, -1.0
    k0[0, 4], b0[4] = 1.0, -(b - width / 2)
    k0[0, 5], b0[5] = 1.0, -(b + width / 2)
    k1, b1 = w["dense_1.kernel"], w["dense_1.bias"]
    k1[:, :6] = 0.0
    b1[:6] = 0.0
    for j in range(6):
        k1[j, j] = 1.0
    k2, b2 = w["dense_2.kernel"], w["dense_2.bias"]
    k2 *= jitter
    b2 *= jitter
    k2[:6] = 0.0
    k2[0, 0], k2[1, 0], k2[2, 1], k2[3, 1] = -c, c, -c, c
    k2[4] = c * (mu2 - mu1) / width
    k2[5] = -c * (mu2 - mu1) / width
    b2 += c * mu1
    return w


def _seed_points(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Draws of the seed mixture ⅓ N((−10, 1), I) + ⅔ N((10, 0), I), shape (..., 2)."""
    right = rng.random(shape) >= 1 / 3
    return np.where(right[..., None], SEED_MEANS[1], SEED_MEANS[0]) + rng.standard_normal(shape + (2,))


def make_fixtures(seed: int = SEED) -> dict[str, np.ndarray]:
    """All fixture arrays, deterministic in ``seed`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    f64: dict[str, np.ndarray] = {}
    for name, params in (
        ("init", _init_like(rng, [2, 256, 256, 2])),
        ("score", _score_weights(rng, SIGMA)),
        ("cond", _init_like(rng, [3, 256, 256, 2])),
    ):
        f64.update({f"{name}.{k}": v for k, v in params.items()})
    f64["x"] = _seed_points(rng, (BATCH,))
    f64["z"] = rng.standard_normal((BATCH, 2))
    f64["x_eval"] = rng.uniform(-20.0, 20.0, (256, 2))
    angle = rng.uniform(0.0, 2 * np.pi, 16)
    f64["x_far"] = 100.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    f64["sigma_eval"] = np.exp(rng.uniform(np.log(0.3), np.log(3.0), 256))
    s_max, s_min, n_levels = NCSN_SIGMAS
    f64["ncsn_sigmas"] = np.exp(np.linspace(np.log(s_max), np.log(s_min), n_levels))
    levels = rng.integers(0, n_levels, BATCH).astype(np.int64)
    f64["ncsn_z"] = rng.standard_normal((BATCH, 2))
    f64["sgd_x"] = _seed_points(rng, (N_SGD, BATCH))
    f64["sgd_z"] = rng.standard_normal((N_SGD, BATCH, 2))
    f64["x0"] = rng.standard_normal((N_CHAINS, 2))
    f64["langevin_noise"] = rng.standard_normal((N_STEPS, N_CHAINS, 2))
    f64["annealed_x0"] = rng.uniform(-3.0, 3.0, (N_CHAINS, 2))
    f64["annealed_noise"] = rng.standard_normal((n_levels, ANNEALED_T, N_CHAINS, 2))
    out = {k: v.astype(np.float32) for k, v in f64.items()}
    out["ncsn_levels"] = levels
    out.update(
        seed=np.array(seed, np.int64),
        sigma=np.array(SIGMA),
        lr=np.array(LR),
        step_size=np.array(STEP_SIZE),
        annealed_step_size=np.array(ANNEALED_STEP_SIZE),
    )
    return out


def save_fixtures(path: str | Path = DEFAULT_PATH, seed: int = SEED) -> Path:
    """Write ``make_fixtures(seed)`` to ``path`` (.npz, uncompressed: random floats do not compress)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **make_fixtures(seed))
    return path


def load_fixtures(path: str | Path = DEFAULT_PATH) -> dict[str, np.ndarray]:
    """Read a fixtures file into a dict of numpy arrays."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def weight_set(fx: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """The canonical weight set ``name`` (``init``, ``score`` or ``cond``) of the fixtures."""
    prefix = name + "."
    return {k[len(prefix):]: v for k, v in fx.items() if k.startswith(prefix)}
