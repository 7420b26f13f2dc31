"""``dsm-jax``: fit with the same YAML as ``dsm-torch fit``, and sample from saved weights.

    dsm-jax fit --config configs/seed.yaml [--trainer.max_epochs=5] [--data.dataset=old_faithful]
    dsm-jax fit --config configs/seed.yaml --ckpt_path last         # resume an interrupted run
    dsm-jax sample --weights runs/seed/weights.safetensors [--sampler.n_chains=1000] [--out DIR]

``fit`` (``train`` is an alias) writes into ``trainer.default_root_dir`` the same files as the torch side:
``weights.safetensors``, ``samples.npy``, ``metrics.json``, PNG figures and
``checkpoints/last.msgpack``. Mirror: ``torch_dsm/cli.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from dsm_common.runs import (
    check_run_dir,
    cli_errors,
    per_level_noise,
    report_generated,
    run_samplers,
    sample_command,
    summary_line,
    weights_config,
)
from jax_dsm.data import DSMDataModule
from jax_dsm.losses import per_level_loss
from jax_dsm.models import ScoreMLP
from jax_dsm.module import DSMModule
from jax_dsm.sampling import annealed_langevin, langevin
from jax_dsm.trainer import Trainer
from jax_dsm.weights import load_weights, save_weights

PROG = "dsm-jax"


def _at_sigma(score_fn, sigma, x):
    return score_fn(x, jnp.full(x.shape[:1], sigma, x.dtype))


class JaxSamplers:
    """``dsm_common.runs.Samplers`` for a Flax score model (numpy in, numpy out)."""

    def __init__(self, model: ScoreMLP, variables, sigmas: np.ndarray, progress: bool = True):
        self.model, self.variables = model, variables
        self.sigmas = jnp.asarray(np.asarray(sigmas), jnp.float32)
        self.progress = progress

    def plain(self, x0, step_size, n_steps, keep_every, seed, sigma):
        if sigma is None:
            fn = Partial(self.model.apply, self.variables)
        else:
            # The model's Partial as an argument: its parameters stay traced leaves (a bound
            # ``apply`` passed as an argument is no array, and jit refuses it).
            fn = Partial(_at_sigma, Partial(self.model.apply, self.variables), jnp.float32(sigma))
        x, kept = langevin(fn, jnp.asarray(x0), step_size, n_steps, rng=jax.random.PRNGKey(seed),
                           keep_every=keep_every, progress=self.progress)
        return np.asarray(x), None if kept is None else np.asarray(kept)

    def annealed(self, x0, step_size, n_steps_each, keep_every, denoise, seed):
        x, kept = annealed_langevin(
            Partial(self.model.apply, self.variables), jnp.asarray(x0), self.sigmas, step_size, n_steps_each,
            rng=jax.random.PRNGKey(seed), denoise=denoise, keep_every=keep_every, progress=self.progress,
        )
        return np.asarray(x), None if kept is None else np.asarray(kept)


def score_at(model: ScoreMLP, variables, sigma: float | None):
    """numpy score function (n, 2) → (n, 2) at noise level ``sigma`` (conditional models)."""
    apply = jax.jit(model.apply)

    def call(x: np.ndarray) -> np.ndarray:
        x = jnp.asarray(np.asarray(x, np.float32))
        level = None if sigma is None else jnp.full(x.shape[:1], sigma, jnp.float32)
        return np.asarray(apply(variables, x, level))

    return call


def finish_run(run_dir, model: ScoreMLP, variables, sigmas: np.ndarray, model_settings: dict, data_settings: dict,
               dataset, sampler, info: dict, loss_history=(), progress: bool = True) -> dict:
    """Save weights (when training), sample, and write the run's files; return the metrics."""
    conditional = model.conditional
    if info.get("epochs") is not None and "weights_from" not in info:
        save_weights(Path(run_dir) / "weights.safetensors", variables,
                     weights_config("jax", model_settings, sigmas, data_settings, sampler, info["epochs"]))
    gen = run_samplers(sampler, sigmas, conditional, JaxSamplers(model, variables, sigmas, progress))
    per_level = None
    if conditional:
        noise = jnp.asarray(per_level_noise(len(sigmas), len(dataset.points)))
        losses = per_level_loss(Partial(model.apply, variables), jnp.asarray(dataset.points),
                                jnp.asarray(sigmas, jnp.float32), noise=noise)
        per_level = {"sigma": [float(s) for s in sigmas], "loss": np.asarray(losses).tolist()}
    return report_generated(run_dir, "jax", dataset, gen, sigmas, conditional,
                            score_at(model, variables, float(sigmas[-1]) if conditional else None), info,
                            loss_history, per_level)


def fit_parser():
    """The ``dsm-jax fit`` parser: the keys of LightningCLI's YAML that both sides share."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=f"{PROG} fit", description="Train a score model with JAX/Flax/Optax.")
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file (same format as dsm-torch fit)")
    parser.add_argument("--seed_everything", type=Union[bool, int], default=0, help="seed of the training keys")
    parser.add_argument("--ckpt_path", type=Optional[str], default=None, help='"last" or a checkpoint file to resume')
    parser.add_class_arguments(Trainer, "trainer")
    parser.add_class_arguments(DSMModule, "model")
    parser.add_class_arguments(DSMDataModule, "data")
    return parser


def fit_main(argv: list[str]) -> dict:
    """``dsm-jax fit``: train, sample, write the run's files."""
    parser = fit_parser()
    cfg = parser.parse_args(argv)
    init = parser.instantiate(cfg) if hasattr(parser, "instantiate") else parser.instantiate_classes(cfg)
    trainer, module, dm = init.trainer, init.model, init.data
    seed = int(cfg.seed_everything) if not isinstance(cfg.seed_everything, bool) else 0
    run_dir = check_run_dir(trainer.default_root_dir, "jax")
    run_dir.mkdir(parents=True, exist_ok=True)
    parser.save(cfg, run_dir / "config.yaml", overwrite=True, skip_validation=True)

    t0 = time.perf_counter()
    state = trainer.fit(module, dm, seed=seed, ckpt_path=cfg.ckpt_path)
    jax.block_until_ready(state.params)
    info = {
        "epochs": trainer.current_epoch,
        "steps": int(state.step),
        "train_seconds": time.perf_counter() - t0,
        "seed": seed,
    }
    metrics = finish_run(run_dir, module.model, {"params": state.params}, module.sigmas, module.hparams,
                         dm.hparams, dm.data, module.sampler, info, trainer.loss_history)
    print(f"run directory: {run_dir.resolve()}")
    print(summary_line(metrics))
    return metrics


def sample_main(argv: list[str]) -> dict:
    """``dsm-jax sample``: sample from saved weights (written by either framework)."""

    def load(path):
        model, variables, stored = load_weights(path)
        return (model, variables), stored

    return sample_command(
        PROG, argv, load,
        lambda out, mv, sigmas, stored, ds, cfg, info: finish_run(
            out, mv[0], mv[1], sigmas, stored.get("model", {}), stored.get("data", {}), ds, cfg, info),
    )


COMMANDS = {"fit": fit_main, "train": fit_main, "sample": sample_main}  # train: an alias of fit


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dsm-jax``: ``fit`` (alias ``train``) or ``sample``, as ``dsm-torch``."""
    words = sys.argv[1:] if argv is None else argv
    if not words or words[0] not in COMMANDS:
        print(f"usage: {PROG} {{fit,sample}} [--help] ...  (train: an alias of fit)", file=sys.stderr)
        raise SystemExit(2)
    run = COMMANDS[words[0]]
    cli_errors(PROG, lambda: run(words[1:]))


if __name__ == "__main__":
    main()
