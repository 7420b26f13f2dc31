"""Full training runs in each framework, with each side's own random streams.

Torch: ``lightning.Trainer.fit`` of ``torch_dsm.module.DSMModule`` on ``torch_dsm.data.DSMDataModule``;
the initial weights (when drawn), the order of the batches and the DSM noise come from torch's
global stream, seeded per run. JAX: ``jax_dsm.trainer.Trainer.fit`` of ``jax_dsm.module.DSMModule``
(its compiled loop), ``fit(seed=seed)``. A run is set up from a configuration file read by both
command lines (``configs/seed.yaml``, the recipe: seed-mixture data, batch 8 reshuffled every
epoch, plain SGD lr 1e-5, DSM sum loss with σ = 3; ``configs/ncsn.yaml``), and starts either from
given canonical weights (the same on both sides) or from weights each side draws itself with a
``model.init`` law (``dsm_common.init``).

A run is summarised by :func:`run_statistics`: the final loss (mean of the last epochs' losses)
and statistics of samples drawn from the trained score with the same framework's native sampler
(Langevin for a single-scale model, annealed Langevin for a multi-scale one).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np
import torch
import yaml

import jax_dsm.weights as jw
import torch_dsm.weights as tw
from dsm_common.metrics import fisher_divergence
from dsm_common.mixtures import GaussianMixture, seed_mixture
from dsm_common.testing import numpy_mlp
from parity_tests.compare import quiet_lightning
from parity_tests.devices import Device
from parity_tests.native import jax_annealed, jax_langevin, jax_score, torch_annealed, torch_langevin, torch_score

__all__ = ["TrainRun", "load_config", "fit_lightning", "fit_jax", "train_lightning", "train_jax", "run_statistics",
           "annealed_statistics", "STATISTICS"]

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def load_config(name: str, **overrides: Any) -> dict[str, Any]:
    """``configs/NAME.yaml`` as a dict, with ``section.key=value`` overrides (e.g. ``model.lr``)."""
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        cfg.setdefault(section, {})[key] = value
    return cfg


def _model_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg["model"].items() if k != "sampler"}


@dataclass
class TrainRun:
    framework: str
    seed: int
    params: dict[str, np.ndarray]  # canonical layout
    losses: np.ndarray  # (epochs,) mean batch loss of each epoch
    sigmas: np.ndarray  # (L,) the model's noise levels, largest first
    sampler: dict[str, Any]  # the configuration's model.sampler section

    @property
    def conditional(self) -> bool:
        return len(self.sigmas) > 1


def fit_lightning(cfg: dict[str, Any], seed: int, dev: Device, root: Path, init: dict | None = None) -> TrainRun:
    """Train with Lightning as configured by ``cfg`` (``load_config``), torch seeded with ``seed``.

    ``init``: canonical weights to start from; None: drawn with ``cfg["model"]["init"]``'s law
    from torch's stream right after ``torch.manual_seed(seed)``."""
    import lightning as L

    from torch_dsm.cli import data_defaults
    from torch_dsm.data import DSMDataModule
    from torch_dsm.module import DSMModule

    torch.manual_seed(seed)  # initial weights, the batch order (RandomSampler) and the DSM noise
    module = DSMModule(**_model_kwargs(cfg))
    dm = DSMDataModule(**{**data_defaults(), **cfg["data"]})  # as dsm-torch fit runs it
    if init is not None:
        tw.from_canonical(init, module.model)
    with quiet_lightning():
        trainer = L.Trainer(max_epochs=cfg["trainer"]["max_epochs"], accelerator=dev.lightning_accelerator, devices=1,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=str(root))
        trainer.fit(module, dm)
    return TrainRun("torch", seed, tw.to_canonical(module.model.cpu()), np.asarray(module.loss_history),
                    module.sigmas.cpu().numpy().astype(np.float64), cfg["model"].get("sampler", {}))


def fit_jax(cfg: dict[str, Any], seed: int, dev: Device, root: Path, init: dict | None = None) -> TrainRun:
    """Train with jax_dsm's Trainer as configured by ``cfg``, ``fit(seed=seed)``.

    ``init``: canonical weights to start from; None: drawn with ``cfg["model"]["init"]``'s law
    from the run's initialisation key."""
    from jax_dsm.data import DSMDataModule
    from jax_dsm.module import DSMModule
    from jax_dsm.trainer import Trainer

    with jax.default_device(dev.jax):
        dm = DSMDataModule(**cfg["data"])
        module = DSMModule(**_model_kwargs(cfg))
        params = None if init is None else jw.from_canonical(init)[1]["params"]
        trainer = Trainer(max_epochs=cfg["trainer"]["max_epochs"], default_root_dir=str(root), enable_progress_bar=False)
        state = trainer.fit(module, dm, seed=seed, params=params)
    return TrainRun("jax", seed, jw.to_canonical({"params": state.params}), np.asarray(trainer.loss_history),
                    np.asarray(module.sigmas, np.float64), cfg["model"].get("sampler", {}))


def train_lightning(init: dict, seed: int, epochs: int, dev: Device, root: Path, lr: float = 1e-5) -> TrainRun:
    """The recipe (``configs/seed.yaml``) with Lightning for ``epochs`` epochs from canonical ``init``.

    ``lr`` other than the recipe's 1e-5 is for the negative control only."""
    return fit_lightning(load_config("seed", **{"trainer.max_epochs": epochs, "model.lr": lr}), seed, dev, root, init)


def train_jax(init: dict, seed: int, epochs: int, dev: Device, root: Path, lr: float = 1e-5) -> TrainRun:
    """The recipe with jax_dsm's Trainer for ``epochs`` epochs from canonical ``init``, ``fit(seed=seed)``.

    ``lr`` other than the recipe's 1e-5 is for the negative control only."""
    return fit_jax(load_config("seed", **{"trainer.max_epochs": epochs, "model.lr": lr}), seed, dev, root, init)


STATISTICS = ("final loss", "Fisher divergence", "mode 2 weight", "gap mass")


def _sample_statistics(run: TrainRun, x: np.ndarray, target: GaussianMixture, score, last_epochs: int) -> dict:
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise AssertionError(f"{run.framework} run {run.seed}: samples diverged")
    assigned = target.assign(x)
    return {
        "final loss": float(np.mean(run.losses[-last_epochs:])),
        "Fisher divergence": fisher_divergence(score, target, 4000, np.random.default_rng(7)),
        "mode 2 weight": float(np.mean(assigned == 1)),
        "gap mass": float(np.mean(np.abs(x[:, 0]) < 5.0)),
    }


def run_statistics(run: TrainRun, target: GaussianMixture, dev: Device, n_chains: int, step_size: float,
                   n_steps: int, last_epochs: int, sample_seed: int) -> dict[str, float]:
    """Final loss (mean of the last ``last_epochs`` epoch losses), the relative Fisher divergence
    to the exact score of ``target`` (4000 fixed draws, ``docs/method.md``), and statistics of
    ``n_chains`` samples from the trained score (``n_steps`` Langevin steps of ``step_size`` from
    N(0, I), with the run's own framework and RNG). Mode weights are assigned by ``target``."""
    if run.framework == "torch":
        x = torch_langevin(torch_score(dev, params=run.params), n_chains, step_size, n_steps, sample_seed, dev)
    else:
        x = jax_langevin(jax_score(dev, params=run.params), n_chains, step_size, n_steps, sample_seed, dev)
    return _sample_statistics(run, x, target, partial(numpy_mlp, run.params), last_epochs)


def annealed_statistics(run: TrainRun, dev: Device, n_chains: int, last_epochs: int, sample_seed: int) -> dict[str, float]:
    """:func:`run_statistics` of a multi-scale run: ``n_chains`` samples of annealed Langevin with
    the configuration's sampler (ε, T steps a level, uniform start on ±init_scale, final
    denoising), the run's own framework and RNG; the Fisher divergence at σ_L against the seed
    mixture convolved with σ_L; modes assigned by the seed mixture."""
    cfg = run.sampler
    if cfg.get("init", "normal") != "uniform":
        raise ValueError("annealed_statistics draws a uniform start (the NCSN configurations')")
    annealed = cfg["annealed_langevin"]
    args = (n_chains, run.sigmas, annealed["step_size"], annealed["n_steps_each"], cfg.get("init_scale", 1.0),
            annealed.get("denoise", True), sample_seed, dev)
    if run.framework == "torch":
        x = torch_annealed(torch_score(dev, params=run.params), *args)
    else:
        x = jax_annealed(jax_score(dev, params=run.params), *args)
    sigma_l = float(run.sigmas[-1])
    score = partial(numpy_mlp, run.params, sigma=sigma_l)
    return _sample_statistics(run, x, seed_mixture().convolve(sigma_l), score, last_epochs)
