"""Runs a user can trust, on both command lines alike.

* Sampling that diverges (a Langevin step of 1e10): metrics count the finite samples only (none
  here, so every sample metric is None, never ``mode_weights=[1, 0]`` and ``gap_mass=0``),
  ``nonfinite_samples`` says how many diverged, and the run ends with one line naming the step
  size option and its value, exit status 3. The files are written for diagnosis.
* Training whose loss is not finite (SGD at lr 1e3): one line naming ``model.lr``, exit status 3,
  no weights written, and any checkpoint left on disk holds finite weights.
* A finished run is never overwritten unasked, and ``sample`` never writes into a training run.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import run_subprocess, run_torch_cli_inprocess, tiny_fit_args


def _run(framework: str, args: list[str]) -> None:
    if framework == "torch":
        run_torch_cli_inprocess(args)
    else:
        from jax_dsm.cli import main

        main(args)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_diverged_sampling_is_reported_not_graded(framework, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        _run(framework, tiny_fit_args(run, "--model.sampler.langevin.step_size=1e10", epochs=1))
    assert exit_.value.code == 3
    line = _error_line(capsys)
    assert f"dsm-{framework}: error: sampling diverged:" in line
    assert "model.sampler.langevin.step_size (now 1e+10)" in line
    m = json.loads((run / "metrics.json").read_text())
    assert m["nonfinite_samples"] == m["n_samples"] + m["nonfinite_samples"] > 0 and m["n_samples"] == 0
    assert m["mode_weights"] is None and m["gap_mass"] is None and m["energy_distance"] is None


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_diverged_training_stops_with_the_learning_rate_named(framework, tmp_path):
    """In a subprocess, as a user runs it (Lightning's log handlers outlive pytest's captured streams)."""
    run = tmp_path / "run"
    proc = run_subprocess([sys.executable, "-m", f"{framework}_dsm.cli", *tiny_fit_args(run, "--model.lr=1000.0", epochs=3)])
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ": error: " in ln]
    assert len(lines) == 1, proc.stderr[-2000:]
    line = lines[0]
    assert f"dsm-{framework}: error: training diverged: the mean loss of epoch" in line
    assert "model.lr (now 1000)" in line
    if list((run / "checkpoints").glob("last.*")):  # the message says what there is to resume from
        assert "the last checkpoint written before it is kept (--ckpt_path last resumes from it)" in line
    else:
        assert line.endswith("no checkpoint was written before it, so the same command starts afresh")
    assert not (run / "weights.safetensors").exists() and not (run / "metrics.json").exists()
    for ckpt in (run / "checkpoints").glob("last.*"):
        if ckpt.suffix == ".ckpt":
            import torch

            state = torch.load(ckpt, weights_only=True)["state_dict"]
            assert all(np.isfinite(v.numpy()).all() for v in state.values() if hasattr(v, "numpy"))
        else:
            from flax import serialization

            leaves = serialization.msgpack_restore(ckpt.read_bytes())["state"]["params"]
            assert all(np.isfinite(np.asarray(x)).all() for layer in leaves.values() for x in layer.values())


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_a_finished_run_is_not_overwritten_unasked(framework, tmp_path, capsys):
    """Re-running into a finished run's folder: one line, exit 2, every file as it was; with
    --overwrite=true it runs. ``sample --out`` never writes into a training run, nor over an
    earlier sample run unasked."""
    run = tmp_path / "run"
    _run(framework, tiny_fit_args(run, epochs=1))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        _run(framework, tiny_fit_args(run, epochs=2))
    assert exit_.value.code == 2
    assert "holds a finished run (weights.safetensors); pass --overwrite=true" in _error_line(capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    weights = str(run / "weights.safetensors")
    for out, fragment in ((run, "holds a training run"), (run / "checkpoints" / "..", "holds a training run")):
        with pytest.raises(SystemExit) as exit_:
            _run(framework, ["sample", "--weights", weights, "--out", str(out), "--sampler.n_chains=5"])
        assert exit_.value.code == 2 and fragment in _error_line(capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    sample = ["sample", "--weights", weights, "--out", str(tmp_path / "s"), "--sampler.n_chains=5",
              "--sampler.langevin.n_steps=5", "--sampler.trajectory_steps=0"]
    _run(framework, sample)
    with pytest.raises(SystemExit) as exit_:
        _run(framework, sample)
    assert exit_.value.code == 2 and "holds an earlier sample run" in _error_line(capsys)
    _run(framework, [*sample, "--overwrite=true"])
    _run(framework, [*tiny_fit_args(run, epochs=2), "--overwrite=true"])
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_abbreviated_options_are_refused(framework, tmp_path):
    """``--trainer.max_epoch=5`` is not taken for ``--trainer.max_epochs``: nothing runs."""
    proc = run_subprocess([sys.executable, "-m", f"{framework}_dsm.cli",
                           *tiny_fit_args(tmp_path / "run", "--trainer.max_epoch=5", epochs=1)])
    assert proc.returncode == 2 and "unrecognized arguments: --trainer.max_epoch=5" in proc.stderr
    assert not (tmp_path / "run" / "weights.safetensors").exists()


def test_torch_offers_fit_and_names_sample():
    proc = run_subprocess([sys.executable, "-m", "torch_dsm.cli", "--help"])
    assert proc.returncode == 0 and "fit" in proc.stdout and "dsm-torch sample --weights" in proc.stdout
    assert "validate" not in proc.stdout and "predict" not in proc.stdout
    proc = run_subprocess([sys.executable, "-m", "torch_dsm.cli", "validate"])
    assert proc.returncode == 2 and "invalid choice: 'validate'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("option, message", [
    ("--trainer.max_epochs=0", "trainer.max_epochs must be a positive integer, got 0"),
    ("--trainer.max_epochs=-1", "trainer.max_epochs must be a positive integer, got -1"),
    ("--model.hidden_dims=[0]", "model.hidden_dims must be positive integers, got [0]"),
])
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_epochs_and_widths_are_checked_the_same_way_before_training(framework, option, message, tmp_path):
    """Lightning would train forever (−1) or write an untrained model (0): both sides refuse."""
    proc = run_subprocess([sys.executable, "-m", f"{framework}_dsm.cli", *tiny_fit_args(tmp_path / "run", epochs=1), option])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"dsm-{framework}: error: {message}"
    assert not (tmp_path / "run" / "weights.safetensors").exists()


def test_chains_that_ran_off_are_diverged_not_graded():
    """Finite but huge final states (a sampler blowing up ends near 1e30) are diverged chains: they
    are counted, left out of every metric, and a run with any of them stops (docs/usage.md)."""
    from dsm_common.datasets import load_dataset
    from dsm_common.report import DIVERGED_REACH, sample_metrics, usable_rows

    ds = load_dataset("seed_mixture")
    reach = np.abs(ds.points).max()
    x = ds.target_sample(10, 0.01, np.random.default_rng(0))
    x[:3] = [[2e30, -1e30], [np.nan, 0.0], [1.01 * DIVERGED_REACH * reach, 0.0]]
    x[3] = [0.99 * DIVERGED_REACH * reach, 0.0]  # far, but within the reach: kept (and graded)
    np.testing.assert_array_equal(usable_rows(x, ds), [False, False, False] + [True] * 7)
    m = sample_metrics(ds, x, 0.01, np.random.default_rng(1))
    assert m["nonfinite_samples"] == 1 and m["diverged_samples"] == 3 and m["n_samples"] == 7
