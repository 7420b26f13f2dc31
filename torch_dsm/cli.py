"""``dsm-torch``: LightningCLI for training, and a ``sample`` command for saved weights.

    dsm-torch fit --config configs/seed.yaml [--trainer.max_epochs=5] [--data.dataset=old_faithful]
    dsm-torch fit --config configs/seed.yaml --ckpt_path last        # resume an interrupted fit
    dsm-torch sample --weights runs/seed/weights.safetensors [--sampler.n_chains=1000] [--out DIR]

``fit`` trains, then samples with ``model.sampler`` and writes into ``trainer.default_root_dir``:
``weights.safetensors``, ``samples.npy``, ``metrics.json``, PNG figures and
``checkpoints/last.ckpt``. Mirror: ``jax_dsm/cli.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

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
from dsm_common.validation import DSMInputError
from torch_dsm.data import DSMDataModule
from torch_dsm.losses import per_level_loss
from torch_dsm.models import ScoreMLP
from torch_dsm.module import DSMModule
from torch_dsm.sampling import annealed_langevin, langevin
from torch_dsm.weights import load_weights, save_weights

PROG = "dsm-torch"


class TorchSamplers:
    """``dsm_common.runs.Samplers`` for a torch score model (numpy in, numpy out)."""

    def __init__(self, model: ScoreMLP, sigmas: np.ndarray, progress: bool = True):
        self.model = model.eval()
        self.sigmas = torch.as_tensor(np.asarray(sigmas), dtype=torch.float32)
        self.progress = progress

    def plain(self, x0, step_size, n_steps, keep_every, seed, sigma):
        gen = torch.Generator().manual_seed(seed)
        x0 = torch.from_numpy(x0)
        if sigma is None:
            fn = self.model
        else:
            level = torch.full((x0.shape[0],), sigma)
            fn = lambda x: self.model(x, level)  # noqa: E731
        x, kept = langevin(fn, x0, step_size, n_steps, keep_every=keep_every, rng=gen, progress=self.progress)
        return x.numpy(), None if kept is None else kept.numpy()

    def annealed(self, x0, step_size, n_steps_each, keep_every, denoise, seed):
        gen = torch.Generator().manual_seed(seed)
        x, kept = annealed_langevin(
            self.model, torch.from_numpy(x0), self.sigmas, step_size, n_steps_each, denoise=denoise,
            keep_every=keep_every, rng=gen, progress=self.progress,
        )
        return x.numpy(), None if kept is None else kept.numpy()


def score_at(model: ScoreMLP, sigma: float | None):
    """numpy score function (n, 2) → (n, 2) at noise level ``sigma`` (conditional models)."""

    @torch.inference_mode()
    def fn(x: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(x, np.float32))
        return model(t, None if sigma is None else torch.full((t.shape[0],), sigma)).numpy()

    return fn


def finish_run(run_dir, model: ScoreMLP, sigmas: np.ndarray, model_settings: dict, data_settings: dict,
               dataset, sampler, info: dict, loss_history=(), progress: bool = True) -> dict:
    """Save weights (when training), sample, and write the run's files; return the metrics."""
    model = model.eval()
    conditional = model.conditional
    if info.get("epochs") is not None and "weights_from" not in info:
        save_weights(Path(run_dir) / "weights.safetensors", model,
                     weights_config("torch", model_settings, sigmas, data_settings, sampler, info["epochs"]))
    gen = run_samplers(sampler, sigmas, conditional, TorchSamplers(model, sigmas, progress))
    per_level = None
    if conditional:
        pts = torch.from_numpy(dataset.points)
        noise = torch.from_numpy(per_level_noise(len(sigmas), len(pts)))
        losses = per_level_loss(model, pts, torch.as_tensor(sigmas, dtype=torch.float32), noise=noise)
        per_level = {"sigma": [float(s) for s in sigmas], "loss": losses.tolist()}
    return report_generated(run_dir, "torch", dataset, gen, sigmas, conditional,
                            score_at(model, float(sigmas[-1]) if conditional else None), info,
                            loss_history, per_level)


class DSMLightningCLI(LightningCLI):
    """LightningCLI that checkpoints into ``default_root_dir/checkpoints`` and reports after fit."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({f"data.{k}": v for k, v in data_defaults().items()})

    def before_fit(self) -> None:
        check_run_dir(self.trainer.default_root_dir, "torch")
        # Lightning only warns and trains from scratch when "last" finds nothing; say so instead
        # (the JAX twin's Trainer.fit does the same).
        ckpt = self.config.fit.get("ckpt_path")
        if ckpt == "last":
            # Where ModelCheckpoint writes: its own dirpath if one was given, else default_root_dir/checkpoints.
            dirs = [cb.dirpath for cb in self.trainer.checkpoint_callbacks if cb.dirpath]
            lasts = [Path(d) / "last.ckpt" for d in dirs or [Path(self.trainer.default_root_dir) / "checkpoints"]]
            if not any(p.is_file() for p in lasts):
                raise DSMInputError(f"checkpoint not found: {lasts[0]} (nothing to resume; drop --ckpt_path to start afresh)")
        elif ckpt not in (None, "best", "hpc", "registry") and "://" not in str(ckpt) and not Path(ckpt).is_file():
            raise DSMInputError(f"checkpoint not found: {ckpt}")
        self._fit_start = time.perf_counter()

    def after_fit(self) -> None:
        trainer, module, dm = self.trainer, self.model, self.datamodule
        if trainer.interrupted or not trainer.is_global_zero:
            return
        run_dir = Path(trainer.default_root_dir)
        h = module.hparams
        info = {
            "epochs": int(trainer.current_epoch),
            "steps": int(trainer.global_step),
            "train_seconds": time.perf_counter() - self._fit_start,
            "seed": self.config.fit.get("seed_everything"),
        }
        model_settings = {k: (list(v) if k == "hidden_dims" else v) for k, v in h.items()}
        metrics = finish_run(run_dir, module.model, module.sigmas.cpu().numpy(), model_settings,
                             dict(dm.hparams), dm.data, module.sampler, info, module.loss_history)
        print(f"run directory: {run_dir.resolve()}")
        print(summary_line(metrics))


def trainer_defaults() -> dict:
    """The Trainer settings ``dsm-torch fit`` starts from (YAML and flags override them)."""
    return {
        "logger": False,
        "callbacks": [ModelCheckpoint(save_last=True, every_n_epochs=10, enable_version_counter=False)],
        "enable_model_summary": False,
    }


def data_defaults() -> dict:
    """The DSMDataModule settings ``dsm-torch fit`` starts from, beyond the class's own.

    Up to 64 mini-batches (a whole epoch of the seed recipe) in one Lightning step: the same SGD
    updates in the same order (manual optimisation, tested), with the Trainer's fixed per-step cost
    (hooks, progress bar, checkpoint checks: more than a batch-8 step on a CPU) paid once per
    64 updates. ``--data.batches_per_step=1`` gives Lightning's usual one batch per step (needed
    for ``--trainer.gradient_clip_val`` or ``--trainer.accumulate_grad_batches``).
    """
    return {"batches_per_step": 64}


def _make_cli(args=None) -> DSMLightningCLI:
    return DSMLightningCLI(
        DSMModule,
        DSMDataModule,
        args=args,
        trainer_defaults=trainer_defaults(),
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": PROG},
    )


def sample_main(argv: list[str]) -> dict:
    """``dsm-torch sample``: sample from saved weights (written by either framework)."""
    return sample_command(
        PROG, argv, load_weights,
        lambda out, model, sigmas, stored, ds, cfg, info: finish_run(
            out, model, sigmas, stored.get("model", {}), stored.get("data", {}), ds, cfg, info),
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dsm-torch``; ``argv`` defaults to the command line."""
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] == "sample":
        cli_errors(PROG, lambda: sample_main(words[1:]))
    else:
        cli_errors(PROG, lambda: _make_cli(argv))


if __name__ == "__main__":
    main()
