"""Denoising score matching in PyTorch Lightning: data module, score MLP, DSM losses, Langevin
samplers and the ``LightningModule``. Mirror of ``jax_dsm``; imports neither JAX nor Flax."""

from torch_dsm.data import DSMDataModule
from torch_dsm.losses import dsm_loss, ncsn_loss
from torch_dsm.models import ScoreMLP
from torch_dsm.module import DSMModule
from torch_dsm.sampling import annealed_langevin, langevin

__all__ = ["DSMDataModule", "DSMModule", "ScoreMLP", "dsm_loss", "ncsn_loss", "langevin", "annealed_langevin"]
