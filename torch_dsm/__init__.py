"""Denoising score matching in PyTorch Lightning: data module, score MLP, DSM losses, Langevin
samplers and the ``LightningModule``. Mirror of ``jax_dsm``; imports neither JAX nor Flax."""

from __future__ import annotations

import importlib

# Imported on first use (PEP 562), so that ``import torch_dsm`` alone, as the console script does
# before it can answer Ctrl-C, does not yet import the framework.
_EXPORTS = {
    "DSMDataModule": "torch_dsm.data",
    "dsm_loss": "torch_dsm.losses",
    "ncsn_loss": "torch_dsm.losses",
    "ScoreMLP": "torch_dsm.models",
    "DSMModule": "torch_dsm.module",
    "annealed_langevin": "torch_dsm.sampling",
    "langevin": "torch_dsm.sampling",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
