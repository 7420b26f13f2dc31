"""The per-epoch CSV log of both command lines (Lightning's CSVLogger format) and ``--quiet``."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
import torch
from conftest import (
    cli_main,
    read_metrics,
    refresh_log_streams,
    run_subprocess,
    run_torch_cli_inprocess,
    tiny_fit_args,
)

from dsm_common.logs import FIELDS, LOG_FILE, EpochCSVLog, log_rows, read_log

STEPS_PER_EPOCH = 38  # ⌈300 / 8⌉ mini-batches of the seed recipe


def _fit(framework: str, root, *extra: str, epochs: int) -> None:
    if framework == "torch":
        run_torch_cli_inprocess(tiny_fit_args(root, *extra, epochs=epochs))
        return
    refresh_log_streams()
    cli_main(framework)(tiny_fit_args(root, *extra, epochs=epochs))


def _history(framework: str, root) -> list[float]:
    """The loss history the run's checkpoint holds (what the weights have seen)."""
    if framework == "torch":
        return list(torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["loss_history"])
    from flax import serialization

    payload = serialization.msgpack_restore((root / "checkpoints" / "last.msgpack").read_bytes())
    return [float(v) for v in np.atleast_1d(payload["loss_history"])]


def test_log_rows_by_hand():
    assert log_rows([2.5, 1.5], 38, first_epoch=3) == [
        {"epoch": 3, "step": 152, "train_loss": 2.5},
        {"epoch": 4, "step": 190, "train_loss": 1.5},
    ]


def test_epoch_log_writes_lightning_format(tmp_path):
    """Header of the sorted keys and CRLF rows, as Lightning's CSVLogger (csv.DictWriter) writes them."""
    log = EpochCSVLog(tmp_path)
    log.restart(log_rows([3.0], 10))
    log.append(log_rows([2.0, 1.0], 10, first_epoch=1))
    assert (tmp_path / LOG_FILE).read_bytes() == b"epoch,step,train_loss\r\n0,10,3.0\r\n1,20,2.0\r\n2,30,1.0\r\n"
    assert read_log(tmp_path)[-1] == {"epoch": 2, "step": 30, "train_loss": 1.0}


def test_torch_csv_logger_writes_the_shared_format(tmp_path):
    """Lightning's own CSVLogger, fed as DSMModule feeds it, writes what EpochCSVLog writes."""
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(save_dir=tmp_path / "a", name="logs", version="")
    for row in log_rows([3.0, 2.0], 10):
        step = row.pop("step")
        logger.log_metrics(row, step=step)
    logger.save()
    EpochCSVLog(tmp_path / "b").restart(log_rows([3.0, 2.0], 10))
    assert (tmp_path / "a" / LOG_FILE).read_bytes() == (tmp_path / "b" / LOG_FILE).read_bytes()


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_fit_logs_every_epoch_and_resume_rewrites_from_the_checkpoint(framework, tmp_path):
    """One row per epoch, steps in optimiser steps; a resumed run's log is the checkpoint's history
    (epochs trained after the last checkpoint are trained again and logged once)."""
    root = tmp_path / framework
    _fit(framework, root, epochs=12)
    rows = read_log(root)
    assert [r["epoch"] for r in rows] == list(range(12))
    assert [r["step"] for r in rows] == [(e + 1) * STEPS_PER_EPOCH for e in range(12)]
    assert read_metrics(root)["final_loss"] == pytest.approx(rows[-1]["train_loss"], rel=1e-6)
    # Rows of epochs no checkpoint holds, as a run killed after logging them leaves (torch's last
    # checkpoint is of epoch 10 already: every_n_epochs=10).
    EpochCSVLog(root).append(log_rows([999.0, 999.0], STEPS_PER_EPOCH, first_epoch=12))
    _fit(framework, root, "--ckpt_path=last", epochs=15)
    rows = read_log(root)
    assert [r["epoch"] for r in rows] == list(range(15))
    assert [r["step"] for r in rows] == [(e + 1) * STEPS_PER_EPOCH for e in range(15)]
    np.testing.assert_allclose([r["train_loss"] for r in rows], _history(framework, root), rtol=1e-7)
    assert 999.0 not in [r["train_loss"] for r in rows]
    with open(root / LOG_FILE, newline="") as f:
        assert tuple(next(csv.reader(f))) == FIELDS


def test_both_frameworks_write_the_same_columns(tmp_path):
    for framework in ("torch", "jax"):
        _fit(framework, tmp_path / framework, epochs=3)
    t, j = read_log(tmp_path / "torch"), read_log(tmp_path / "jax")
    assert [(r["epoch"], r["step"]) for r in t] == [(r["epoch"], r["step"]) for r in j]
    assert (tmp_path / "torch" / LOG_FILE).read_bytes().split(b"\r\n")[0] == b"epoch,step,train_loss"
    assert (tmp_path / "jax" / LOG_FILE).read_bytes().split(b"\r\n")[0] == b"epoch,step,train_loss"


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_logger_false_writes_no_log(framework, tmp_path):
    _fit(framework, tmp_path, "--trainer.logger=false", epochs=1)
    assert not (tmp_path / "logs").exists()
    assert (tmp_path / "weights.safetensors").is_file()


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_quiet_prints_nothing(framework, tmp_path, capsys):
    """``fit --quiet=true`` (a fresh process, so every warning and log line would show) and
    ``sample --quiet=true`` print nothing and still write the run."""
    args = tiny_fit_args(tmp_path / "run", epochs=2)
    args.remove("--trainer.enable_progress_bar=false")
    proc = run_subprocess([sys.executable, "-m", f"{framework}_dsm.cli", *args, "--quiet=true"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == "" and proc.stderr == "", (proc.stdout[-2000:], proc.stderr[-2000:])
    assert read_metrics(tmp_path / "run")["epochs"] == 2
    capsys.readouterr()
    refresh_log_streams()
    cli_main(framework)(["sample", "--weights", str(tmp_path / "run" / "weights.safetensors"), "--out",
                         str(tmp_path / "s"), "--sampler.n_chains=5", "--quiet=true"])
    out = capsys.readouterr()
    assert out.out == "" and out.err == "", out
    assert read_metrics(tmp_path / "s")["n_samples"] == 5
