"""The score network: an MLP ``s_θ(x)`` (SPEC §1), or ``s_θ(x, σ)`` for multiple noise scales.

Unconditional (the reference recipe): ``2 → 256 → ReLU → 256 → ReLU → 2``.
Noise-conditional (NCSN, SPEC §3): the network sees ``(x, log σ)`` and its output is divided by
σ, so ``σ s_θ(x, σ)`` is of order one at every level (arXiv 2006.09011, technique 3).

Mirror: ``torch_dsm/models.py``. Layer ``i`` is ``dense_{i}`` here and ``dense[i]`` there; both
map to ``dense_{i}.kernel`` / ``dense_{i}.bias`` in the canonical layout (``weights.py``).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["ScoreMLP"]


class ScoreMLP(nn.Module):
    """Dense ReLU network from R^d (or R^{d+1} with log σ) to R^d.

    Attributes:
        hidden_dims: widths of the hidden layers, e.g. ``(256, 256)``.
        conditional: if True, the input is ``(x, log σ)`` and the output is divided by σ.
        dim: data dimension d (2).
    """

    hidden_dims: Sequence[int] = (256, 256)
    conditional: bool = False
    dim: int = 2

    @nn.compact
    def __call__(self, x: jnp.ndarray, sigma: jnp.ndarray | float | None = None) -> jnp.ndarray:
        """Score at ``x`` (B, d) float32 → (B, d).

        Args:
            x: points, (B, d).
            sigma: conditional models only: noise level, a float or a (B,) array.
        """
        h = x
        if self.conditional:
            if sigma is None:
                raise ValueError("a noise-conditional ScoreMLP needs sigma")
            sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])[:, None]  # (B, 1)
            h = jnp.concatenate([x, jnp.log(sigma)], axis=1)  # (B, d + 1)
        for i, width in enumerate(self.hidden_dims):
            h = nn.relu(nn.Dense(width, name=f"dense_{i}")(h))  # (B, hidden)
        out = nn.Dense(self.dim, name=f"dense_{len(self.hidden_dims)}")(h)  # (B, d)
        return out / sigma if self.conditional else out
