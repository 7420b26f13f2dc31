"""Full training runs in each framework from the same initial weights, with each side's own RNG.

Torch: ``lightning.Trainer.fit`` of ``torch_dsm.module.DSMModule`` on ``torch_dsm.data.DSMDataModule``
(the recipe: seed-mixture data, batch 8 reshuffled every epoch, plain SGD lr 1e-5, DSM sum loss
with σ = 3); the order of the batches and the DSM noise come from torch's global stream, seeded
per run. JAX: ``jax_dsm.train.Trainer.fit`` of ``jax_dsm.train.DSMModule`` (its compiled loop),
seeded per run, with the module's initial state given the same canonical weights.

A run is summarised by :func:`run_statistics`: the final loss (mean of the last epochs' losses)
and statistics of samples drawn from the trained score with the same framework's native
Langevin sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import torch

import jax_dsm.weights as jw
import torch_dsm.weights as tw
from dsm_common.metrics import fisher_divergence
from dsm_common.mixtures import GaussianMixture
from parity_tests.compare import quiet_lightning
from parity_tests.devices import Device
from parity_tests.native import jax_langevin, jax_score, torch_langevin, torch_score

__all__ = ["TrainRun", "train_lightning", "train_jax", "run_statistics", "numpy_mlp", "STATISTICS"]


@dataclass
class TrainRun:
    framework: str
    seed: int
    params: dict[str, np.ndarray]  # canonical layout
    losses: np.ndarray  # (epochs,) mean batch loss of each epoch


def train_lightning(init: dict, seed: int, epochs: int, dev: Device, root: Path, lr: float = 1e-5) -> TrainRun:
    """The recipe with Lightning for ``epochs`` epochs from canonical ``init``; torch seeded with ``seed``.

    ``lr`` other than the recipe's 1e-5 is for the negative control only."""
    import lightning as L

    from torch_dsm.data import DSMDataModule
    from torch_dsm.module import DSMModule

    torch.manual_seed(seed)  # the batch order (RandomSampler) and the DSM noise use torch's global stream
    dm = DSMDataModule(dataset="seed_mixture", batch_size=8, seed=0, shuffle=True)
    module = DSMModule(hidden_dims=[256, 256], sigma=3.0, lr=lr, reduction="sum")
    tw.from_canonical(init, module.model)
    with quiet_lightning():
        trainer = L.Trainer(max_epochs=epochs, accelerator=dev.lightning_accelerator, devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=str(root))
        trainer.fit(module, dm)
    return TrainRun("torch", seed, tw.to_canonical(module.model.cpu()), np.asarray(module.loss_history))


def train_jax(init: dict, seed: int, epochs: int, dev: Device, root: Path, lr: float = 1e-5) -> TrainRun:
    """The recipe with jax_dsm's Trainer for ``epochs`` epochs from canonical ``init``, ``fit(seed=seed)``.

    ``lr`` other than the recipe's 1e-5 is for the negative control only."""
    from jax_dsm.data import DSMDataModule
    from jax_dsm.train import DSMModule, Trainer

    with jax.default_device(dev.jax):
        dm = DSMDataModule(dataset="seed_mixture", batch_size=8, seed=0, shuffle=True)
        module = DSMModule(hidden_dims=[256, 256], sigma=3.0, lr=lr, reduction="sum")
        _, variables = jw.from_canonical(init)
        fresh_state = module.init_state
        module.init_state = lambda key: fresh_state(key).replace(params=variables["params"])  # the shared start
        trainer = Trainer(max_epochs=epochs, default_root_dir=str(root), enable_progress_bar=False)
        state = trainer.fit(module, dm, seed=seed)
    return TrainRun("jax", seed, jw.to_canonical({"params": state.params}), np.asarray(trainer.loss_history))


STATISTICS = ("final loss", "Fisher divergence", "mode 2 weight", "gap mass")


def numpy_mlp(params: dict[str, np.ndarray]):
    """The canonical MLP as a float64 numpy function (x (n, 2) → (n, 2)); unconditional only."""
    n = len(params) // 2

    def f(x):
        h = np.asarray(x, np.float64)
        for i in range(n):
            h = h @ params[f"dense_{i}.kernel"].astype(np.float64) + params[f"dense_{i}.bias"]
            if i < n - 1:
                h = np.maximum(h, 0.0)
        return h

    return f


def run_statistics(run: TrainRun, target: GaussianMixture, dev: Device, n_chains: int, step_size: float,
                   n_steps: int, last_epochs: int, sample_seed: int) -> dict[str, float]:
    """Final loss (mean of the last ``last_epochs`` epoch losses), the relative Fisher divergence
    to the exact score of ``target`` (4000 fixed draws, SPEC §5), and statistics of ``n_chains``
    samples from the trained score (``n_steps`` Langevin steps of ``step_size`` from N(0, I),
    with the run's own framework and RNG). Mode weights are assigned by ``target``."""
    if run.framework == "torch":
        x = torch_langevin(torch_score(dev, params=run.params), n_chains, step_size, n_steps, sample_seed, dev)
    else:
        x = jax_langevin(jax_score(dev, params=run.params), n_chains, step_size, n_steps, sample_seed, dev)
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise AssertionError(f"{run.framework} run {run.seed}: samples diverged")
    assigned = target.assign(x)
    return {
        "final loss": float(np.mean(run.losses[-last_epochs:])),
        "Fisher divergence": fisher_divergence(numpy_mlp(run.params), target, 4000, np.random.default_rng(7)),
        "mode 2 weight": float(np.mean(assigned == 1)),
        "gap mass": float(np.mean(np.abs(x[:, 0]) < 5.0)),
    }
