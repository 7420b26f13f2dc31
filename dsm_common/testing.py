"""Float64 numpy references the test suites of both frameworks check against (``tests/``, ``parity_tests/``).

Written once here, from the equations of ``docs/method.md``, so every test that grades a network
or a sampler against numpy uses the same reference:

* :func:`numpy_mlp`: the score MLP from canonical weights (``dsm_common.weights``), optionally
  noise-conditional (input ``(x, log σ)``, output divided by σ);
* :func:`numpy_langevin`: the Euler–Maruyama Langevin recursion ``x ← x + (ε/2) s(x) + √ε z``
  with given noise, keeping every k-th state as the samplers do;
* :func:`numpy_edm_denoiser`: EDM's preconditioned denoiser D = c_skip x + c_out F(c_in x, c_noise)
  from canonical weights (docs/method.md §6), written from Table 1 of arXiv 2206.00364;
* :func:`numpy_edm_sampler`: Algorithm 2 of arXiv 2206.00364 on a denoiser, with given noise.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

__all__ = ["numpy_mlp", "numpy_langevin", "numpy_edm_denoiser", "numpy_edm_sampler"]


def numpy_mlp(params: Mapping[str, np.ndarray], x: np.ndarray, sigma: float | np.ndarray | None = None) -> np.ndarray:
    """Forward pass of a canonical MLP in float64: ``h ← relu(h @ kernel + bias)``, no ReLU last.

    Args:
        params: canonical arrays ``dense_{i}.kernel`` (in, out) and ``dense_{i}.bias`` (out,).
        x: (n, d) points (for an unconditional network, whatever its input is).
        sigma: for a noise-conditional network, the level (a float or (n,) array): the input is
            ``(x, log σ)`` and the output is divided by σ, as ``ScoreMLP``. None: unconditional.

    Returns:
        (n, out) float64.
    """
    n = len(params) // 2
    h = np.asarray(x, np.float64)
    if sigma is not None:
        s = np.broadcast_to(np.asarray(sigma, np.float64), h.shape[:1])[:, None]  # (n, 1)
        h = np.concatenate([h, np.log(s)], axis=1)
    for i in range(n):
        h = h @ np.asarray(params[f"dense_{i}.kernel"], np.float64) + np.asarray(params[f"dense_{i}.bias"], np.float64)
        if i < n - 1:
            h = np.maximum(h, 0.0)
    return h if sigma is None else h / s


def numpy_langevin(score: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, eps: float, noise: np.ndarray,
                   keep_every: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """``len(noise)`` Langevin steps ``x ← x + (ε/2) s(x) + √ε z_k`` in float64 (docs/method.md §1).

    Args:
        score: (n, d) → (n, d) float64.
        x0: (n, d) initial states. eps: ε. noise: (n_steps, n, d) standard normal draws.
        keep_every: keep the state after every k-th step (0: none).

    Returns:
        ``(x, kept)``: final states (n, d) and the kept states (n_steps // k, n, d) or None.
    """
    x = np.asarray(x0, np.float64)
    kept = []
    for k, z in enumerate(np.asarray(noise, np.float64)):
        x = x + 0.5 * eps * score(x) + np.sqrt(eps) * z
        if keep_every and (k + 1) % keep_every == 0:
            kept.append(x)
    return x, (np.stack(kept) if kept else None)


def numpy_edm_denoiser(params: Mapping[str, np.ndarray], x: np.ndarray, sigma: float | np.ndarray,
                       sigma_data: float) -> np.ndarray:
    """D(x; σ) = c_skip x + c_out F(c_in x; c_noise) in float64, F the canonical MLP fed
    ``(c_in x, c_noise)``: c_skip = σ_d²/(σ² + σ_d²), c_out = σ σ_d/√(σ² + σ_d²),
    c_in = 1/√(σ² + σ_d²), c_noise = ln(σ)/4 (arXiv 2206.00364, Table 1).

    Args:
        x: (n, d). sigma: a float or (n,). sigma_data: σ_d.

    Returns:
        (n, d) float64.
    """
    x = np.asarray(x, np.float64)
    s = np.broadcast_to(np.asarray(sigma, np.float64), x.shape[:1])[:, None]  # (n, 1)
    c_skip = sigma_data**2 / (s**2 + sigma_data**2)
    c_out = s * sigma_data / np.sqrt(s**2 + sigma_data**2)
    c_in = 1 / np.sqrt(s**2 + sigma_data**2)
    f = numpy_mlp(params, np.concatenate([c_in * x, np.log(s) / 4], axis=1))
    return c_skip * x + c_out * f


def numpy_edm_sampler(denoise: Callable[[np.ndarray, float], np.ndarray], x0: np.ndarray, t_steps: np.ndarray,
                      gammas: np.ndarray | None = None, s_noise: float = 1.0, heun: bool = True,
                      noise: np.ndarray | None = None, steps: int | None = None) -> np.ndarray:
    """Algorithm 2 of arXiv 2206.00364 in float64, as written there: x_0 = t_0 x₀; per step
    t̂ = t_i + γ_i t_i, x̂ = x + √(t̂² − t_i²) S_noise ε_i, d = (x̂ − D(x̂; t̂))/t̂,
    x' = x̂ + (t_{i+1} − t̂) d, and (Heun, t_{i+1} ≠ 0) d' = (x' − D(x'; t_{i+1}))/t_{i+1},
    x' = x̂ + (t_{i+1} − t̂)(d + d')/2.

    Args:
        denoise: D, ((n, d), σ) → (n, d) float64.
        x0: (n, d) latents. t_steps: (N + 1,) with t_N = 0. gammas: (N,) or None (all 0).
        noise: (N, n, d) ε (needed where γ_i > 0).
        steps: stop after this many steps (None: all N).

    Returns:
        (n, d) float64 states after the steps taken.
    """
    t = np.asarray(t_steps, np.float64)
    g = np.zeros(len(t) - 1) if gammas is None else np.asarray(gammas, np.float64)
    x = np.asarray(x0, np.float64) * t[0]
    for i in range(len(t) - 1 if steps is None else steps):
        t_hat = t[i] + g[i] * t[i]
        if g[i] > 0:
            x = x + np.sqrt(t_hat**2 - t[i] ** 2) * s_noise * np.asarray(noise[i], np.float64)
        d = (x - denoise(x, t_hat)) / t_hat
        x_next = x + (t[i + 1] - t_hat) * d
        if heun and t[i + 1] != 0:
            d_next = (x_next - denoise(x_next, t[i + 1])) / t[i + 1]
            x_next = x + (t[i + 1] - t_hat) * (0.5 * d + 0.5 * d_next)
        x = x_next
    return x
