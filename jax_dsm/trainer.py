"""Training in JAX: a ``Trainer`` for ``jax_dsm.module.DSMModule``, the twin of Lightning's ``Trainer``.

Speed by construction: a chunk of epochs is one ``jit``-compiled
``lax.scan`` over epochs of ``lax.scan`` over batches, with an on-device permutation each epoch;
every chunk of a run has the same length, so the loop is compiled once per run shape. Keys are
split before use and each is consumed once. After every chunk the progress bar advances and the
full training state (parameters, optimiser state, key, epoch, loss history) is written to
``default_root_dir/checkpoints/last.msgpack``; ``ckpt_path="last"`` resumes from it exactly.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from flax.training.train_state import TrainState
from jax import lax
from tqdm.auto import tqdm

from dsm_common.files import atomic_path
from dsm_common.logs import EpochCSVLog, log_rows
from dsm_common.validation import DivergedError, DSMInputError, check_positive_int, diverged_training_message
from jax_dsm.data import DSMDataModule, epoch_batches
from jax_dsm.module import DSMModule
from jax_dsm.sampling import chunk_length

__all__ = ["Trainer", "make_train_chunk"]


def make_train_chunk(module: DSMModule, n: int, batch_size: int, shuffle: bool = True):
    """The compiled training loop: ``train_chunk(state, key, points, sigmas, n_epochs)``.

    Returns a jitted function that runs ``n_epochs`` (static) epochs as a ``lax.scan`` over
    epochs of a ``lax.scan`` over batches and returns ``(state, epoch_losses (n_epochs,))``,
    each epoch loss being the mean of its batch losses.
    """

    def train_epoch(state: TrainState, key, points, sigmas):
        k_perm, k_steps = jax.random.split(key)
        idx, mask = epoch_batches(k_perm if shuffle else None, n, batch_size)  # (steps, B) each
        step_keys = jax.random.split(k_steps, idx.shape[0])

        def step(state, batch):
            i, m, k = batch
            loss, grads = jax.value_and_grad(module.loss)(state.params, points[i], k, m, sigmas)
            return module.update_ema(state.apply_gradients(grads=grads)), loss

        state, losses = lax.scan(step, state, (idx, mask, step_keys))
        return state, losses.mean()

    @partial(jax.jit, static_argnames="n_epochs")
    def train_chunk(state, key, points, sigmas, n_epochs: int):
        keys = jax.random.split(key, n_epochs)
        return lax.scan(lambda s, k: train_epoch(s, k, points, sigmas), state, keys)

    return train_chunk


class Trainer:
    """Runs ``DSMModule`` training on a ``DSMDataModule`` (the JAX twin of Lightning's Trainer).

    Args:
        max_epochs: epochs in all (recipe: 1000).
        default_root_dir: run folder; checkpoints go to its ``checkpoints/last.msgpack``.
        enable_progress_bar: show a tqdm bar (with the loss), advanced between compiled chunks.
        logger: write the per-epoch loss to ``logs/metrics.csv`` in ``default_root_dir``, in the
            format of the torch side's Lightning ``CSVLogger`` (``dsm_common.logs``); rewritten
            from the checkpoint's history on resume, then extended after every chunk.
        epochs_per_chunk: epochs per compiled call; None picks the largest divisor of the
            remaining epochs giving at least 20 chunks (so all chunks share one compiled loop).
    """

    def __init__(
        self,
        max_epochs: int = 1000,
        default_root_dir: str = "runs/jax",
        enable_progress_bar: bool = True,
        epochs_per_chunk: Optional[int] = None,
        logger: bool = True,
    ):
        self.max_epochs = check_positive_int("trainer.max_epochs", max_epochs)
        if epochs_per_chunk is not None:
            check_positive_int("trainer.epochs_per_chunk", epochs_per_chunk)
        self.default_root_dir = default_root_dir
        self.enable_progress_bar = enable_progress_bar
        self.epochs_per_chunk = epochs_per_chunk
        self.logger = logger
        self.current_epoch = 0
        self.loss_history: list[float] = []
        self.train_chunk = None  # the compiled loop of the last fit (inspectable in tests)
        self._chunk: int | None = None  # epochs per chunk of the current fit (kept in checkpoints)
        self._ema_decay: float | None = None  # model.ema_decay of the current fit (kept in checkpoints)

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.default_root_dir) / "checkpoints" / "last.msgpack"

    def _save(self, state: TrainState, key: jax.Array, sigmas: np.ndarray) -> None:
        payload = {
            "state": serialization.to_state_dict(state),
            "key": np.asarray(key),
            "epoch": self.current_epoch,
            "loss_history": np.asarray(self.loss_history, np.float64),
            "sigmas": np.asarray(sigmas, np.float64),
            "epochs_per_chunk": self._chunk,
            "ema_decay": self._ema_decay,  # None: no average (what the resume check compares)
        }
        with atomic_path(self.checkpoint_path) as tmp:  # an interrupted write never leaves a broken checkpoint
            tmp.write_bytes(serialization.msgpack_serialize(jax.device_get(payload)))

    def _restore(self, ckpt_path: str, state: TrainState) -> tuple[TrainState, jax.Array, np.ndarray]:
        path = self.checkpoint_path if ckpt_path == "last" else Path(ckpt_path)
        if not path.is_file():
            hint = " (nothing to resume; drop --ckpt_path to start afresh)" if ckpt_path == "last" else ""
            raise DSMInputError(f"checkpoint not found: {path}{hint}")  # the torch side's words
        try:
            payload = serialization.msgpack_restore(path.read_bytes())
            state = serialization.from_state_dict(state, payload["state"])
            state = jax.tree_util.tree_map(jnp.asarray, state)  # numpy leaves → arrays: no recompilation
        except (ValueError, KeyError) as err:
            raise DSMInputError(f"{path}: not a checkpoint of this model ({err})") from None
        self.current_epoch = int(payload["epoch"])
        self.loss_history = [float(v) for v in np.atleast_1d(payload["loss_history"])]
        self._chunk = int(payload["epochs_per_chunk"]) if "epochs_per_chunk" in payload else None
        return state, jnp.asarray(payload["key"]), np.asarray(payload["sigmas"])

    def fit(self, module: DSMModule, datamodule: DSMDataModule, seed: int = 0, ckpt_path: str | None = None,
            params=None) -> TrainState:
        """Train; return the final ``TrainState``. Resumes from ``ckpt_path`` (``"last"`` or a file).
        With ``model.ema_decay`` set, the returned state's ``params`` are the weights' average.

        Keys: ``PRNGKey(seed)`` splits into the initialisation key and the training key; each
        chunk splits the training key into the next training key and the chunk's key.
        ``params``: initial Flax ``params`` instead of a draw from the initialisation key (the
        training key is the same either way); what torch users do by loading weights into the
        module before ``Trainer.fit``.
        """
        module.setup(datamodule.data, total_steps=self.max_epochs * datamodule.steps_per_epoch)
        init_key, key = jax.random.split(jax.random.PRNGKey(seed))
        state = module.init_state(init_key, params)
        self.current_epoch, self.loss_history, self._chunk = 0, [], None
        self._ema_decay = module.hparams["ema_decay"]
        if ckpt_path is not None:
            state, key, module.sigmas = self._restore(ckpt_path, state)
        remaining = self.max_epochs - self.current_epoch
        # A resumed run keeps the interrupted run's chunks (chunk keys follow them), so it ends
        # exactly where the uninterrupted run would.
        chunk = self.epochs_per_chunk or self._chunk or chunk_length(max(remaining, 1), 0, 20)
        self._chunk = chunk
        self.train_chunk = make_train_chunk(module, len(datamodule.data), datamodule.batch_size,
                                            datamodule.hparams["shuffle"])
        sigmas = jnp.asarray(module.sigmas, jnp.float32)
        log = EpochCSVLog(self.default_root_dir) if self.logger else None
        if log is not None:
            log.restart(log_rows(self.loss_history, datamodule.steps_per_epoch))
        with tqdm(total=self.max_epochs, initial=self.current_epoch, desc="train", unit="epoch",
                  disable=not self.enable_progress_bar) as bar:
            while self.current_epoch < self.max_epochs:
                n_epochs = min(chunk, self.max_epochs - self.current_epoch)
                key, chunk_key = jax.random.split(key)
                state, losses = self.train_chunk(state, chunk_key, datamodule.points, sigmas, n_epochs)
                losses = np.asarray(losses)  # waits for the chunk
                if not np.all(np.isfinite(losses)):  # before saving: the checkpoint on disk stays finite
                    bad = int(np.argmin(np.isfinite(losses)))
                    raise DivergedError(diverged_training_message(self.current_epoch + bad + 1, float(losses[bad]),
                                                                  module.hparams["lr"], self.checkpoint_path.is_file()))
                if log is not None:
                    log.append(log_rows(losses, datamodule.steps_per_epoch, self.current_epoch))
                self.loss_history.extend(float(v) for v in losses)
                self.current_epoch += n_epochs
                self._save(state, key, module.sigmas)
                bar.set_postfix(loss=f"{losses[-1]:.4g}", steps=self.current_epoch * datamodule.steps_per_epoch,
                                refresh=False)  # as the torch side's bar (torch_dsm.cli.EpochProgressBar)
                bar.update(n_epochs)
        if module.hparams["ema_decay"] is not None:
            # As Lightning's EMAWeightAveraging at the end of fit: the trained model is the average
            # (the checkpoint keeps both).
            state = state.replace(params=state.ema_params)
        return state
