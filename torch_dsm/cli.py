"""``dsm-torch``: LightningCLI for training, and a ``sample`` command for saved weights.

    dsm-torch fit --config configs/seed.yaml [--trainer.max_epochs=5] [--data.dataset=old_faithful]
    dsm-torch fit --config configs/seed.yaml --ckpt_path last        # resume an interrupted fit
    dsm-torch sample --weights runs/seed/weights.safetensors [--sampler.n_chains=1000] [--out DIR]

``fit`` trains, then samples with ``model.sampler`` and writes into ``trainer.default_root_dir``:
``weights.safetensors``, ``samples.npy``, ``metrics.json``, PNG figures and
``checkpoints/last.ckpt``. Mirror: ``jax_dsm/cli.py``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger
from tqdm.auto import tqdm

from dsm_common.commands import (
    FIT_INTERRUPTED,
    SAMPLE_INTERRUPTED,
    OneLineErrors,
    check_legacy_options,
    check_resume,
    check_run_dir,
    cli_errors,
    sample_command,
    stored_sigmas,
    summary_line,
)
from dsm_common.config import network_scale, per_level_inputs, sde_end_time
from dsm_common.files import run_phase, write_text_atomic
from dsm_common.finish import finish_run, follow_run, rademacher_probe
from dsm_common.logs import LOG_DIR
from dsm_common.registry import SAMPLERS as SAMPLER_SPECS
from dsm_common.validation import DSMInputError, check_positive_int
from dsm_common.weights import stored_sde
from torch_dsm.data import DSMDataModule, rank_slice
from torch_dsm.losses import per_level_loss
from torch_dsm.models import ScoreMLP
from torch_dsm.module import DSMModule, rank_noise_seed
from torch_dsm.sampling import SAMPLERS
from torch_dsm.weights import load_weights, save_weights

PROG = "dsm-torch"

DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice at start-up: OMP_NUM_THREADS, else the cores
# Below this many rows a matmul (batch size, chain count), one intra-op thread is faster than all
# cores on a quiet machine and far faster on a busy one (scripts/benchmark.py --only threads).
SMALL_WORK = 1000


def choose_threads(rows: int, requested: int | None = None) -> int:
    """torch's intra-op thread count for work of ``rows`` rows a matmul (the batch size when
    training, the chain count when sampling).

    ``requested`` (``--torch_threads``) wins; then a set ``OMP_NUM_THREADS`` (torch's default,
    ``DEFAULT_THREADS``, already follows it); otherwise one thread below ``SMALL_WORK`` rows, where
    the threads' hand-offs cost more than the arithmetic they share, and torch's default above.
    """
    if requested is not None:
        return check_positive_int("torch_threads", requested)
    if os.environ.get("OMP_NUM_THREADS"):
        return DEFAULT_THREADS
    return 1 if rows < SMALL_WORK else DEFAULT_THREADS


class TorchBackend:
    """``dsm_common.generate.Backend`` for a torch ``ScoreMLP`` (numpy in, numpy out). Mirror:
    ``jax_dsm.cli.JaxBackend``."""

    framework = "torch"

    def __init__(self, model: ScoreMLP, sigmas: np.ndarray, progress: bool = True, threads: int | None = None,
                 sde: dict | None = None, world_size: int = 1):
        # world_size > 1 (every rank of a DDP run, the process group up): each rank runs its
        # slice of the chains (and of the likelihood's points) when their number is a multiple of
        # it, with its own noise, and all get the whole result back in order (``splits``); every
        # rank must make the same sample and likelihood calls (``follow_run``).
        self.world_size = world_size
        self.rank = torch.distributed.get_rank() if world_size > 1 else 0
        self.model = model.cpu().eval()
        self.threads = threads  # --torch_threads; None: choose_threads picks by the chain count
        self.conditional = model.conditional
        self.preconditioning = (None if model.preconditioning == "none"
                                else {"name": model.preconditioning, "sigma_data": float(model.sigma_data)})
        self.sigmas = np.asarray(sigmas, np.float64)
        self._sigmas = torch.as_tensor(self.sigmas, dtype=torch.float32)  # (L,)
        self.progress = progress
        self.sde = sde  # a score-SDE model's SDE (SDESettings.description), else None
        self.last_nfe: int | None = None

    def _score(self):
        """The network as ``(x, σ (n,)) → score``, the form every registered sampler takes."""
        return self.model if self.conditional else (lambda x, sigma: self.model(x))

    def splits(self, n: int, name: str | None = None, settings=None) -> bool:
        """Whether ``n`` chains split across the ranks: a multiple of their number, and chains
        that do not interact (the PC sampler's Langevin corrector takes its step from the batch's
        mean norms, so its chains run whole, with the same noise, on every rank)."""
        coupled = name == "pc" and settings.corrector == "langevin"
        return self.world_size > 1 and n % self.world_size == 0 and not coupled

    def rank_rows(self, n: int) -> list[int]:
        """This rank's consecutive rows of ``n`` (``rank_slice``)."""
        return rank_slice(list(range(n)), self.world_size, self.rank)

    def gather(self, x: np.ndarray, axis: int = 0) -> np.ndarray:
        """Every rank's ``x`` joined along ``axis`` in rank order, on every rank (the twin of
        ``JaxBackend.gather``)."""
        parts = [None] * self.world_size
        torch.distributed.all_gather_object(parts, x)
        return np.concatenate(parts, axis=axis)

    def sample(self, name, x0, settings, keep_every, seed):
        split = self.splits(len(x0), name, settings)
        if split:  # this rank's chains, its own noise stream (rank_noise_seed, as in training)
            x0, seed = x0[self.rank_rows(len(x0))], rank_noise_seed(seed, self.rank)
        torch.set_num_threads(choose_threads(len(x0), self.threads))
        extra = {"sde": self.sde} if SAMPLER_SPECS[name].conditioning == "sde" else {}
        x, kept, *nfe = SAMPLERS[name](self._score(), torch.from_numpy(x0), self._sigmas, settings, keep_every,
                                       self.progress, rng=torch.Generator().manual_seed(seed), **extra)
        x, kept, nfe = x.numpy(), None if kept is None else kept.numpy(), int(nfe[0]) if nfe else None
        if split:  # an adaptive solver's NFE: the most any rank's solve took
            x = self.gather(x)
            kept = None if kept is None else self.gather(kept, axis=1)
            nfe = None if nfe is None else int(self.gather(np.array([nfe])).max())
        self.last_nfe = nfe
        return x, kept

    def likelihood(self, points, settings, seed):
        from torch_dsm.sde_lib import get_sde, likelihood, time_score

        points = np.asarray(points, np.float32)
        probe = rademacher_probe(len(points), seed) if settings.hutchinson else None
        split = self.splits(len(points))
        if split:
            rows = self.rank_rows(len(points))
            points, probe = points[rows], None if probe is None else probe[rows]
        torch.set_num_threads(choose_threads(len(points), self.threads))
        sde = get_sde(self.sde)
        log_p, _, nfe = likelihood(sde, time_score(self.model, sde, self.sde.get("unscaled", False)), torch.from_numpy(points),
                                   settings.solver, settings.num_steps, settings.rtol, settings.atol,
                                   sde_end_time(settings, self.sde), probe=None if probe is None else torch.from_numpy(probe))
        log_p = log_p.numpy().astype(np.float64)
        if split:  # NFE: the most any rank's solve took
            return self.gather(log_p), int(self.gather(np.array([int(nfe)])).max())
        return log_p, nfe

    def score_at(self, sigma):
        scale, level = network_scale(self.sde, sigma)  # an unscaled SDE network: s_θ(x/α, σ/α)/α

        @torch.inference_mode()
        def fn(x: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.asarray(x, np.float32) / np.float32(scale))
            out = self.model(t, torch.full((t.shape[0],), level) if self.conditional else None).numpy()
            return out / np.float32(scale)

        return fn

    def per_level_loss(self, points, noise):
        levels, alphas = per_level_inputs(self.sde, self.sigmas)
        return per_level_loss(self.model, torch.from_numpy(points), torch.as_tensor(levels, dtype=torch.float32),
                              noise=torch.from_numpy(noise),
                              alphas=None if alphas is None else torch.as_tensor(alphas, dtype=torch.float32)).numpy()

    def save_weights(self, path, config):
        save_weights(path, self.model, config)


SAMPLE_EPILOG = ("other command: dsm-torch sample --weights FILE [--out DIR] [--sampler.…]: sample from saved "
                 "weights of either framework (dsm-torch sample --help)")


class DSMLightningCLI(LightningCLI):
    """LightningCLI that checkpoints into ``default_root_dir/checkpoints`` and reports after fit.

    Only ``fit`` is offered (with ``sample`` beside it, ``main``): the project has no validation,
    test or prediction loops for LightningCLI's other subcommands to run."""

    held_info: HeldInfo | None = None  # set by main() for the command line's run

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"}}

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({f"data.{k}": v for k, v in data_defaults().items()})
        parser.add_argument("--overwrite", type=bool, default=False, help="replace a finished run in trainer.default_root_dir")
        parser.add_argument("--torch_threads", type=Optional[int], default=None,
                            help="torch's intra-op threads (default: 1 for batches and chain counts below "
                                 f"{SMALL_WORK}, else torch's own choice; OMP_NUM_THREADS is honoured)")
        parser.add_argument("--quiet", type=bool, default=False,
                            help="print warnings and errors only: no progress bars, start-up lines or summary")

    @property
    def quiet(self) -> bool:
        return bool(self.config.get(self.subcommand, self.config).get("quiet"))

    def _instantiate_trainer(self, config, callbacks):
        """LightningCLI's Trainer, with :class:`EpochProgressBar` unless the progress bar is off
        (or ``--quiet``) or another one is given, and with ``trainer.logger=true`` (the default)
        meaning a ``CSVLogger`` writing ``logs/metrics.csv`` into the run folder
        (``dsm_common.logs``; ``false``: no log; a logger class: that one)."""
        config = dict(config)
        # A resumed run's log folder holds the old log, which Lightning deletes and warns about;
        # the module rewrites it from the checkpoint's history (DSMModule.on_train_start).
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        # Lightning's own use of a torch API that recent torch deprecates: nothing a user can act on.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        if self.quiet:
            config["enable_progress_bar"] = False
        config, callbacks = run_logger_and_bar(config, callbacks)
        trainer = super()._instantiate_trainer(config, callbacks)
        # Checkpoints stay in default_root_dir/checkpoints: with a logger, Lightning would put them
        # in the logger's folder.
        for cb in trainer.checkpoint_callbacks:
            if cb.dirpath is None:
                cb.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        return trainer

    def _parse_ckpt_path(self) -> None:
        """Not done: the settings are the command line's and the YAML's, as on the JAX side.
        LightningCLI would load ``--ckpt_path`` here, at parse time, to take its hyperparameters
        (a corrupt file ends in a traceback there); ``before_fit`` checks the file instead and
        refuses one of another architecture in one line before anything is written."""

    def before_fit(self) -> None:
        # Lightning reads -1 as "forever" and 0 as "no training"; both sides take epochs ≥ 1.
        check_positive_int("trainer.max_epochs", self.trainer.max_epochs)
        ckpt = self.config.fit.get("ckpt_path")
        self._threads = self.config.fit.get("torch_threads")
        torch.set_num_threads(choose_threads(self.datamodule.batch_size, self._threads))
        if self.trainer.is_global_zero:  # under DDP, the first process checks and writes
            self._check_run(ckpt)
        if self.held_info is not None:  # the checks passed: Lightning's start-up lines may now be shown
            self.held_info.close(release=not self.quiet)
        if self.quiet:
            for name in HeldInfo.LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        self._fit_start = time.perf_counter()

    def _check_run(self, ckpt) -> None:
        """The run folder and ``--ckpt_path``, checked before anything is written."""
        check_run_dir(self.trainer.default_root_dir, "torch", bool(self.config.fit.get("overwrite")), ckpt is not None)
        # Lightning only warns and trains from scratch when "last" finds nothing; say so instead
        # (the JAX twin's Trainer.fit does the same).
        if ckpt == "last":
            # Where ModelCheckpoint writes: its own dirpath if one was given, else default_root_dir/checkpoints.
            dirs = [cb.dirpath for cb in self.trainer.checkpoint_callbacks if cb.dirpath]
            lasts = [Path(d) / "last.ckpt" for d in dirs or [Path(self.trainer.default_root_dir) / "checkpoints"]]
            if not any(p.is_file() for p in lasts):
                raise DSMInputError(f"checkpoint not found: {lasts[0]} (nothing to resume; drop --ckpt_path to start afresh)")
            check_checkpoint(next(p for p in lasts if p.is_file()), self.model, self.trainer.max_epochs)
        elif ckpt not in (None, "best", "hpc", "registry") and "://" not in str(ckpt):
            if Path(ckpt).is_dir():
                raise DSMInputError(f"--ckpt_path {ckpt} is a folder, not a checkpoint file")
            if not Path(ckpt).is_file():
                raise DSMInputError(f"checkpoint not found: {ckpt}")
            check_checkpoint(Path(ckpt), self.model, self.trainer.max_epochs)

    def fit(self, model, **kwargs) -> None:
        """``Trainer.fit``, with the run directory marked ``running``/``training`` meanwhile
        (``dsm_common.files``); Lightning's own Ctrl-C handling (shutdown, then exit status 1)
        comes back as the KeyboardInterrupt both command lines answer alike."""
        if not self.trainer.is_global_zero:  # another DDP process: it trains; the first one writes
            self.trainer.fit(model, **kwargs)
            return
        with run_phase(self.trainer.default_root_dir, "training", framework="torch", command="fit"):
            try:
                self.trainer.fit(model, **kwargs)
            except SystemExit:
                if self.trainer.interrupted:
                    raise KeyboardInterrupt from None
                raise

    def after_fit(self) -> None:
        trainer, module, dm = self.trainer, self.model, self.datamodule
        if trainer.interrupted:
            return
        world = trainer.world_size if torch.distributed.is_available() and torch.distributed.is_initialized() else 1
        if not trainer.is_global_zero:  # another DDP process: it samples its chains; the first one writes
            backend = TorchBackend(module.model, module.sigmas.cpu().numpy(), progress=False, threads=self._threads,
                                   sde=module.methods.sde(), world_size=world)
            try:
                follow_run(backend, module.methods.sampler_name, dm.data, module.sampler)
            finally:
                torch.distributed.barrier()  # until the first process has written the run's files
            return
        run_dir = Path(trainer.default_root_dir)
        info = {
            "epochs": int(trainer.current_epoch),
            "steps": int(trainer.global_step),
            "train_seconds": time.perf_counter() - self._fit_start,
            "seed": self.config.fit.get("seed_everything"),
        }
        backend = TorchBackend(module.model, module.sigmas.cpu().numpy(), progress=not self.quiet, threads=self._threads,
                               sde=module.methods.sde(), world_size=world)
        try:
            metrics = finish_run(run_dir, backend, module.methods.sampler_name, module.settings_record(),
                                 dict(dm.hparams), dm.data, module.sampler, info, module.loss_history)
        finally:
            if world > 1:
                torch.distributed.barrier()
        if not self.quiet:
            print(f"run directory: {run_dir.resolve()}")
            print(summary_line(metrics))


class EpochProgressBar(ProgressBar):
    """One tqdm bar over epochs, like the JAX side's: epochs done of ``trainer.max_epochs``, the
    optimiser steps so far and the mean loss of the epoch just finished (the one ``metrics.json``
    reports). True with grouped mini-batches, where Lightning's own bar counts one step an epoch."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self.bar = None

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def on_train_start(self, trainer, pl_module) -> None:
        self.bar = tqdm(total=trainer.max_epochs, initial=trainer.current_epoch, desc="train", unit="epoch",
                        disable=not self._enabled or not trainer.is_global_zero)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.bar is not None:  # called before the module's own hook: the epoch's loss from its running sum
            self.bar.set_postfix(loss=f"{pl_module.epoch_loss:.4g}", steps=trainer.global_step, refresh=False)
            self.bar.update(1)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    on_exception = on_train_end


class HeldInfo(logging.Filter):
    """Holds Lightning's INFO lines (seed, accelerators, tips) while the command line is built and
    checked, and lets them through once the run starts, so that bad input is answered by one line."""

    LOGGERS = ("lightning.pytorch", "lightning.fabric")

    def __init__(self):
        super().__init__()
        self.held: list[logging.LogRecord] = []
        self.handlers = [h for name in self.LOGGERS for h in logging.getLogger(name).handlers]
        for handler in self.handlers:
            handler.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if record not in self.held:  # one record reaches each handler
            self.held.append(record)
        return False

    def close(self, release: bool) -> None:
        """Stop holding; print the held lines when ``release`` (the run starts), else drop them."""
        for handler in self.handlers:
            handler.removeFilter(self)
        if release:
            for record in self.held:
                logging.getLogger(record.name).handle(record)
        self.held = []


def check_checkpoint(path: Path, module: DSMModule, max_epochs: int) -> None:
    """Refuse, before anything is written, a file that is not a Lightning checkpoint of a
    ``DSMModule`` or whose network has other layer widths than ``module``'s, or that has trained
    more epochs than ``max_epochs`` (``trainer.max_epochs``). Mirror: ``jax_dsm.cli.check_checkpoint``.

    Raises:
        DSMInputError: naming the file, and the widths (or epochs) found and expected.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = ckpt["state_dict"]
        n = len([k for k in state if k.startswith("model.dense.") and k.endswith(".weight")])
        found = [int(state["model.dense.0.weight"].shape[1])] + [int(state[f"model.dense.{i}.weight"].shape[0])
                                                                 for i in range(n)]
        # Epochs trained: the fit loop's processed count ("epoch" is the finished epoch's index when the
        # checkpoint is written at an epoch's end, and the count when written at the end of training).
        done = int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
        ema = ckpt.get("hyper_parameters", {}).get("ema_decay")
    except Exception as err:  # torch.load raises many types for a file that is not a checkpoint
        reason = str(err).splitlines()[0] if str(err).strip() else ""
        raise DSMInputError(f"{path}: not a checkpoint of this project's model ({type(err).__name__}"
                            f"{': ' + reason if reason else ''})") from None
    expected = [module.model.dim + int(module.model.conditional), *module.model.hidden_dims, module.model.dim]
    check_resume(path, found, done, expected, max_epochs, ema, module.hparams.ema_decay)


def run_logger_and_bar(config: dict, callbacks: list) -> tuple[dict, list]:
    """The Trainer settings ``config`` (a copy) and extra ``callbacks`` as ``dsm-torch fit`` hands them
    to Lightning: ``logger=True`` (the default) becomes a ``CSVLogger`` writing ``logs/metrics.csv``
    into the run folder (``dsm_common.logs``), and :class:`EpochProgressBar` is added unless the
    progress bar is off or another one is given."""
    config = dict(config)
    if config.get("logger", True) is True:
        root = config.get("default_root_dir") or os.getcwd()
        config["logger"] = CSVLogger(save_dir=root, name=LOG_DIR, version="", flush_logs_every_n_steps=1)
    if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in [*callbacks, *(config.get("callbacks") or [])]):
        callbacks = [*callbacks, EpochProgressBar()]
    return config, callbacks


def trainer_defaults() -> dict:
    """The Trainer settings ``dsm-torch fit`` starts from (YAML and flags override them)."""
    return {
        "logger": True,  # a CSVLogger into the run folder (DSMLightningCLI._instantiate_trainer)
        "log_every_n_steps": 1,  # nothing is logged per step; the loss is logged once an epoch
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


class AtomicSaveConfig(SaveConfigCallback):
    """LightningCLI's ``config.yaml``, written atomically into ``trainer.default_root_dir``."""

    def save_config(self, trainer, pl_module, stage) -> None:
        if trainer.is_global_zero:
            write_text_atomic(Path(trainer.default_root_dir) / self.config_filename,
                              self.parser.dump(self.config, skip_none=False))


class DSMArgumentParser(OneLineErrors, LightningArgumentParser):
    """LightningCLI's parser, refusing abbreviations and reporting a parse error in one line."""


def _make_cli(args=None) -> DSMLightningCLI:
    return DSMLightningCLI(
        DSMModule,
        DSMDataModule,
        args=args,
        trainer_defaults=trainer_defaults(),
        save_config_callback=AtomicSaveConfig,
        save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
        parser_class=DSMArgumentParser,
        parser_kwargs={"prog": PROG, "epilog": SAMPLE_EPILOG},
    )


def load_backend(path: str) -> tuple[TorchBackend, dict]:
    """A weight file (either framework's) as a ``TorchBackend`` and its stored settings."""
    model, stored = load_weights(path)
    return TorchBackend(model, stored_sigmas(stored), sde=stored_sde(stored, path)), stored


def sample_main(argv: list[str]) -> dict:
    """``dsm-torch sample``: sample from saved weights (written by either framework)."""
    return sample_command(PROG, argv, load_backend)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dsm-torch``; ``argv`` defaults to the command line."""
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] == "sample":
        cli_errors(PROG, lambda: sample_main(words[1:]), SAMPLE_INTERRUPTED)
    else:
        cli_errors(PROG, lambda: check_legacy_options(words))
        DSMLightningCLI.held_info = held = HeldInfo()
        try:
            cli_errors(PROG, lambda: _make_cli(argv), FIT_INTERRUPTED)
        finally:
            held.close(release=False)  # an error before the run started: its line alone
            DSMLightningCLI.held_info = None


if __name__ == "__main__":
    main()
