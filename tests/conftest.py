"""Shared helpers for the dsm_common and torch_dsm tests.

Nothing here imports torch or JAX at import time, so the JAX tests that share this folder do not
pay for a torch import. The torch helpers import it lazily.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SEED_CONFIG = REPO / "configs" / "seed.yaml"
OLD_FAITHFUL_CSV = REPO / "dsm_common" / "data" / "old_faithful.csv"

# The machine is shared (2 cores): one BLAS/OpenMP thread per process is faster than two fighting.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# Files a finished `fit` writes into its run directory.
RUN_FILES = (
    "weights.safetensors",
    "samples.npy",
    "metrics.json",
    "data.png",
    "samples.png",
    "trajectory.png",
    "score_field.png",
    "loss.png",
    "checkpoints/last.ckpt",
)
METRICS_KEYS = (
    "framework",
    "dataset",
    "epochs",
    "final_loss",
    "train_seconds",
    "sample_seconds",
    "n_samples",
    "mode_weights",
    "gap_mass",
    "energy_distance",
    "energy_distance_reference",
    "fisher_divergence",
)

# Tiny settings for CLI runs: a few epochs, few chains and steps (values are still checked).
TINY_CHAINS = 13
TINY_STEPS = 50


def tiny_fit_args(root: Path | str, *extra: str, epochs: int = 2) -> list[str]:
    """Arguments of ``dsm-torch fit`` for a fast run of the seed config into ``root``."""
    return [
        "fit",
        "--config",
        str(SEED_CONFIG),
        f"--trainer.max_epochs={epochs}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        f"--model.sampler.n_chains={TINY_CHAINS}",
        f"--model.sampler.langevin.n_steps={TINY_STEPS}",
        "--model.sampler.trajectory_steps=200",
        "--model.sampler.trajectory_keep_every=10",
        *extra,
    ]


def refresh_log_streams() -> None:
    """Point log handlers that hold an earlier test's captured (closed) stream at the current
    ``sys.stderr`` (Lightning binds its handlers to the stderr of the test that imported it)."""
    import logging

    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
                handler.stream = sys.stderr


def run_torch_cli_inprocess(args: list[str]) -> None:
    """``torch_dsm.cli.main(args)`` in this process (saves the ~6 s interpreter + torch start-up)."""
    import torch

    refresh_log_streams()

    from torch_dsm.cli import main

    torch.set_num_threads(1)
    with mock.patch.object(sys, "argv", ["dsm-torch"]):  # LightningCLI warns when sys.argv has pytest's args
        main(args)


def run_cli_inprocess(framework: str, args: list[str]) -> None:
    """``dsm-torch`` (``run_torch_cli_inprocess``) or ``dsm-jax`` (``jax_dsm.cli.main``) with
    ``args``, in this process."""
    if framework == "torch":
        run_torch_cli_inprocess(args)
        return
    from jax_dsm.cli import main

    refresh_log_streams()
    main(args)


def run_subprocess(cmd: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` with the test environment, capturing text output."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=kw.pop("env", SUBPROCESS_ENV),
                          cwd=kw.pop("cwd", REPO), **kw)


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def is_png(path: Path) -> bool:
    """A non-trivial PNG file: the 8-byte signature and more than a header's worth of data."""
    data = Path(path).read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def resample_training_space(weights: Path, n_chains: int, n_steps: int, step_size: float, seed: int) -> np.ndarray:
    """Re-run the fit's main sampler from a weight file, independently of the CLI's reporting code.

    Initial states N(0, I) from ``numpy.random.default_rng(seed)`` (``SamplerConfig.initial_states``,
    docs/method.md §1 x₀ ~ N(0, I)), torch noise from ``torch.Generator().manual_seed(seed)``; returns the final
    states (n_chains, 2) in training space.
    """
    import torch

    from torch_dsm.sampling import langevin
    from torch_dsm.weights import load_weights

    model, _ = load_weights(weights)
    x0 = np.random.default_rng(seed).standard_normal((n_chains, 2)).astype(np.float32)
    gen = torch.Generator().manual_seed(seed)
    x, _ = langevin(model, torch.from_numpy(x0), step_size, n_steps, rng=gen)
    return x.numpy().astype(np.float64)


def seed_assignment(x: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Most responsible component of Υ_σ = ⅓ N((−10, 1), (1+σ²)I) + ⅔ N((10, 0), (1+σ²)I), by hand.

    Equal isotropic covariances c I: compare log w_k − ‖x − μ_k‖² / (2c).
    """
    c = 1.0 + sigma**2
    l1 = np.log(1 / 3) - np.sum((x - np.array([-10.0, 1.0])) ** 2, axis=1) / (2 * c)
    l2 = np.log(2 / 3) - np.sum((x - np.array([10.0, 0.0])) ** 2, axis=1) / (2 * c)
    return (l2 > l1).astype(int)


@pytest.fixture(scope="session")
def seed_run(tmp_path_factory) -> Path:
    """One tiny ``fit`` of the seed recipe (2 epochs), shared by the output, sample and weight tests."""
    root = tmp_path_factory.mktemp("seed_run")
    run_torch_cli_inprocess(tiny_fit_args(root))
    return root


def python() -> str:
    return sys.executable


@pytest.fixture(scope="module")
def jax_full_float32():
    """Full float32 JAX matmuls for a module of JAX tests: on recent NVIDIA GPUs JAX multiplies
    float32 matrices in TF32 by default (docs/parity.md), about 1e-3 relative, and the float64
    numpy references of ``dsm_common.testing`` need full float32. No effect on CPU. (The parity
    suite sets the same, asserted, for all its tests: ``parity_tests/devices.py``.)"""
    import jax

    with jax.default_matmul_precision("highest"):
        yield


def cli_main(framework: str):
    """``main`` of ``dsm-torch`` or ``dsm-jax``."""
    if framework == "torch":
        from torch_dsm.cli import main
    else:
        from jax_dsm.cli import main
    return main


def fails_in_one_line(framework: str, args: list[str], capsys, code: int = 2) -> str:
    """Run ``main(args)``; assert exit status ``code`` and one error line; return that line."""
    refresh_log_streams()
    with pytest.raises(SystemExit) as exit_:
        cli_main(framework)(args)
    assert exit_.value.code == code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err[-3000:]
    return lines[0]
