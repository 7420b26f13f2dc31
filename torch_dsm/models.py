"""The score network: an MLP ``s_θ(x)`` (docs/method.md §1), or ``s_θ(x, σ)`` for multiple noise scales.

Unconditional (the reference recipe): ``2 → 256 → ReLU → 256 → ReLU → 2``.
Noise-conditional (NCSN, docs/method.md §3): the network sees ``(x, log σ)`` and its output is divided by
σ, so ``σ s_θ(x, σ)`` is of order one at every level (arXiv 2006.09011, technique 3).
Preconditioned (EDM, docs/method.md §6): the MLP is F_θ of the denoiser
D(x; σ) = c_skip(σ) x + c_out(σ) F_θ(c_in(σ) x; c_noise(σ)), fed ``(c_in x, c_noise)``, and the
network returns the score (D − x)/σ² (arXiv 2206.00364, Table 1).

Mirror: ``jax_dsm/models.py``. Layer ``i`` is ``dense[i]`` here and ``dense_{i}`` there; both map
to ``dense_{i}.kernel`` / ``dense_{i}.bias`` in the canonical layout (``weights.py``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dsm_common.init import TRUNCATED_NORMAL_STD, resolve_init

__all__ = ["ScoreMLP", "edm_coefficients"]

PRECONDITIONINGS = ("none", "edm")


def edm_coefficients(sigma: torch.Tensor | float, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """EDM's preconditioning (arXiv 2206.00364, Table 1, column "ours") at σ (any shape):
    ``(c_skip, c_out, c_in, c_noise)`` = (σ_d²/(σ² + σ_d²), σ σ_d/√(σ² + σ_d²), 1/√(σ² + σ_d²), ln(σ)/4)."""
    sigma = torch.as_tensor(sigma)
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), total.rsqrt(), sigma.log() / 4


class ScoreMLP(nn.Module):
    """Dense ReLU network from R^d (or R^{d+1} with log σ) to R^d.

    Args:
        hidden_dims: widths of the hidden layers, e.g. ``(256, 256)``.
        conditional: if True, the input is ``(x, log σ)`` and the output is divided by σ.
        dim: data dimension d (2).
        preconditioning: ``none``, or ``edm`` (conditional networks): the MLP is EDM's F_θ and the
            network returns the score of the denoiser D (module doc).
        sigma_data: σ_data of the ``edm`` preconditioning (set from the data before training).
        initialization: law of the initial weights (``dsm_common.init``): ``torch`` or ``native``
            (``nn.Linear``'s default), or ``flax`` (Flax's ``nn.Dense`` default: truncated
            LeCun-normal kernels, zero biases); drawn from torch's global random stream.

    Raises:
        DSMInputError: an unknown ``initialization``.
        ValueError: an unknown ``preconditioning``, or ``edm`` on an unconditional network.
    """

    def __init__(self, hidden_dims: Sequence[int] = (256, 256), conditional: bool = False, dim: int = 2,
                 initialization: str = "native", preconditioning: str = "none", sigma_data: float = 1.0):
        super().__init__()
        if preconditioning not in PRECONDITIONINGS or (preconditioning == "edm" and not conditional):
            raise ValueError(f"preconditioning must be none or (conditional networks) edm, got {preconditioning!r}")
        self.preconditioning = preconditioning
        self.sigma_data = float(sigma_data)
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
            if self.preconditioning == "edm":
                return self._edm_score(x, sigma)
            h = torch.cat([x, torch.log(sigma)], dim=1)  # (B, d + 1)
        out = self._mlp(h)  # (B, d)
        return out / sigma if self.conditional else out

    def _mlp(self, h: torch.Tensor) -> torch.Tensor:
        # Unpacked, not sliced: self.dense[:-1] builds a new ModuleList on every call (7 % of a
        # batch-8 training step on a CPU).
        *hidden, out = self.dense
        for layer in hidden:
            h = torch.relu(layer(h))  # (B, hidden)
        return out(h)  # (B, d)

    def _edm_score(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        # (D − x)/σ² with c_skip − 1 = −σ²/(σ² + σ_d²) taken analytically (no cancellation at small σ):
        # −x/(σ² + σ_d²) + σ_d F/(σ √(σ² + σ_d²)).
        _, c_out, c_in, c_noise = edm_coefficients(sigma, self.sigma_data)  # each (B, 1)
        f = self._mlp(torch.cat([c_in * x, c_noise], dim=1))  # (B, d)
        return -x * c_in**2 + (c_out / sigma**2) * f

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The denoiser D(x; σ) = x + σ² s(x, σ) (for ``edm``: c_skip x + c_out F), (B, d) → (B, d)."""
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])[:, None]
        if self.preconditioning == "edm":
            c_skip, c_out, c_in, c_noise = edm_coefficients(s, self.sigma_data)
            return c_skip * x + c_out * self._mlp(torch.cat([c_in * x, c_noise], dim=1))
        return x + s**2 * self(x, sigma)
