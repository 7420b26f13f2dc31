"""Denoising score matching in JAX/Flax/Optax: data, score MLP, DSM losses, compiled Langevin
samplers and a compiled training loop. Mirror of ``torch_dsm``; imports neither torch nor
Lightning."""

from __future__ import annotations

import importlib

# Imported on first use (PEP 562), so that ``import jax_dsm`` alone, as the console script does
# before it can answer Ctrl-C, does not yet import the framework.
_EXPORTS = {
    "DSMDataModule": "jax_dsm.data",
    "dsm_loss": "jax_dsm.losses",
    "ncsn_loss": "jax_dsm.losses",
    "ScoreMLP": "jax_dsm.models",
    "DSMModule": "jax_dsm.module",
    "annealed_langevin": "jax_dsm.sampling",
    "langevin": "jax_dsm.sampling",
    "Trainer": "jax_dsm.trainer",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
