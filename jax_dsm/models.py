"""The score network: an MLP ``s_θ(x)`` (docs/method.md §1), or ``s_θ(x, σ)`` for multiple noise scales.

Unconditional (the reference recipe): ``2 → 256 → ReLU → 256 → ReLU → 2``.
Noise-conditional (NCSN, docs/method.md §3): the network sees ``(x, log σ)`` and its output is divided by
σ, so ``σ s_θ(x, σ)`` is of order one at every level (arXiv 2006.09011, technique 3).
Preconditioned (EDM, docs/method.md §6): the MLP is F_θ of the denoiser
D(x; σ) = c_skip(σ) x + c_out(σ) F_θ(c_in(σ) x; c_noise(σ)), fed ``(c_in x, c_noise)``, and the
network returns the score (D − x)/σ² (arXiv 2206.00364, Table 1).

Mirror: ``torch_dsm/models.py``. Layer ``i`` is ``dense_{i}`` here and ``dense[i]`` there; both
map to ``dense_{i}.kernel`` / ``dense_{i}.bias`` in the canonical layout (``weights.py``).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dsm_common.init import resolve_init

__all__ = ["ScoreMLP", "edm_coefficients"]

PRECONDITIONINGS = ("none", "edm")


def edm_coefficients(sigma: jnp.ndarray, sigma_data: float) -> tuple[jnp.ndarray, ...]:
    """EDM's preconditioning (arXiv 2206.00364, Table 1, column "ours") at σ (any shape):
    ``(c_skip, c_out, c_in, c_noise)`` = (σ_d²/(σ² + σ_d²), σ σ_d/√(σ² + σ_d²), 1/√(σ² + σ_d²), ln(σ)/4)."""
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / jnp.sqrt(total), jax.lax.rsqrt(total), jnp.log(sigma) / 4


def _uniform(bound: float):
    """Initializer of entries uniform on [−bound, bound] (torch's ``nn.Linear`` bias law)."""

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jnp.ndarray:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _dense_initializers(initialization: str, fan_in: int) -> dict:
    """``kernel_init`` and ``bias_init`` of a ``nn.Dense`` of input width ``fan_in`` for a law of
    ``dsm_common.init``: ``flax``/``native`` (Flax's own default) or ``torch`` (``nn.Linear``'s)."""
    if resolve_init(initialization, "jax") == "flax":
        return {"kernel_init": nn.initializers.lecun_normal(), "bias_init": nn.initializers.zeros}
    # kaiming_uniform_(a=√5): uniform with variance 1/(3 fan_in), i.e. on ±1/√fan_in.
    return {"kernel_init": nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
            "bias_init": _uniform(fan_in ** -0.5)}


class ScoreMLP(nn.Module):
    """Dense ReLU network from R^d (or R^{d+1} with log σ) to R^d.

    Attributes:
        hidden_dims: widths of the hidden layers, e.g. ``(256, 256)``.
        conditional: if True, the input is ``(x, log σ)`` and the output is divided by σ.
        dim: data dimension d (2).
        preconditioning: ``none``, or ``edm`` (conditional networks): the MLP is EDM's F_θ and the
            network returns the score of the denoiser D (module doc).
        sigma_data: σ_data of the ``edm`` preconditioning (set from the data before training).
        initialization: law of the initial weights (``dsm_common.init``): ``flax`` or ``native``
            (Flax's ``nn.Dense`` default), or ``torch`` (``nn.Linear``'s default: Kaiming-uniform
            kernels with a = √5, uniform biases); drawn from the ``init`` key.
    """

    hidden_dims: Sequence[int] = (256, 256)
    conditional: bool = False
    dim: int = 2
    initialization: str = "native"
    preconditioning: str = "none"
    sigma_data: float = 1.0

    def __call__(self, x: jnp.ndarray, sigma: jnp.ndarray | float | None = None) -> jnp.ndarray:
        """Score at ``x`` (B, d) float32 → (B, d).

        Args:
            x: points, (B, d).
            sigma: conditional models only: noise level, a float or a (B,) array.

        Raises:
            ValueError: an unknown ``preconditioning``, or ``edm`` on an unconditional network.
        """
        self._check_preconditioning()
        h = x
        if self.conditional:
            if sigma is None:
                raise ValueError("a noise-conditional ScoreMLP needs sigma")
            sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])[:, None]  # (B, 1)
            if self.preconditioning == "edm":
                # (D − x)/σ² with c_skip − 1 = −σ²/(σ² + σ_d²) taken analytically (no cancellation
                # at small σ): −x/(σ² + σ_d²) + σ_d F/(σ √(σ² + σ_d²)).
                _, c_out, c_in, c_noise = edm_coefficients(sigma, self.sigma_data)  # each (B, 1)
                f = self._mlp(jnp.concatenate([c_in * x, c_noise], axis=1))  # (B, d)
                return -x * c_in**2 + (c_out / sigma**2) * f
            h = jnp.concatenate([x, jnp.log(sigma)], axis=1)  # (B, d + 1)
        out = self._mlp(h)  # (B, d)
        return out / sigma if self.conditional else out

    def _check_preconditioning(self) -> None:
        if self.preconditioning not in PRECONDITIONINGS or (self.preconditioning == "edm" and not self.conditional):
            raise ValueError(f"preconditioning must be none or (conditional networks) edm, got {self.preconditioning!r}")

    def denoise(self, x: jnp.ndarray, sigma: jnp.ndarray | float) -> jnp.ndarray:
        """The denoiser D(x; σ) = x + σ² s(x, σ) (for ``edm``: c_skip x + c_out F), (B, d) → (B, d)."""
        self._check_preconditioning()
        s = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])[:, None]
        if self.preconditioning == "edm":
            c_skip, c_out, c_in, c_noise = edm_coefficients(s, self.sigma_data)
            return c_skip * x + c_out * self._mlp(jnp.concatenate([c_in * x, c_noise], axis=1))
        return x + s**2 * self(x, sigma)

    @nn.compact
    def _mlp(self, h: jnp.ndarray) -> jnp.ndarray:
        for i, width in enumerate(self.hidden_dims):
            dense = nn.Dense(width, name=f"dense_{i}", **_dense_initializers(self.initialization, h.shape[-1]))
            h = nn.relu(dense(h))  # (B, hidden)
        out = nn.Dense(self.dim, name=f"dense_{len(self.hidden_dims)}",
                       **_dense_initializers(self.initialization, h.shape[-1]))(h)  # (B, d)
        return out
