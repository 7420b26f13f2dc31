"""Denoising score matching in JAX/Flax/Optax: data, score MLP, DSM losses, compiled Langevin
samplers and a compiled training loop. Mirror of ``torch_dsm``; imports neither torch nor
Lightning."""

from jax_dsm.data import DSMDataModule
from jax_dsm.losses import dsm_loss, ncsn_loss
from jax_dsm.models import ScoreMLP
from jax_dsm.module import DSMModule
from jax_dsm.sampling import annealed_langevin, langevin
from jax_dsm.trainer import Trainer

__all__ = ["DSMDataModule", "DSMModule", "Trainer", "ScoreMLP", "dsm_loss", "ncsn_loss", "langevin", "annealed_langevin"]
