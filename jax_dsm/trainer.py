"""Training in JAX: a ``Trainer`` for ``jax_dsm.module.DSMModule``, the twin of Lightning's ``Trainer``.

Speed by construction: a chunk of epochs is one ``jit``-compiled
``lax.scan`` over epochs of ``lax.scan`` over batches, with an on-device permutation each epoch;
every chunk of a run has the same length, so the loop is compiled once per run shape. Keys are
split before use and each is consumed once. After every chunk the progress bar advances and the
full training state (parameters, optimiser state, key, epoch, loss history) is written to
``default_root_dir/checkpoints/last.msgpack``; ``ckpt_path="last"`` resumes from it exactly.

Data parallel (``devices`` × ``num_nodes`` > 1; docs/scale.md): a one-axis ``jax.sharding.Mesh``
over the devices, the parameters, optimiser state and points replicated on it, each batch split
along it (``with_sharding_constraint``), the gradient's mean over the batch an all-reduce that
XLA inserts. The noise is drawn inside the compiled step from the same keys as on one device;
with JAX's partitionable Threefry (``jax_threefry_partitionable``, the default) every device
computes its rows of the very draws one device would, so a run on N devices computes what the
run on one device computes, up to the order of the gradient's sums. Several processes
(``num_nodes`` > 1) join through ``jax.distributed.initialize``; only the first writes files.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from flax.training.train_state import TrainState
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from dsm_common.files import atomic_path
from dsm_common.logs import EpochCSVLog, log_rows
from dsm_common.validation import DivergedError, DSMInputError, check_positive_int, diverged_training_message
from jax_dsm.data import DSMDataModule, epoch_batches
from jax_dsm.module import DSMModule
from jax_dsm.sampling import chunk_length

__all__ = ["Trainer", "make_train_chunk", "start_processes", "device_mesh", "replicate", "shard_rows",
           "first_process_says", "wait_for_all"]

DATA_AXIS = "data"  # the mesh's one axis: batches and chains are split along it


def start_processes(num_nodes: int) -> None:
    """Join a multi-process run (``num_nodes`` > 1) through ``jax.distributed.initialize``; a
    no-op for one process or when already joined. Call it before any JAX computation.

    The coordinator's ``host:port`` comes from ``JAX_COORDINATOR_ADDRESS`` and this process's
    index from ``JAX_PROCESS_ID``; where they are unset, JAX's cluster detection (SLURM, Open MPI,
    Kubernetes, Cloud TPU) supplies them. On a CPU the processes' collectives run over gloo.

    Raises:
        DSMInputError: the processes cannot be joined (no coordinator, a bad process index).
    """
    num_nodes = check_positive_int("trainer.num_nodes", num_nodes)
    if num_nodes == 1 or jax.distributed.is_initialized():
        return
    process_id = os.environ.get("JAX_PROCESS_ID")
    if process_id is not None and not (process_id.isdigit() and int(process_id) < num_nodes):
        raise DSMInputError(f"JAX_PROCESS_ID must be an integer from 0 to {num_nodes - 1} "
                            f"(trainer.num_nodes={num_nodes}), got {process_id!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices' cross-process collectives
    try:
        jax.distributed.initialize(num_processes=num_nodes,
                                   process_id=None if process_id is None else int(process_id))
    except (ValueError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DSMInputError(f"trainer.num_nodes={num_nodes}: cannot join the other processes ({reason}); set "
                            "JAX_COORDINATOR_ADDRESS=host:port and JAX_PROCESS_ID on every process") from None


def device_mesh(devices: int, num_nodes: int | None = 1) -> Mesh | None:
    """The one-axis mesh (axis ``"data"``) over the first ``devices`` local devices of each of
    the ``num_nodes`` processes, in process order (``num_nodes`` None: of this process alone);
    None for a single device.

    Raises:
        DSMInputError: fewer local devices than ``devices``, or another process count than
            ``num_nodes``.
    """
    if num_nodes is not None and jax.process_count() != num_nodes:
        raise DSMInputError(f"trainer.num_nodes={num_nodes} but this run has {jax.process_count()} JAX "
                            "process(es); start one process per node (docs/scale.md)")
    local = jax.local_devices()
    if len(local) < devices:
        hint = (f"; on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count={devices} gives it {devices}"
                if local[0].platform == "cpu" else "")
        raise DSMInputError(f"trainer.devices={devices} but this process has {len(local)} JAX "
                            f"{local[0].platform} device(s){hint}")
    if num_nodes is None:
        chosen = local[:devices]
    else:
        chosen = [d for p in range(jax.process_count()) for d in jax.local_devices(process_index=p)[:devices]]
    return Mesh(np.array(chosen), (DATA_AXIS,)) if len(chosen) > 1 else None


def first_process_says(flag: bool) -> bool:
    """The first process's ``flag``, on every process of a multi-process run (each must call it)."""
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def wait_for_all(name: str) -> None:
    """A barrier of all the run's processes (each must call it with the same ``name``)."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def replicate(tree, mesh: Mesh | None):
    """``tree``'s arrays placed whole on every device of ``mesh`` (unchanged for None)."""
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, P()))


def shard_rows(x, mesh: Mesh | None):
    """``x`` (n, …) split by rows across ``mesh``'s devices when n is a multiple of their number
    (else, or for None, unchanged): how the samplers' chains are spread. Values are unchanged."""
    if mesh is None or np.shape(x)[0] % mesh.size:
        return x
    return jax.device_put(x, NamedSharding(mesh, P(DATA_AXIS)))


def make_train_chunk(module: DSMModule, n: int, batch_size: int, shuffle: bool = True, mesh: Mesh | None = None):
    """The compiled training loop: ``train_chunk(state, key, points, sigmas, n_epochs)``.

    Returns a jitted function that runs ``n_epochs`` (static) epochs as a ``lax.scan`` over
    epochs of a ``lax.scan`` over batches and returns ``(state, epoch_losses (n_epochs,))``,
    each epoch loss being the mean of its batch losses. ``mesh``: each batch (B must be a
    multiple of the mesh's size) is split across its devices; ``state``, ``points`` and
    ``sigmas`` should be replicated on it (``replicate``).
    """
    rows = None if mesh is None else NamedSharding(mesh, P(DATA_AXIS))

    def train_epoch(state: TrainState, key, points, sigmas):
        k_perm, k_steps = jax.random.split(key)
        idx, mask = epoch_batches(k_perm if shuffle else None, n, batch_size)  # (steps, B) each
        step_keys = jax.random.split(k_steps, idx.shape[0])

        def step(state, batch):
            i, m, k = batch
            x = points[i]  # (B, 2)
            if rows is not None:  # data parallel: B/N rows on each device
                x, m = lax.with_sharding_constraint(x, rows), lax.with_sharding_constraint(m, rows)
            loss, grads = jax.value_and_grad(module.loss)(state.params, x, k, m, sigmas)
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
        devices: devices of each process to train on, data parallel (``data.batch_size``, the
            global batch, must be a multiple of ``devices`` × ``num_nodes``); the samplers after
            training split their chains across this process's ones.
        num_nodes: processes (one a node, each with ``devices`` devices), joined through
            ``jax.distributed`` (``start_processes``); the first writes the run's files.

    Raises:
        DSMInputError: a non-positive count, or processes that cannot be joined.
    """

    def __init__(
        self,
        max_epochs: int = 1000,
        default_root_dir: str = "runs/jax",
        enable_progress_bar: bool = True,
        epochs_per_chunk: Optional[int] = None,
        logger: bool = True,
        devices: int = 1,
        num_nodes: int = 1,
    ):
        self.max_epochs = check_positive_int("trainer.max_epochs", max_epochs)
        self.devices = check_positive_int("trainer.devices", devices)
        self.num_nodes = check_positive_int("trainer.num_nodes", num_nodes)
        start_processes(self.num_nodes)
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
    def is_global_zero(self) -> bool:
        """Whether this is the process that writes (Lightning's name): the first, or the only one."""
        return jax.process_index() == 0

    def device_mesh(self, datamodule: DSMDataModule) -> Mesh | None:
        """The mesh a fit on ``datamodule`` trains on (``device_mesh``; None: one device).

        Raises:
            DSMInputError: too few devices or processes, or a batch that does not split evenly.
        """
        mesh = device_mesh(self.devices, self.num_nodes)
        if mesh is not None and datamodule.batch_size % mesh.size:
            raise DSMInputError(f"data.batch_size ({datamodule.batch_size}) must be a multiple of the {mesh.size} "
                                "devices it is split across (trainer.devices × trainer.num_nodes)")
        return mesh

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
        payload = jax.device_get(payload)  # every process takes part (replicated arrays); the first writes
        if not self.is_global_zero:
            return
        with atomic_path(self.checkpoint_path) as tmp:  # an interrupted write never leaves a broken checkpoint
            tmp.write_bytes(serialization.msgpack_serialize(payload))

    def _restore(self, ckpt_path: str, state: TrainState) -> tuple[TrainState, jax.Array, np.ndarray]:
        path = self.checkpoint_path if ckpt_path == "last" else Path(ckpt_path)
        if not path.is_file():
            hint = " (nothing to resume; drop --ckpt_path to start afresh)" if ckpt_path == "last" else ""
            raise DSMInputError(f"checkpoint not found: {path}{hint}")  # the torch side's words
        try:
            payload = serialization.msgpack_restore(path.read_bytes())
            state = serialization.from_state_dict(state, payload["state"])
            state = jax.tree_util.tree_map(jnp.asarray, state)  # numpy leaves → arrays: no recompilation
        except (ValueError, KeyError, OSError) as err:
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
        mesh = self.device_mesh(datamodule)
        self.train_chunk = make_train_chunk(module, len(datamodule.data), datamodule.batch_size,
                                            datamodule.hparams["shuffle"], mesh)
        state, points = replicate(state, mesh), replicate(datamodule.points, mesh)
        sigmas = replicate(jnp.asarray(module.sigmas, jnp.float32), mesh)
        log = EpochCSVLog(self.default_root_dir) if self.logger and self.is_global_zero else None
        if log is not None:
            log.restart(log_rows(self.loss_history, datamodule.steps_per_epoch))
        with tqdm(total=self.max_epochs, initial=self.current_epoch, desc="train", unit="epoch",
                  disable=not (self.enable_progress_bar and self.is_global_zero)) as bar:
            while self.current_epoch < self.max_epochs:
                n_epochs = min(chunk, self.max_epochs - self.current_epoch)
                key, chunk_key = jax.random.split(key)
                state, losses = self.train_chunk(state, chunk_key, points, sigmas, n_epochs)
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
