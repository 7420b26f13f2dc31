"""The score network: an MLP ``s_θ(x)`` (docs/method.md §1), or ``s_θ(x, σ)`` for multiple noise scales.

Unconditional (the reference recipe): ``2 → 256 → ReLU → 256 → ReLU → 2``.
Noise-conditional (NCSN, docs/method.md §3): the network sees ``(x, log σ)`` and its output is divided by
σ, so ``σ s_θ(x, σ)`` is of order one at every level (arXiv 2006.09011, technique 3).

Mirror: ``jax_dsm/models.py``. Layer ``i`` is ``dense[i]`` here and ``dense_{i}`` there; both map
to ``dense_{i}.kernel`` / ``dense_{i}.bias`` in the canonical layout (``weights.py``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dsm_common.init import TRUNCATED_NORMAL_STD, resolve_init

__all__ = ["ScoreMLP"]


class ScoreMLP(nn.Module):
    """Dense ReLU network from R^d (or R^{d+1} with log σ) to R^d.

    Args:
        hidden_dims: widths of the hidden layers, e.g. ``(256, 256)``.
        conditional: if True, the input is ``(x, log σ)`` and the output is divided by σ.
        dim: data dimension d (2).
        initialization: law of the initial weights (``dsm_common.init``): ``torch`` or ``native``
            (``nn.Linear``'s default), or ``flax`` (Flax's ``nn.Dense`` default: truncated
            LeCun-normal kernels, zero biases); drawn from torch's global random stream.

    Raises:
        DSMInputError: an unknown ``initialization``.
    """

    def __init__(self, hidden_dims: Sequence[int] = (256, 256), conditional: bool = False, dim: int = 2,
                 initialization: str = "native"):
        super().__init__()
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.conditional = conditional
        self.dim = dim
        self.initialization = resolve_init(initialization, "torch")
        widths = [dim + int(conditional), *self.hidden_dims, dim]
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        if self.initialization == "flax":
            with torch.no_grad():
                for layer in self.dense:
                    s = (1.0 / layer.in_features) ** 0.5 / TRUNCATED_NORMAL_STD
                    nn.init.trunc_normal_(layer.weight, std=s, a=-2 * s, b=2 * s)  # (out, in)
                    nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Score at ``x`` (B, d) float32 → (B, d).

        Args:
            x: points, (B, d).
            sigma: conditional models only: noise level, a float or a (B,) tensor.
        """
        h = x
        if self.conditional:
            if sigma is None:
                raise ValueError("a noise-conditional ScoreMLP needs sigma")
            sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])[:, None]  # (B, 1)
            h = torch.cat([x, torch.log(sigma)], dim=1)  # (B, d + 1)
        for layer in self.dense[:-1]:
            h = torch.relu(layer(h))  # (B, hidden)
        out = self.dense[-1](h)  # (B, d)
        return out / sigma if self.conditional else out
