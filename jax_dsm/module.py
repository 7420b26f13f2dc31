"""The JAX twin of the ``LightningModule``: ``DSMModule`` (score model, DSM loss, Optax optimiser).

Mirror: ``torch_dsm/module.py`` (the ``DSMModule`` there takes the same arguments). ``dsm`` (the
reference recipe, docs/method.md §1): ``s_θ(x)`` trained with ``dsm_loss`` at noise σ, plain SGD.
``ncsn`` (docs/method.md §3): ``s_θ(x, σ)`` trained with ``ncsn_loss`` over a geometric schedule.
The loss is looked up by name in ``jax_dsm.losses.OBJECTIVES``; ``jax_dsm/trainer.py`` runs it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any, Literal, Optional

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

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
from dsm_common.datasets import Dataset2D
from jax_dsm.losses import OBJECTIVES
from jax_dsm.models import ScoreMLP

__all__ = ["DSMModule"]  # EMATrainState: the average's state (its twin: torch_dsm.module.StepEMA)


class EMATrainState(TrainState):
    """Flax's ``TrainState`` with ``ema_params``, the moving average of ``params``
    (``DSMModule.update_ema``); the twin of the torch side's ``StepEMA`` callback."""

    ema_params: Any = None


class DSMModule:
    """Score model, DSM loss and Optax optimiser (the JAX twin of the LightningModule).

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
            the run's updates (``optax.cosine_decay_schedule``; the torch twin's LambdaLR).
        init: law of the initial weights (``dsm_common.init``): ``native`` (this framework's
            default), ``flax`` (truncated LeCun-normal kernels, zero biases: Flax's ``nn.Dense``
            default, the notebook's start) or ``torch`` (Kaiming-uniform kernels with a = √5 and
            uniform biases: ``nn.Linear``'s default). The same name gives the same law on both sides.
        ema_decay: None (no average), or the decay d of an exponential moving average of the weights
            (``update_ema``: ``optax.incremental_update``, no warm-up): the average starts as the
            weights after the first update and follows ``ema ← d·ema + (1 − d)·θ`` after every
            update; sampling, the likelihood and the weight file use it (Lightning's
            ``EMAWeightAveraging`` on the torch side, the same convention).
        weight_decay: ``adamw``'s decoupled weight decay (0: none; refused with ``sgd`` and ``adam``).

    Raises:
        DSMInputError: a non-positive σ, learning rate or L, a decay outside [0, 1), a weight decay
            without ``adamw``, or an unknown option.
    """

    def __init__(
        self,
        hidden_dims: list[int] = [256, 256],  # noqa: B006 (read-only; the CLI shows it)
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
        hidden_dims = check_hidden_dims(hidden_dims)
        self.methods = resolve_methods(objective, {"dsm": dsm, "ncsn": ncsn, "edm": edm, "sde": sde}, sampler, lr,
                                       optimizer, reduction, lr_schedule, init, ema_decay, weight_decay)
        check_sampler_memory(self.methods.sampler, hidden_dims)
        self.hparams = dict(hidden_dims=list(hidden_dims), objective=objective, dsm=dsm, ncsn=ncsn, edm=edm, sde=sde,
                            optimizer=optimizer, lr=lr, reduction=reduction, lr_schedule=lr_schedule, init=init,
                            ema_decay=ema_decay, weight_decay=weight_decay)
        self.sampler = self.methods.sampler
        self.model = ScoreMLP(tuple(hidden_dims), conditional=self.methods.conditional, initialization=init,
                              **self.methods.network_options())  # σ_data (EDM) from the data at setup
        # A cosine schedule needs the run's length: setup(data, total_steps) builds its optimiser.
        self.tx = self.make_tx() if lr_schedule == "constant" else None
        self.sigmas = self.methods.noise_levels()  # (L,); σ₁ from the data at setup

    @property
    def conditional(self) -> bool:
        return self.methods.conditional

    def settings_record(self) -> dict[str, Any]:
        """The module's settings as JSON (for the weight file's metadata)."""
        return settings_record({**self.hparams, self.methods.objective: self.methods.settings})

    def setup(self, data: Dataset2D, total_steps: int | None = None) -> None:
        """Fix the noise levels: σ₁ from the data when not given (arXiv 2006.09011, technique 1).

        ``total_steps``: the run's number of updates; ``lr_schedule="cosine"`` builds its optimiser
        from it here (the Trainer passes max_epochs × steps per epoch).
        """
        h = self.hparams
        self.sigmas = self.methods.noise_levels(data.points)
        options = self.methods.network_options(data.points)  # EDM: σ_data of the training points
        if options:  # in the network and the loss's settings
            self.model = self.model.clone(**options)
            self.methods = replace(self.methods, settings=replace(self.methods.settings, sigma_data=options["sigma_data"]))
        self.methods = self.methods.resolved(data.points)  # score SDEs: VE's σ_max from the data, t_ε filled in
        if h["lr_schedule"] != "constant":
            self.tx = self.make_tx(total_steps)

    def make_tx(self, total_steps: int | None = None) -> optax.GradientTransformation:
        """The Optax optimiser; ``lr_schedule="cosine"`` decays the rate to 0 over ``total_steps``."""
        h = self.hparams
        lr = h["lr"]
        if h["lr_schedule"] == "cosine":
            if total_steps is None:
                raise ValueError("a cosine learning-rate schedule needs the run's total number of updates")
            lr = optax.cosine_decay_schedule(h["lr"], max(int(total_steps), 1))
        if h["optimizer"] == "adamw":  # optax's own default decay (1e-4) is not the project's (0)
            return optax.adamw(lr, weight_decay=h["weight_decay"])
        return optax.sgd(lr) if h["optimizer"] == "sgd" else optax.adam(lr)

    def init_state(self, key: jax.Array, params=None) -> TrainState:
        """The optimiser state around initial parameters.

        Args:
            key: the initialisation key; the parameters are drawn from it with ``model.init``'s law.
            params: initial Flax ``params`` to start from instead (e.g. weights shared with the
                torch side); ``key`` is then unused.
        """
        if self.tx is None:
            raise ValueError("lr_schedule=cosine: call setup(data, total_steps) before init_state")
        # jit: one compilation for the parameters and the optimiser state, instead of one per
        # eager op (fresh process: ≈ 0.7 s against ≈ 1.4 s eagerly).
        return jax.jit(self._init_state)(key, params)

    def _init_state(self, key: jax.Array, params=None) -> TrainState:
        if params is None:
            x = jnp.zeros((1, 2), jnp.float32)
            params = self.model.init(key, x, jnp.ones((1,)) if self.conditional else None)["params"]
        if self.hparams["ema_decay"] is not None:
            state = EMATrainState.create(apply_fn=self.model.apply, params=params, tx=self.tx, ema_params=params)
        else:
            state = TrainState.create(apply_fn=self.model.apply, params=params, tx=self.tx)
        # step as an int32 array, as the compiled chunk returns it: a Python int would make the
        # second chunk's call signature differ from the first's and compile the loop twice.
        return state.replace(step=jnp.asarray(state.step, jnp.int32))

    def update_ema(self, state: TrainState) -> TrainState:
        """``state`` after an update, its average taken one step further (``ema_decay`` set; else
        ``state`` unchanged): after the first update ``ema = θ``, after later ones
        ``ema ← d·ema + (1 − d)·θ`` (``optax.incremental_update`` with step size 1 − d).
        Traceable: the trainer calls it inside its compiled loop after every ``apply_gradients``."""
        decay = self.hparams["ema_decay"]
        if decay is None:
            return state
        step_size = jnp.where(state.step == 1, 1.0, 1.0 - decay)  # the first update copies the weights
        return state.replace(ema_params=optax.incremental_update(state.params, state.ema_params, step_size))

    def loss(self, params, x: jnp.ndarray, key: jax.Array, mask: jnp.ndarray | None, sigmas: jnp.ndarray) -> jnp.ndarray:
        """Training loss of one (padded) batch ``x`` (B, 2); ``mask`` (B,) marks real points."""
        score = partial(self.model.apply, {"params": params})
        m = self.methods
        return OBJECTIVES[m.objective](score, x, sigmas, m.settings, self.hparams["reduction"], mask, rng=key)
