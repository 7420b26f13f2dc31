"""Float64 numpy references the test suites of both frameworks check against (``tests/``, ``parity_tests/``).

Written once here, from the equations of ``docs/method.md``, so every test that grades a network
or a sampler against numpy uses the same reference:

* :func:`numpy_mlp`: the score MLP from canonical weights (``dsm_common.weights``), optionally
  noise-conditional (input ``(x, log σ)``, output divided by σ);
* :func:`numpy_langevin`: the Euler–Maruyama Langevin recursion ``x ← x + (ε/2) s(x) + √ε z``
  with given noise, keeping every k-th state as the samplers do.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

__all__ = ["numpy_mlp", "numpy_langevin"]


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
