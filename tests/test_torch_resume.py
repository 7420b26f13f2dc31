"""An interrupted ``dsm-torch fit`` resumes from its last checkpoint.

The first run is killed with SIGKILL from inside (a callback, so the moment is deterministic: at
the start of epoch 13, after the epoch-10 checkpoint is written and before the next one). The
second run, ``fit … --ckpt_path last`` with another seed, must continue from epoch 10: its loss
history starts with the killed run's 10 values (a fresh start under another seed would not) and
has max_epochs entries in all; step and epoch counters carry over.
"""

from __future__ import annotations

import os
import signal
import sys

import lightning as L
import numpy as np
import pytest
import torch
from conftest import REPO, SUBPROCESS_ENV, read_metrics, run_subprocess, run_torch_cli_inprocess, tiny_fit_args
from safetensors.numpy import load_file

KILL_EPOCH = 12  # 0-based: killed as the 13th epoch starts; the last checkpoint is from epoch 10
STEPS_PER_EPOCH = 12  # --data.n_points=90 in batches of 8


class SigkillAtEpoch(L.Callback):
    """Kills its own process (SIGKILL: no clean-up, no after_fit) when epoch KILL_EPOCH starts."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == KILL_EPOCH:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")  # expected when resuming
def test_interrupted_fit_resumes_from_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    first = tiny_fit_args(run, "--data.n_points=90", "--trainer.callbacks+=test_torch_resume.SigkillAtEpoch",
                          epochs=1000)
    env = {**SUBPROCESS_ENV, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), SUBPROCESS_ENV.get("PYTHONPATH", "")])}
    proc = run_subprocess([sys.executable, "-m", "torch_dsm.cli", *first], env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (run / "metrics.json").exists() and not (run / "weights.safetensors").exists()  # it never finished

    ckpt_path = run / "checkpoints" / "last.ckpt"
    killed = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert killed["epoch"] == 9 and killed["global_step"] == 10 * STEPS_PER_EPOCH  # saved after 10 epochs
    assert len(killed["loss_history"]) == 10

    max_epochs = 14
    run_torch_cli_inprocess(tiny_fit_args(run, "--data.n_points=90", "--seed_everything=123", "--ckpt_path=last",
                                          epochs=max_epochs))
    m = read_metrics(run)
    assert m["epochs"] == max_epochs and m["steps"] == max_epochs * STEPS_PER_EPOCH
    resumed = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    hist = resumed["loss_history"]
    assert len(hist) == max_epochs
    assert hist[:10] == killed["loss_history"]  # carried over, not retrained
    assert m["final_loss"] == pytest.approx(hist[-1], rel=1e-12)
    assert resumed["global_step"] == max_epochs * STEPS_PER_EPOCH
    # Training went on from the checkpoint's weights: they changed, and the final file is the new state.
    w = load_file(str(run / "weights.safetensors"))
    before = killed["state_dict"]["model.dense.2.bias"].numpy()
    np.testing.assert_array_equal(w["dense_2.bias"], resumed["state_dict"]["model.dense.2.bias"].numpy())
    assert not np.array_equal(w["dense_2.bias"], before)
