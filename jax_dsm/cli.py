"""``dsm-jax``: fit with the same YAML as ``dsm-torch fit``, and sample from saved weights.

    dsm-jax fit --config configs/seed.yaml [--trainer.max_epochs=5] [--data.dataset=old_faithful]
    dsm-jax fit --config configs/seed.yaml --ckpt_path last         # resume an interrupted run
    dsm-jax sample --weights runs/seed/weights.safetensors [--sampler.n_chains=1000] [--out DIR]

``fit`` (``train`` is an alias) writes into ``trainer.default_root_dir`` the same files as the torch side:
``weights.safetensors``, ``samples.npy``, ``metrics.json``, PNG figures and
``checkpoints/last.msgpack``. Mirror: ``torch_dsm/cli.py``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from dsm_common.commands import (
    FIT_INTERRUPTED,
    SAMPLE_INTERRUPTED,
    check_legacy_options,
    check_resume,
    check_run_dir,
    cli_errors,
    one_line_parser,
    sample_command,
    stored_sigmas,
    summary_line,
)
from dsm_common.config import network_scale, per_level_inputs, sde_end_time
from dsm_common.files import run_phase, write_text_atomic
from dsm_common.finish import finish_run, follow_run, rademacher_probe
from dsm_common.registry import SAMPLERS as SAMPLER_SPECS
from dsm_common.validation import DSMInputError
from dsm_common.weights import stored_sde
from jax_dsm.data import DSMDataModule
from jax_dsm.losses import per_level_loss
from jax_dsm.models import ScoreMLP
from jax_dsm.module import DSMModule
from jax_dsm.sampling import SAMPLERS
from jax_dsm.trainer import (
    Trainer,
    device_mesh,
    first_process_says,
    replicate,
    shard_rows,
    start_processes,
    wait_for_all,
)
from jax_dsm.weights import load_weights, save_weights

PROG = "dsm-jax"


def _unconditional(score_fn, x, sigma):
    return score_fn(x)


class JaxBackend:
    """``dsm_common.generate.Backend`` for a Flax ``ScoreMLP`` and its variables (numpy in, numpy
    out). Mirror: ``torch_dsm.cli.TorchBackend``."""

    framework = "jax"

    def __init__(self, model: ScoreMLP, variables, sigmas: np.ndarray, progress: bool = True, sde: dict | None = None,
                 devices: int = 1, num_nodes: int | None = None):
        # devices > 1: the chains (and the likelihood's points) split across the first ``devices``
        # devices of this process (num_nodes None) or of each of the run's num_nodes processes, when
        # their number is a multiple of the mesh's size, the weights replicated. Across processes
        # every process must make the same sample and likelihood calls (``follow_run``); each gets
        # the whole result back. The figures' scores and the weight file use this process's copy.
        self.mesh = device_mesh(devices, num_nodes)
        self.processes = num_nodes is not None and num_nodes > 1
        self.local_variables = jax.device_get(variables)
        self.model, self.variables = model, replicate(variables, self.mesh)
        self.conditional = model.conditional
        self.preconditioning = (None if model.preconditioning == "none"
                                else {"name": model.preconditioning, "sigma_data": float(model.sigma_data)})
        self.sigmas = np.asarray(sigmas, np.float64)
        self._sigmas = jnp.asarray(self.sigmas, jnp.float32)  # (L,)
        self.progress = progress
        self.sde = sde  # a score-SDE model's SDE (SDESettings.description), else None
        self.last_nfe: int | None = None

    def _score(self) -> Partial:
        """The network as ``(x, σ (n,)) → score``, the form every registered sampler takes; a
        ``Partial``, so its parameters stay traced arguments of the compiled samplers."""
        net = Partial(self.model.apply, self.variables)
        return net if self.conditional else Partial(_unconditional, net)

    def place(self, x: np.ndarray):
        """``x`` (n, …) split by rows across the mesh (``shard_rows``); across processes, an ``x``
        that does not split is placed whole on every device (a computation there spans them all)."""
        x = np.asarray(x, np.float32)
        if self.processes and len(x) % self.mesh.size:
            return replicate(x, self.mesh)
        return shard_rows(x if self.processes else jnp.asarray(x), self.mesh)

    def gather(self, x) -> np.ndarray:
        """A result as one numpy array on this process: across processes, gathered from them all."""
        if self.processes:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    def sample(self, name, x0, settings, keep_every, seed):
        extra = {"sde": self.sde} if SAMPLER_SPECS[name].conditioning == "sde" else {}
        x, kept, *nfe = SAMPLERS[name](self._score(), self.place(x0), self._sigmas, settings, keep_every,
                                       self.progress, rng=jax.random.PRNGKey(seed), **extra)
        self.last_nfe = int(nfe[0]) if nfe else None
        return self.gather(x), None if kept is None else self.gather(kept)

    def likelihood(self, points, settings, seed):
        from jax_dsm.sde_lib import get_sde, likelihood, time_score

        sde = get_sde(self.sde)
        probe = self.place(rademacher_probe(len(points), seed)) if settings.hutchinson else None
        log_p, _, nfe = likelihood(sde, time_score(self._score(), sde, self.sde.get("unscaled", False)), self.place(points),
                                   settings.solver, settings.num_steps, settings.rtol, settings.atol,
                                   sde_end_time(settings, self.sde), probe=probe)
        return self.gather(log_p).astype(np.float64), int(nfe)

    def score_at(self, sigma):
        apply = jax.jit(self.model.apply)
        scale, level = network_scale(self.sde, sigma)  # an unscaled SDE network: s_θ(x/α, σ/α)/α

        def fn(x: np.ndarray) -> np.ndarray:
            x = jnp.asarray(np.asarray(x, np.float32) / np.float32(scale))
            sigmas = jnp.full(x.shape[:1], level, jnp.float32) if self.conditional else None
            return np.asarray(apply(self.local_variables, x, sigmas)) / np.float32(scale)

        return fn

    def per_level_loss(self, points, noise):
        levels, alphas = per_level_inputs(self.sde, self.sigmas)
        return np.asarray(per_level_loss(Partial(self.model.apply, self.local_variables), jnp.asarray(points),
                                         jnp.asarray(levels, jnp.float32), noise=jnp.asarray(noise),
                                         alphas=None if alphas is None else jnp.asarray(alphas, jnp.float32)))

    def save_weights(self, path, config):
        save_weights(path, self.local_variables, config)


def fit_parser():
    """The ``dsm-jax fit`` parser: the keys of LightningCLI's YAML that both sides share."""
    from jsonargparse import ActionConfigFile

    parser = one_line_parser()(prog=f"{PROG} fit", description="Train a score model with JAX/Flax/Optax.")
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file (same format as dsm-torch fit)")
    parser.add_argument("--seed_everything", type=Union[bool, int], default=0, help="seed of the training keys")
    parser.add_argument("--ckpt_path", type=Optional[str], default=None, help='"last" or a checkpoint file to resume')
    parser.add_argument("--overwrite", type=bool, default=False, help="replace a finished run in trainer.default_root_dir")
    parser.add_argument("--quiet", type=bool, default=False,
                        help="print warnings and errors only: no progress bars or summary")
    parser.add_class_arguments(Trainer, "trainer")
    parser.add_class_arguments(DSMModule, "model")
    parser.add_class_arguments(DSMDataModule, "data")
    return parser


def fit_main(argv: list[str]) -> dict:
    """``dsm-jax fit``: train, sample, write the run's files."""
    check_legacy_options(argv)
    parser = fit_parser()
    cfg = parser.parse_args(argv)
    start_processes(cfg.trainer.num_nodes)  # before any JAX computation (the data module's arrays)
    init = parser.instantiate(cfg) if hasattr(parser, "instantiate") else parser.instantiate_classes(cfg)
    trainer, module, dm = init.trainer, init.model, init.data
    if cfg.quiet:
        trainer.enable_progress_bar = False
    seed = int(cfg.seed_everything) if not isinstance(cfg.seed_everything, bool) else 0
    trainer.device_mesh(dm)  # the devices' checks, before anything is written
    refusal, run_dir = None, None
    if trainer.is_global_zero:
        try:
            run_dir = check_run(trainer, module, cfg)
        except DSMInputError as err:
            refusal = err
    if trainer.num_nodes > 1 and first_process_says(refusal is not None) and refusal is None:
        raise DSMInputError("the first process (JAX_PROCESS_ID=0) refused this run; its error line says why")
    if refusal is not None:
        raise refusal
    if not trainer.is_global_zero:  # another process of a multi-process run: it trains and samples; the first writes
        trainer.enable_progress_bar = False
        state = trainer.fit(module, dm, seed=seed, ckpt_path=cfg.ckpt_path)
        backend = _backend(module, state, trainer, progress=False)
        try:
            follow_run(backend, module.methods.sampler_name, dm.data, module.sampler)
        finally:
            wait_for_all("dsm-jax fit: the run's files written")  # until the first process has written them
        return {}
    write_text_atomic(run_dir / "config.yaml", parser.dump(cfg, skip_validation=True))

    t0 = time.perf_counter()
    with run_phase(run_dir, "training", framework="jax", command="fit"):
        state = trainer.fit(module, dm, seed=seed, ckpt_path=cfg.ckpt_path)
        jax.block_until_ready(state.params)
    info = {
        "epochs": trainer.current_epoch,
        "steps": int(state.step),
        "train_seconds": time.perf_counter() - t0,
        "seed": seed,
    }
    backend = _backend(module, state, trainer, progress=not cfg.quiet)
    try:
        metrics = finish_run(run_dir, backend,
                             module.methods.sampler_name, module.settings_record(), dm.hparams, dm.data, module.sampler,
                             info, trainer.loss_history)
    finally:
        if trainer.num_nodes > 1:
            wait_for_all("dsm-jax fit: the run's files written")
    if not cfg.quiet:
        print(f"run directory: {run_dir.resolve()}")
        print(summary_line(metrics))
    return metrics


def _backend(module: DSMModule, state, trainer: Trainer, progress: bool) -> JaxBackend:
    """The trained network as the backend that samples on the run's devices: every process's
    first ``trainer.devices`` of a multi-process run, else this process's."""
    return JaxBackend(module.model, {"params": jax.device_get(state.params)}, module.sigmas, progress=progress,
                      sde=module.methods.sde(), devices=trainer.devices,
                      num_nodes=trainer.num_nodes if trainer.num_nodes > 1 else None)


def check_run(trainer: Trainer, module: DSMModule, cfg) -> Path:
    """The run folder and ``--ckpt_path``, checked before anything is written; the run folder.

    Raises:
        DSMInputError: a run that would be overwritten unasked, a missing or foreign checkpoint.
    """
    run_dir = check_run_dir(trainer.default_root_dir, "jax", cfg.overwrite, cfg.ckpt_path is not None)
    if cfg.ckpt_path is not None:
        path = trainer.checkpoint_path if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
        if path.is_dir():
            raise DSMInputError(f"--ckpt_path {path} is a folder, not a checkpoint file")
        if not path.is_file():
            hint = " (nothing to resume; drop --ckpt_path to start afresh)" if cfg.ckpt_path == "last" else ""
            raise DSMInputError(f"checkpoint not found: {path}{hint}")  # the torch side's words
        check_checkpoint(path, module, trainer.max_epochs)
    return run_dir


def check_checkpoint(path: Path, module: DSMModule, max_epochs: int) -> None:
    """Refuse, before anything is written, a file that is not a ``jax_dsm`` training checkpoint or
    whose network has other layer widths than ``module``'s, or that has trained more epochs than
    ``max_epochs`` (``trainer.max_epochs``). Mirror: ``torch_dsm.cli.check_checkpoint``.

    Raises:
        DSMInputError: naming the file, and the widths (or epochs) found and expected.
    """
    from flax import serialization

    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        params = payload["state"]["params"]
        done = int(payload.get("epoch", 0))
        kernels = [np.shape(params[f"dense_{i}"]["kernel"]) for i in range(len(params))]
        found = [int(kernels[0][0])] + [int(k[1]) for k in kernels]
        ema = payload.get("ema_decay")
    except Exception as err:  # msgpack raises many types for a file that is not a checkpoint
        reason = str(err).splitlines()[0] if str(err).strip() else ""
        raise DSMInputError(f"{path}: not a checkpoint of this project's model ({type(err).__name__}"
                            f"{': ' + reason if reason else ''})") from None
    expected = [module.model.dim + int(module.model.conditional), *module.model.hidden_dims, module.model.dim]
    check_resume(path, found, done, expected, max_epochs, ema, module.hparams["ema_decay"])


def load_backend(path: str) -> tuple[JaxBackend, dict]:
    """A weight file (either framework's) as a ``JaxBackend`` and its stored settings."""
    model, variables, stored = load_weights(path)
    return JaxBackend(model, variables, stored_sigmas(stored), sde=stored_sde(stored, path)), stored


def sample_main(argv: list[str]) -> dict:
    """``dsm-jax sample``: sample from saved weights (written by either framework)."""
    return sample_command(PROG, argv, load_backend)


COMMANDS = {"fit": fit_main, "train": fit_main, "sample": sample_main}  # train: an alias of fit


def use_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache for this process; return its folder (None: off).

    The folder is ``JAX_COMPILATION_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/dsm-twins/jax``
    (``~/.cache/dsm-twins/jax``). Every compiled function is kept, however quick its compilation
    (``jax_persistent_cache_min_compile_time_secs`` 0 unless the environment sets it), so a later
    run of the same shapes loads its compiled loops instead of compiling them again: the results
    are the same, only the compile time goes. ``JAX_ENABLE_COMPILATION_CACHE=false`` (JAX's own
    switch) turns it off. Call it before the first compilation.
    """
    if not jax.config.jax_enable_compilation_cache:
        return None
    folder = jax.config.jax_compilation_cache_dir
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "dsm-twins", "jax")
        jax.config.update("jax_compilation_cache_dir", folder)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dsm-jax``: ``fit`` (alias ``train``) or ``sample``, as ``dsm-torch``.
    Run as the command line (``argv`` None), it turns JAX's persistent compilation cache on
    (``use_compilation_cache``)."""
    words = sys.argv[1:] if argv is None else argv
    if argv is None:  # the command line (not a caller's own process, e.g. a notebook or a test)
        use_compilation_cache()
    usage = f"usage: {PROG} {{fit,sample}} [--help] ...  (train: an alias of fit)"
    if words and words[0] in ("-h", "--help"):  # asked for: the usage on stdout, exit status 0
        print(usage)
        raise SystemExit(0)
    if not words or words[0] not in COMMANDS:
        print(usage, file=sys.stderr)
        raise SystemExit(2)
    run = COMMANDS[words[0]]
    cli_errors(PROG, lambda: run(words[1:]), SAMPLE_INTERRUPTED if run is sample_main else FIT_INTERRUPTED)


if __name__ == "__main__":
    main()
