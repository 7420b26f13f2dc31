"""The ``LightningModule``: training a score MLP with a registered objective (``model.objective``).

``dsm`` (the reference recipe, docs/method.md §1): ``s_θ(x)`` trained with ``dsm_loss`` at noise
σ, plain SGD. ``ncsn`` (docs/method.md §3): ``s_θ(x, σ)`` trained with ``ncsn_loss`` over a
geometric schedule from ``sigma_max`` (default: the largest pairwise distance in the training
data) to ``sigma_min``. The loss is looked up by name in ``torch_dsm.losses.OBJECTIVES``.

Mirror: ``jax_dsm/module.py`` (``DSMModule`` there has the same arguments; ``jax_dsm/trainer.py``
is the twin of Lightning's ``Trainer``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import SingleDeviceStrategy

from dsm_common.config import (
    DSMSettings,
    EDMSettings,
    NCSNSettings,
    SamplerConfig,
    SDESettings,
    check_hidden_dims,
    check_sampler_memory,
    resolve_methods,
    settings_record,
)
from dsm_common.logs import log_rows
from dsm_common.validation import DivergedError, DSMInputError, diverged_training_message
from torch_dsm.losses import OBJECTIVES
from torch_dsm.models import ScoreMLP

__all__ = ["DSMModule"]  # StepEMA: the average's callback (its twin: jax_dsm.module.EMATrainState)


def default_generator(device: torch.device) -> torch.Generator:
    """torch's default generator of ``device`` (what ``torch.randn`` uses when given none)."""
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


def rank_noise_seed(seed: int, rank: int) -> int:
    """The seed of DDP rank ``rank``'s noise generator for a run seeded ``seed``: 64 bits of
    ``numpy.random.SeedSequence((seed, rank))``, so no rank's stream is another seed's or rank's,
    nor the default generator's (which draws the data order)."""
    import numpy as np

    return int(np.random.SeedSequence((int(seed), int(rank))).generate_state(1, np.uint64)[0] >> 1)


def _cosine_factor(total: int, step: int) -> float:
    """``½ (1 + cos(π min(step, total) / total))``: optax's ``cosine_decay_schedule`` factor."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


_UPDATE_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def _overridden_update_hooks(trainer: L.Trainer, module: L.LightningModule) -> list[str]:
    """The hooks around a backward pass and an optimiser step (``_UPDATE_HOOKS``, and the module's
    ``backward``) that the module or one of the trainer's callbacks overrides, as ``"Class.hook"``;
    empty when Lightning's defaults are all there is."""
    found = [f"{type(module).__name__}.{h}" for h in (*_UPDATE_HOOKS, "backward")
             if getattr(type(module), h) is not getattr(L.LightningModule, h)]
    for cb in trainer.callbacks:
        found += [f"{type(cb).__name__}.{h}" for h in _UPDATE_HOOKS
                  if getattr(type(cb), h) is not getattr(L.Callback, h)]
    return found


class StepEMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging`` updated after every optimiser step, grouped mini-batches
    included.

    The average (``torch.optim.swa_utils.AveragedModel`` with ``get_ema_avg_fn``) starts as the
    weights after the first update and then follows ``ema ← d·ema + (1 − d)·θ`` after every update;
    the buffers (the noise levels) are copied, not averaged. After ``fit`` the module holds the
    average, and checkpoints hold both (``state_dict``: the average; ``current_model_state``: the
    trained weights), so a resumed run goes on with both. Lightning's callback updates once per
    Lightning step; with several mini-batches a step (``DSMDataModule.batches_per_step`` > 1,
    manual optimisation) ``DSMModule`` calls :meth:`update` after each of its optimiser steps
    instead. The JAX twin: ``jax_dsm.module.DSMModule.update_ema``.
    """

    def __init__(self, decay: float):
        super().__init__(decay=decay, use_buffers=False)
        self._trained_state: dict | None = None  # the weights as training left them (set at its end)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trained_state = None
        super().setup(trainer, pl_module, stage)

    def on_train_end(self, trainer, pl_module) -> None:
        # Kept for the checkpoint written after this hook (ModelCheckpoint's at the end of fit):
        # Lightning's callback would store the average as the trained weights too, and a run
        # resumed from it would go on from the average.
        self._trained_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._trained_state is not None and "current_model_state" in checkpoint:
            checkpoint["current_model_state"] = self._trained_state

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.automatic_optimization:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def update(self, trainer, pl_module) -> None:
        """Average in the weights of the optimiser step just taken (manual optimisation)."""
        self._average_model.update_parameters(pl_module)
        self._latest_update_step = trainer.global_step


class DSMModule(L.LightningModule):
    """Score model, DSM loss and optimiser.

    Args:
        hidden_dims: hidden widths of the score MLP (recipe: [256, 256]).
        objective: the training objective, by name (``dsm_common.registry.OBJECTIVES``): ``dsm``
            (one noise level, the recipe) or ``ncsn`` (many levels, a σ-conditional network).
        dsm: settings of ``dsm`` (``DSMSettings``: σ, recipe 3).
        ncsn: settings of ``ncsn`` (``NCSNSettings``: L, σ₁ (None: the data's largest pairwise
            distance), σ_L).
        edm: settings of ``edm`` (``EDMSettings``: σ_data, the log-normal law of σ, the range).
        sde: settings of ``sde`` (``SDESettings``: the score SDE, its t_ε, the loss's weighting).
        optimizer: ``sgd`` (recipe), ``adam`` or ``adamw`` (Adam with decoupled weight decay,
            Loshchilov & Hutter, arXiv 1711.05101: ``θ ← θ − lr·(Adam step + weight_decay·θ)``).
        lr: learning rate (recipe: 1e-5).
        reduction: ``sum`` (recipe) or ``mean`` of the per-point losses over a batch.
        sampler: sampler settings used after training (``dsm_common.config.SamplerConfig``).
        lr_schedule: ``constant`` (recipe) or ``cosine``: the rate decays from ``lr`` to 0 over
            the run's updates (a ``LambdaLR`` stepped every update; the JAX twin's
            ``optax.cosine_decay_schedule``).
        init: law of the initial weights (``dsm_common.init``): ``native`` (this framework's
            default), ``flax`` (truncated LeCun-normal kernels, zero biases: Flax's ``nn.Dense``
            default, the notebook's start) or ``torch`` (Kaiming-uniform kernels with a = √5 and
            uniform biases: ``nn.Linear``'s default). The same name gives the same law on both sides.
        ema_decay: None (no average), or the decay d of an exponential moving average of the weights
            (``StepEMA``: Lightning's ``EMAWeightAveraging``, no warm-up): the average starts as the
            weights after the first update and follows ``ema ← d·ema + (1 − d)·θ`` after every
            update; sampling, the likelihood and the weight file use it.
        weight_decay: ``adamw``'s decoupled weight decay (0: none; refused with ``sgd`` and ``adam``).

    Raises:
        DSMInputError: a non-positive σ, learning rate or L, a decay outside [0, 1), a weight decay
            without ``adamw``, or an unknown option.
    """

    def __init__(
        self,
        hidden_dims: list[int] = [256, 256],  # noqa: B006 (read-only; LightningCLI shows it)
        objective: str = "dsm",
        dsm: Optional[DSMSettings] = None,
        ncsn: Optional[NCSNSettings] = None,
        edm: Optional[EDMSettings] = None,
        sde: Optional[SDESettings] = None,
        optimizer: Literal["sgd", "adam", "adamw"] = "sgd",
        lr: float = 1e-5,
        reduction: Literal["sum", "mean"] = "sum",
        sampler: Optional[SamplerConfig] = None,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        init: Literal["native", "flax", "torch"] = "native",
        ema_decay: Optional[float] = None,
        weight_decay: float = 0.0,
    ):
        super().__init__()
        hidden_dims = check_hidden_dims(hidden_dims)
        self.methods = resolve_methods(objective, {"dsm": dsm, "ncsn": ncsn, "edm": edm, "sde": sde}, sampler, lr,
                                       optimizer, reduction, lr_schedule, init, ema_decay, weight_decay)
        check_sampler_memory(self.methods.sampler, hidden_dims)
        self.sampler = self.methods.sampler
        self.save_hyperparameters(ignore=["sampler"])
        # Plain dicts, not dataclasses, in the checkpoint: torch.load(weights_only=True) reads them.
        self.hparams.update(settings_record({"dsm": dsm, "ncsn": ncsn, "edm": edm, "sde": sde}))
        self.model = ScoreMLP(hidden_dims, conditional=self.methods.conditional, initialization=init,
                              **self.methods.network_options())  # σ_data (EDM) from the data at setup
        levels = self.methods.noise_levels()  # σ₁ from the data at setup
        self.register_buffer("sigmas", torch.tensor(levels, dtype=torch.float32))  # (L,)
        self.loss_history: list[float] = []  # mean batch loss of each finished epoch
        self._epoch_losses: list[torch.Tensor] = []  # this epoch's batch losses (detached)
        self._plain_update = False  # set in setup()
        self.ema = StepEMA(ema_decay) if ema_decay is not None else None
        self._noise_rng: torch.Generator | None = None  # DDP: this rank's noise stream (loss)
        self._ranks = 1  # processes training together (the Trainer's world size, set in setup())

    def configure_callbacks(self):
        """The weight average (``StepEMA``), when ``ema_decay`` is set."""
        return [self.ema] if self.ema is not None else []

    @property
    def conditional(self) -> bool:
        return self.methods.conditional

    def settings_record(self) -> dict[str, Any]:
        """The module's settings as JSON (for the weight file's metadata)."""
        return settings_record({**self.hparams, self.methods.objective: self.methods.settings})

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        self._ranks = self.trainer.world_size  # once, not on every step (loss)
        # Several mini-batches per Lightning step (DSMDataModule.batches_per_step > 1) need the
        # optimiser steps taken here, one per mini-batch: manual optimisation.
        self.automatic_optimization = getattr(dm, "batches_per_step", 1) == 1
        # With Lightning's own single-device strategy and 32-bit precision plugin, manual_backward
        # and LightningOptimizer.step add nothing to loss.backward() and the optimiser's own step
        # but hook calls (the backward hooks, the precision plugin's closure and every callback's
        # on_before_optimizer_step), about 40 % of a batch-8 step on a CPU: the grouped inner loop
        # calls the two directly there, unless the module or a callback overrides one of those
        # hooks. Any other strategy or precision plugin (a subclass included) keeps Lightning's calls.
        strategy = self.trainer.strategy
        self._plain_update = (
            not self.automatic_optimization
            and str(self.trainer.precision) == "32-true"
            and type(strategy) is SingleDeviceStrategy
            and type(strategy.precision_plugin) is Precision
            and not _overridden_update_hooks(self.trainer, self)
        )
        # σ₁ from the data where the settings leave it to them (arXiv 2006.09011, technique 1);
        # a resumed checkpoint overwrites it.
        if dm is not None:
            self.sigmas.copy_(torch.as_tensor(self.methods.noise_levels(dm.data.points), dtype=torch.float32))
            options = self.methods.network_options(dm.data.points)
            if options:  # EDM's preconditioning: σ_data of the training points, in the network and the loss's settings
                self.model.sigma_data = options["sigma_data"]
                # … and in the checkpoint's hyperparameters, so a checkpoint rebuilds the same network.
                name = self.methods.objective  # edm, or sde with preconditioning: edm
                self.hparams[name] = {**(self.hparams.get(name) or {}), "sigma_data": options["sigma_data"]}
                self.methods = replace(self.methods, settings=replace(self.methods.settings,
                                                                      sigma_data=options["sigma_data"]))
            if self.methods.spec.resolve:  # score SDEs: VE's σ_max from the data, t_ε filled in
                self.methods = self.methods.resolved(dm.data.points)
                self.hparams[self.methods.objective] = settings_record({"s": self.methods.settings})["s"]

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, sigma)

    def loss(self, x: torch.Tensor, global_size: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of one batch ``x`` (B, 2), noise drawn from torch's default generator
        of ``x``'s device (the stream ``seed_everything`` seeds).

        Under DDP (R processes), ``x`` is this process's slice of a global batch of
        ``global_size`` points and the noise comes from this process's own generator (seeded
        ``rank_noise_seed(torch.initial_seed(), global_rank)``: each rank its own stream). The loss is weighed so
        that DDP's average of the R gradients is the gradient of the global batch's loss: R × the
        slice's loss for ``sum``, R·B_r/B × it for ``mean``.
        """
        m = self.methods
        ranks = self._ranks
        if ranks > 1 and len(x) == 0:  # a short last batch with fewer points than ranks: no share of it
            return sum(p.sum() for p in self.model.parameters()) * 0.0  # zero gradients, for DDP's all-reduce
        rng = default_generator(x.device) if ranks == 1 else self._rank_generator(x.device)
        loss = OBJECTIVES[m.objective](self.model, x, self.sigmas, m.settings, self.hparams.reduction, rng=rng)
        if ranks == 1 or global_size is None:
            return loss
        weight = ranks if self.hparams.reduction == "sum" else ranks * len(x) / float(global_size)
        return loss * weight

    def _rank_generator(self, device: torch.device) -> torch.Generator:
        """This DDP process's noise generator, seeded ``rank_noise_seed(torch.initial_seed(), global_rank)``."""
        if self._noise_rng is None or self._noise_rng.device != device:
            self._noise_rng = torch.Generator(device).manual_seed(rank_noise_seed(torch.initial_seed(), self.global_rank))
        return self._noise_rng

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        if self.automatic_optimization:
            x, *size = batch  # (B, 2); under DDP the global batch's size too
            loss = self.loss(x, *size)
            self._accumulate(loss)
            return loss
        # batches_per_step > 1: a list of mini-batches, one SGD step each, as in a plain loop.
        opt, sched = self.optimizers(), self.lr_schedulers()
        for x, *size in batch:
            opt.zero_grad()
            loss = self.loss(x, *size)
            if self._plain_update:  # fp32, one device, no hook to call: Lightning's calls minus the hooks
                loss.backward()
                opt._on_before_step()  # Lightning's step count (trainer.global_step), as opt.step() keeps it
                opt.optimizer.step()
                opt._on_after_step()
            else:
                self.manual_backward(loss)
                opt.step()
            if sched is not None:
                sched.step()
            if self.ema is not None:
                self.ema.update(self.trainer, self)
            self._accumulate(loss)
        return None

    def _accumulate(self, loss: torch.Tensor) -> None:
        # Kept here, summed and logged once per epoch: per-step self.log costs more than the step,
        # and so does assigning a module attribute (nn.Module.__setattr__) on every step.
        self._epoch_losses.append(loss.detach())

    def on_train_epoch_start(self) -> None:
        self._epoch_losses = []

    @property
    def epoch_loss(self) -> float:
        """Mean batch loss of the epoch so far (of the epoch just finished, at its end). Under DDP
        the mean over the ranks of their weighed losses (``loss``): the global batches' loss, as
        in one process."""
        losses = self._epoch_losses
        mean = torch.stack(losses).mean() if losses else torch.zeros((), device=self.device)
        if self._ranks > 1:
            mean = self.trainer.strategy.reduce(mean, reduce_op="mean")
        return mean.item()

    def on_train_epoch_end(self) -> None:
        mean = self.epoch_loss
        if not math.isfinite(mean):
            # Raised before ModelCheckpoint's epoch-end save (a monitoring callback, called after
            # the module's hook), so the last checkpoint on disk holds finite weights.
            saved = [Path(p) for cb in self.trainer.checkpoint_callbacks for p in (cb.last_model_path, cb.best_model_path) if p]
            raise DivergedError(diverged_training_message(self.current_epoch + 1, mean, self.hparams.lr,
                                                          any(p.is_file() for p in saved)))
        self.loss_history.append(mean)
        # For callbacks (a ModelCheckpoint monitoring it) without a logger row of its own: the
        # loggers get one row an epoch with the optimiser steps as its step (Lightning's own step
        # would count grouped mini-batches as one), the format of dsm_common.logs.
        self.log("train_loss", mean, logger=False, sync_dist=self._ranks > 1)  # equal on every rank
        self._log_epochs([mean], self.current_epoch)

    def on_train_start(self) -> None:
        # A resumed run: its loggers start a fresh file, rewritten from the checkpoint's history.
        if self.loss_history and self.trainer.global_step:
            self._log_epochs(self.loss_history, 0, self.trainer.global_step // len(self.loss_history))

    def _log_epochs(self, losses, first_epoch: int, steps_per_epoch: int | None = None) -> None:
        """One logger row per epoch (``dsm_common.logs.log_rows``): epoch, step, train_loss."""
        if not self.loggers:
            return
        per_epoch = steps_per_epoch or self.trainer.global_step // (self.current_epoch + 1)
        for row in log_rows(losses, per_epoch, first_epoch):
            step = row.pop("step")
            for logger in self.loggers:
                logger.log_metrics(row, step=step)

    def configure_optimizers(self):
        h = self.hparams
        params = self.model.parameters()
        if h.optimizer == "adamw":  # torch's own default decay (0.01) is not the project's (0)
            opt = torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay)
        else:
            opt = (torch.optim.SGD if h.optimizer == "sgd" else torch.optim.Adam)(params, lr=h.lr)
        if self.hparams.lr_schedule == "constant":
            return opt
        # Cosine decay to 0 over the run's updates (optimiser steps): max_epochs × ⌈N / B⌉.
        dm = self.trainer.datamodule
        epochs = self.trainer.max_epochs
        if not epochs or epochs < 1:
            raise DSMInputError("model.lr_schedule=cosine needs a finite trainer.max_epochs")
        total = epochs * -(-len(dm.data) // dm.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(_cosine_factor, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["loss_history"] = list(self.loss_history)
        checkpoint["sampler"] = self.sampler.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.loss_history = list(checkpoint.get("loss_history", []))
