"""``dsm-torch fit`` on every built-in data set and a CSV file, and ``dsm-torch sample``.

Runs are tiny (2 epochs, 13 chains × 50 steps) but every output is checked against a value worked
out here: the samples are re-generated from the saved weights with the same initial states and
noise seed, mapped to data units with a shift/scale computed from the raw data; mode weights and
gap mass are recomputed from samples.npy by hand; the checkpoint and the weight file must hold the
same tensors and the final loss.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    METRICS_KEYS,
    OLD_FAITHFUL_CSV,
    RUN_FILES,
    TINY_CHAINS,
    TINY_STEPS,
    is_png,
    read_metrics,
    resample_training_space,
    run_subprocess,
    run_torch_cli_inprocess,
    seed_assignment,
    tiny_fit_args,
)
from safetensors.numpy import load_file

from dsm_common.mixtures import seed_mixture
from torch_dsm.weights import load_weights

torch.set_num_threads(1)


def _check_common_outputs(run_dir: Path, dataset: str, epochs: int, steps_per_epoch: int) -> dict:
    """Every file, the metrics keys and the values all runs share; returns metrics.json."""
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), f"{name} missing from {sorted(p.name for p in run_dir.iterdir())}"
    for name in RUN_FILES:
        if name.endswith(".png"):
            assert is_png(run_dir / name), name
    m = read_metrics(run_dir)
    assert set(METRICS_KEYS) <= set(m), set(METRICS_KEYS) - set(m)
    assert m["framework"] == "torch" and m["dataset"] == dataset
    assert m["epochs"] == epochs and m["steps"] == epochs * steps_per_epoch
    assert m["n_samples"] == TINY_CHAINS
    assert m["train_seconds"] > 0 and m["sample_seconds"] > 0
    assert m["energy_distance"] >= 0 and m["energy_distance_reference"] >= 0
    samples = np.load(run_dir / "samples.npy")
    assert samples.shape == (TINY_CHAINS, 2) and np.isfinite(samples).all()

    # The checkpoint: same weights as the .safetensors file (kernel = weight.T), same loss history.
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    w = load_file(str(run_dir / "weights.safetensors"))
    for i in range(3):
        np.testing.assert_array_equal(ckpt["state_dict"][f"model.dense.{i}.weight"].numpy().T, w[f"dense_{i}.kernel"])
        np.testing.assert_array_equal(ckpt["state_dict"][f"model.dense.{i}.bias"].numpy(), w[f"dense_{i}.bias"])
    assert len(ckpt["loss_history"]) == epochs and ckpt["global_step"] == epochs * steps_per_epoch
    assert m["final_loss"] == pytest.approx(ckpt["loss_history"][-1], rel=1e-12)
    assert math.isfinite(m["final_loss"]) and m["final_loss"] > 0
    return m


def _check_samples(run_dir: Path, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """samples.npy = (re-generated training-space samples) · scale + shift; returns them in data units."""
    x = resample_training_space(run_dir / "weights.safetensors", TINY_CHAINS, TINY_STEPS, 0.01, 0)
    samples = np.load(run_dir / "samples.npy")
    # Same float32 torch computation from the same weights, x₀ and noise seed: equal up to the
    # float64 affine map (the CLI and this test may evaluate it in either order): 1e-9 relative.
    np.testing.assert_allclose(samples, x * scale + shift, rtol=1e-9, atol=1e-9)
    return samples


def test_fit_seed_mixture(seed_run):
    m = _check_common_outputs(seed_run, "seed_mixture", 2, 38)  # 300 points in batches of 8: 38 steps
    samples = _check_samples(seed_run, np.zeros(2), np.ones(2))
    # Mode weights and gap mass, recomputed by hand from samples.npy (docs/method.md §5).
    right = seed_assignment(samples)
    assert m["mode_weights"] == pytest.approx([1 - right.mean(), right.mean()], abs=1e-12)
    assert m["gap_mass"] == pytest.approx(np.mean(np.abs(samples[:, 0]) < 5), abs=1e-12)
    assert m["true_mode_weights"] == pytest.approx([1 / 3, 2 / 3])
    # Relative Fisher divergence of the saved model, on 20 000 fresh draws of Υ_σ here: the CLI used
    # 10 000 other draws; the two Monte Carlo estimates differ by ~1 % (sd over seeds), 8 % allowed.
    model, cfg = load_weights(seed_run / "weights.safetensors")
    target = seed_mixture().convolve(3.0)
    x = target.sample(20_000, np.random.default_rng(123))
    with torch.no_grad():
        learned = model(torch.from_numpy(x.astype(np.float32))).double().numpy()
    exact = target.score(x)
    fisher = np.mean(np.sum((learned - exact) ** 2, 1)) / np.mean(np.sum(exact**2, 1))
    assert m["fisher_divergence"] == pytest.approx(fisher, rel=0.08)
    # The weight file carries what `sample` needs.
    assert cfg["framework"] == "torch" and cfg["epochs"] == 2 and cfg["sigmas"] == [3.0]
    assert cfg["sampler"]["n_chains"] == TINY_CHAINS and cfg["data"]["dataset"] == "seed_mixture"
    assert cfg["model"]["hidden_dims"] == [256, 256] and cfg["model"]["lr"] == 1e-5


def _sklearn_raw(name: str, n: int, seed: int) -> np.ndarray:
    from sklearn import datasets as skd

    if name == "moons":
        return skd.make_moons(n, noise=0.05, random_state=seed)[0]
    if name == "circles":
        return skd.make_circles(n, noise=0.05, factor=0.5, random_state=seed)[0]
    raw3 = skd.make_swiss_roll(n, noise=0.5, random_state=seed)[0]
    return raw3[:, [0, 2]] / 10.0  # the 2-D swiss roll: x and z coordinates, divided by 10


@pytest.mark.parametrize("name", ["moons", "circles", "swiss_roll"])
def test_fit_sklearn_sets(tmp_path, name):
    run_torch_cli_inprocess(tiny_fit_args(tmp_path, f"--data.dataset={name}", "--data.n_points=200",
                                          "--model.dsm.sigma=0.2", "--model.lr=1e-4"))
    m = _check_common_outputs(tmp_path, name, 2, 25)  # 200 points in batches of 8
    samples = _check_samples(tmp_path, np.zeros(2), np.ones(2))  # generated sets are not standardised
    # No exact score, no mixture: these metrics are null.
    assert m["fisher_divergence"] is None and m["mode_weights"] is None and m["gap_mass"] is None
    # The training data are scikit-learn's set with the same seed (data.seed = 0 in the config).
    from dsm_common.datasets import load_dataset

    np.testing.assert_allclose(load_dataset(name, n_points=200, seed=0).points, _sklearn_raw(name, 200, 0), rtol=1e-6,
                               atol=1e-6)
    assert samples.shape == (TINY_CHAINS, 2)


def test_fit_old_faithful_reports_minutes(tmp_path):
    run_torch_cli_inprocess(tiny_fit_args(tmp_path, "--data.dataset=old_faithful", "--model.dsm.sigma=0.3",
                                          "--model.lr=1e-4"))
    m = _check_common_outputs(tmp_path, "old_faithful", 2, 34)  # 272 points in batches of 8: 34 steps
    raw = np.loadtxt(OLD_FAITHFUL_CSV, delimiter=",", skiprows=1)
    # Samples come back in minutes: training space · std + mean of the raw CSV columns.
    samples = _check_samples(tmp_path, raw.mean(0), raw.std(0))
    assert m["units"] == "min"
    assert m["fisher_divergence"] is None and m["mode_weights"] is None and m["gap_mass"] is None
    # Minutes, not standardised units: after 2 epochs from N(0, I) the chains sit within a few data
    # standard deviations (std 1.14 and 13.6 min) of the data means (3.49 and 70.9 min).
    assert np.all(np.abs(samples - raw.mean(0)) < 6 * raw.std(0))
    assert samples[:, 1].mean() > 20  # waiting time in minutes (standardised values would be ~0)


def test_fit_csv_file_with_named_columns(tmp_path, capsys):
    rng = np.random.default_rng(7)
    pts = np.concatenate([rng.normal([0, 50], [1, 5], (40, 2)), rng.normal([6, 80], [1, 5], (40, 2))])
    extra = rng.normal(size=80)
    csv = tmp_path / "points.csv"
    csv.write_text("id,alpha,beta\n" + "".join(f"{e:.6f},{a:.6f},{b:.6f}\n" for e, (a, b) in zip(extra, pts)))
    run_dir = tmp_path / "run"
    run_torch_cli_inprocess(tiny_fit_args(run_dir, f"--data.dataset={csv}", "--data.columns=[alpha,beta]",
                                          "--model.dsm.sigma=0.3", "--model.lr=1e-4"))
    assert f"run directory: {run_dir.resolve()}" in capsys.readouterr().out  # fit prints where it wrote
    m = _check_common_outputs(run_dir, str(csv), 2, 10)  # 80 points in batches of 8
    raw = np.round(pts, 6)  # what the file holds
    _check_samples(run_dir, raw.mean(0), raw.std(0))  # files are standardised for training
    assert m["fisher_divergence"] is None and m["mode_weights"] is None


def test_sample_command_resamples_with_its_own_settings(seed_run, tmp_path):
    """``dsm-torch sample`` (the console script, in a subprocess) re-samples saved weights."""
    out = tmp_path / "resampled"
    exe = Path(sys.executable).with_name("dsm-torch")
    proc = run_subprocess([str(exe), "sample", "--weights", str(seed_run / "weights.safetensors"),
                           "--sampler.n_chains=7", "--sampler.langevin.n_steps=30", "--sampler.seed=5",
                           "--sampler.trajectory_steps=100", "--out", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"run directory: {out.resolve()}" in proc.stdout
    samples = np.load(out / "samples.npy")
    assert samples.shape == (7, 2)
    # The override settings, not the stored ones (13 chains, 50 steps, seed 0).
    x = resample_training_space(seed_run / "weights.safetensors", 7, 30, 0.01, 5)
    np.testing.assert_allclose(samples, x, rtol=1e-9, atol=1e-9)
    m = read_metrics(out)
    assert m["n_samples"] == 7 and m["epochs"] == 2 and m["trained_with"] == "torch"
    assert m["gap_mass"] == pytest.approx(np.mean(np.abs(samples[:, 0]) < 5), abs=1e-12)
    assert m["fisher_divergence"] is not None and m["fisher_divergence"] > 0
    for name in ("samples.png", "trajectory.png", "score_field.png", "data.png"):
        assert is_png(out / name), name
    assert not (out / "weights.safetensors").exists()  # sampling does not write weights


@pytest.mark.parametrize("extra, expected", [([], 64), (["--data.batches_per_step=1"], 1)])
def test_fit_groups_mini_batches_by_default(extra, expected):
    """`dsm-torch fit` starts from torch_dsm.cli.data_defaults() (64 mini-batches a Lightning step,
    the same updates); the flag restores Lightning's one batch per step. Parsed only, nothing run."""
    from torch_dsm.cli import DSMLightningCLI, data_defaults, trainer_defaults
    from torch_dsm.data import DSMDataModule
    from torch_dsm.module import DSMModule

    assert data_defaults() == {"batches_per_step": 64}
    cli = DSMLightningCLI(DSMModule, DSMDataModule, run=False, trainer_defaults=trainer_defaults(),
                          args=["--trainer.logger=false", *extra])
    assert cli.datamodule.batches_per_step == expected
    assert DSMDataModule().batches_per_step == 1  # the class itself keeps Lightning's usual loop


def test_torch_thread_choice(monkeypatch):
    """One intra-op thread below 1000 rows (batch size or chain count), torch's default above;
    --torch_threads wins, and a set OMP_NUM_THREADS leaves torch's own choice alone."""
    from dsm_common.validation import DSMInputError
    from torch_dsm import cli

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cli.choose_threads(8) == 1 and cli.choose_threads(999) == 1
    assert cli.choose_threads(1000) == cli.DEFAULT_THREADS
    assert cli.choose_threads(8, requested=3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert cli.choose_threads(8) == cli.DEFAULT_THREADS
    with pytest.raises(DSMInputError, match="torch_threads must be a positive integer, got 0"):
        cli.choose_threads(8, requested=0)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_progress_bar_shows_epochs_steps_and_the_reported_loss(framework, tmp_path):
    """One bar over epochs on each side; at the end it reads max_epochs of max_epochs, the
    optimiser steps (epochs × 38 on the seed mixture) and the final_loss that metrics.json reports
    (Lightning's own bar counted 1/1 with grouped mini-batches and showed the previous epoch's loss)."""
    import json
    import sys

    from conftest import run_subprocess, tiny_fit_args

    run = tmp_path / "run"
    args = [a for a in tiny_fit_args(run, epochs=4) if a != "--trainer.enable_progress_bar=false"]
    proc = run_subprocess([sys.executable, "-m", f"{framework}_dsm.cli", *args])
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((run / "metrics.json").read_text())["final_loss"]
    frames = [f for f in proc.stderr.replace("\r", "\n").splitlines() if f.startswith("train: 100%")]
    assert frames, proc.stderr[-3000:]
    assert "| 4/4 [" in frames[-1] and f"loss={final:.4g}, steps=152]" in frames[-1], frames[-1]
