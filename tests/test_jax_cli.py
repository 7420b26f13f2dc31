"""``dsm-jax`` end to end: few-epoch runs on every built-in data set and a CSV file,
sampling from saved weights of either framework, every bad input, and import isolation.

Sample values are checked, not just shapes: the samples a run writes are recomputed here with a
float64 numpy MLP from the run's own weight file, the numpy recursion of docs/method.md §1, the seeded
initial states and the per-step normal draws of the documented key schedule (step k draws from
``fold_in(key, k)``), then mapped to data units with the data set's mean and standard deviation
computed here from the raw file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from dsm_common.testing import numpy_mlp
from jax_dsm.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "seed.yaml")
OLD_FAITHFUL = REPO / "dsm_common" / "data" / "old_faithful.csv"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "JAX_DEFAULT_MATMUL_PRECISION": "highest"}


pytestmark = pytest.mark.usefixtures("jax_full_float32")  # tests/conftest.py

N_CHAINS, N_STEPS, EPS = 100, 50, 0.01  # the run's sampler: seed config's chains and ε, 50 steps
TINY = [
    "--trainer.max_epochs=2", f"--model.sampler.langevin.n_steps={N_STEPS}", "--model.sampler.trajectory_steps=200",
    "--model.sampler.trajectory_keep_every=10", "--trainer.enable_progress_bar=false",
]
PNGS = ("data.png", "samples.png", "trajectory.png", "score_field.png", "loss.png")
METRICS_KEYS = ("framework", "dataset", "epochs", "final_loss", "train_seconds", "sample_seconds", "n_samples",
                "mode_weights", "gap_mass", "energy_distance", "energy_distance_reference", "fisher_divergence")




def expected_samples(weights: Path, n_chains: int, seed: int = 0, n_steps: int = N_STEPS, eps: float = EPS) -> list[np.ndarray]:
    """Training-space samples of the configured sampler, recomputed in numpy: x₀ ~ N(0, I) from
    ``numpy.random.default_rng(seed)``; the noise of step k from ``fold_in(PRNGKey(seed), k)``,
    whatever the progress bar's chunking. Returns the one candidate, in a list."""
    canonical = load_file(str(weights))
    x = np.random.default_rng(seed).standard_normal((n_chains, 2)).astype(np.float32).astype(np.float64)
    key = jax.random.PRNGKey(seed)
    for k in range(n_steps):
        z = np.asarray(jax.random.normal(jax.random.fold_in(key, k), (n_chains, 2), np.float32), np.float64)
        x = x + 0.5 * eps * numpy_mlp(canonical, x) + np.sqrt(eps) * z
    return [x]


def assert_samples_match(samples: np.ndarray, candidates: list[np.ndarray], shift, scale) -> None:
    """``samples`` (data units) equal one of the recomputed candidates mapped to data units.
    float32 network and updates against float64 over 50 steps: 1e-4 absolute in training space
    (docs/parity.md allows 1e-4 after 1000 steps), times the axis scale in data units."""
    errors = [np.abs(samples - (c * scale + shift)).max() / np.max(scale) for c in candidates]
    assert min(errors) < 1e-4, errors


def check_run_files(run: Path, n_chains: int, dataset: str, epochs: int | None) -> dict:
    """Every output of a run; returns metrics.json."""
    for name in PNGS:
        data = (run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, name
    samples = np.load(run / "samples.npy")
    assert samples.shape == (n_chains, 2) and np.all(np.isfinite(samples))
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(METRICS_KEYS) <= set(metrics)
    assert metrics["framework"] == "jax"
    assert metrics["dataset"] == dataset
    assert metrics["n_samples"] == n_chains
    if epochs is not None:
        assert metrics["epochs"] == epochs
    assert metrics["train_seconds"] is None or metrics["train_seconds"] > 0
    assert metrics["sample_seconds"] > 0
    assert metrics["energy_distance"] >= 0 and metrics["energy_distance_reference"] >= 0
    return metrics


def final_losses_from_checkpoint(run: Path) -> list[float]:
    from flax import serialization

    payload = serialization.msgpack_restore((run / "checkpoints" / "last.msgpack").read_bytes())
    assert int(payload["epoch"]) == 2
    return [float(v) for v in np.atleast_1d(payload["loss_history"])]


def train(run: Path, *extra: str) -> None:
    main(["fit", "--config", CONFIG, *TINY, f"--trainer.default_root_dir={run}", *extra])


# ---------------------------------------------------------------------------------------------
# Training runs


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("jax_seed") / "run"
    train(run)
    return run


def test_train_seed_mixture_writes_every_output(seed_run):
    metrics = check_run_files(seed_run, N_CHAINS, "seed_mixture", 2)
    samples = np.load(seed_run / "samples.npy")
    # Values recomputed here: the losses of the checkpoint, the gap mass, the mode weights of
    # Υ_σ = ⅓ N((−10, 1), 10 I) + ⅔ N((10, 0), 10 I) (assign to the larger log w_k − ‖x − μ_k‖²/20),
    # and the samples themselves (the seed mixture is not standardised: data units = training space).
    history = final_losses_from_checkpoint(seed_run)
    assert len(history) == 2 and metrics["final_loss"] == history[-1]
    assert metrics["steps"] == 2 * 38
    assert metrics["gap_mass"] == np.mean(np.abs(samples[:, 0]) < 5)
    mu = np.array([[-10.0, 1.0], [10.0, 0.0]])
    logits = np.log([1 / 3, 2 / 3]) - ((samples[:, None, :] - mu) ** 2).sum(-1) / 20.0
    np.testing.assert_allclose(metrics["mode_weights"], np.bincount(logits.argmax(1), minlength=2) / len(samples), atol=1e-12)
    assert isinstance(metrics["fisher_divergence"], float) and metrics["fisher_divergence"] > 0
    assert_samples_match(samples, expected_samples(seed_run / "weights.safetensors", N_CHAINS), 0.0, 1.0)


def _raw_moments(raw: np.ndarray):
    return raw.mean(axis=0), raw.std(axis=0)


@pytest.mark.parametrize("dataset", ["old_faithful", "moons", "circles", "swiss_roll"])
def test_train_builtin_dataset(tmp_path, dataset):
    run = tmp_path / "run"
    train(run, f"--data.dataset={dataset}")
    metrics = check_run_files(run, N_CHAINS, dataset, 2)
    assert metrics["final_loss"] == final_losses_from_checkpoint(run)[-1]
    assert metrics["fisher_divergence"] is None and metrics["gap_mass"] is None and metrics["mode_weights"] is None
    n_points = 272 if dataset == "old_faithful" else 1000
    assert metrics["steps"] == 2 * -(-n_points // 8)
    samples = np.load(run / "samples.npy")
    if dataset == "old_faithful":
        # Standardised for training, reported in minutes: shift/scale from the raw file.
        shift, scale = _raw_moments(np.loadtxt(OLD_FAITHFUL, delimiter=",", skiprows=1))
        assert metrics["units"] == "min"
    else:
        shift, scale = np.zeros(2), np.ones(2)  # the generated sets are not standardised
    assert_samples_match(samples, expected_samples(run / "weights.safetensors", N_CHAINS), shift, scale)


def test_train_csv_file_with_chosen_columns(tmp_path):
    """A CSV with a header and three columns, two chosen by name; reported back in its units."""
    rng = np.random.default_rng(8)
    n = 64
    cols = np.column_stack([rng.normal(100, 10, n), rng.normal(0, 1, n), rng.normal(-5, 0.5, n)])
    path = tmp_path / "points.csv"
    np.savetxt(path, cols, delimiter=",", header="u,v,w", comments="", fmt="%.6f")
    run = tmp_path / "run"
    # A trajectory whose keep_every does not divide its steps (250 steps, a state every 100).
    train(run, f"--data.dataset={path}", "--data.columns=[w,u]", "--model.sampler.trajectory_steps=250",
          "--model.sampler.trajectory_keep_every=100")
    metrics = check_run_files(run, N_CHAINS, str(path), 2)
    assert metrics["steps"] == 2 * 8
    assert metrics["fisher_divergence"] is None and metrics["mode_weights"] is None  # no exact score for a file
    raw = np.loadtxt(path, delimiter=",", skiprows=1)[:, [2, 0]]
    shift, scale = _raw_moments(raw)
    assert_samples_match(np.load(run / "samples.npy"), expected_samples(run / "weights.safetensors", N_CHAINS), shift, scale)


# ---------------------------------------------------------------------------------------------
# Sampling from saved weights


def test_sample_from_jax_weights(seed_run, tmp_path):
    out = tmp_path / "again"
    main(["sample", "--weights", str(seed_run / "weights.safetensors"), "--sampler.n_chains=7", "--out", str(out)])
    metrics = check_run_files_sample(out, 7)
    assert metrics["trained_with"] == "jax" and metrics["epochs"] == 2
    assert_samples_match(np.load(out / "samples.npy"), expected_samples(seed_run / "weights.safetensors", 7), 0.0, 1.0)


def check_run_files_sample(out: Path, n_chains: int) -> dict:
    samples = np.load(out / "samples.npy")
    assert samples.shape == (n_chains, 2) and np.all(np.isfinite(samples))
    for name in ("samples.png", "trajectory.png", "score_field.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["framework"] == "jax" and metrics["n_samples"] == n_chains
    assert metrics["gap_mass"] == np.mean(np.abs(samples[:, 0]) < 5)
    return metrics


def test_sample_from_torch_fit_weights(tmp_path):
    """Weights written by ``dsm-torch fit`` (Linear.weight (out, in), transposed to the canonical
    (in, out) on the way out) sample in ``dsm-jax sample`` as the numpy MLP of the file predicts."""
    pytest.importorskip("lightning")
    run = tmp_path / "torch_run"
    fit = subprocess.run(
        [sys.executable, "-m", "torch_dsm.cli", "fit", "--config", CONFIG, "--trainer.max_epochs=1",
         "--model.sampler.n_chains=5", "--model.sampler.langevin.n_steps=10", "--model.sampler.trajectory_steps=0",
         "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={run}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=ENV,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    weights = run / "weights.safetensors"
    assert json.loads((run / "metrics.json").read_text())["framework"] == "torch"
    out = tmp_path / "jax_sample"
    # The torch run stored n_steps=10 and no trajectory; sample with 50 steps and a trajectory.
    main(["sample", "--weights", str(weights), "--sampler.n_chains=7", f"--sampler.langevin.n_steps={N_STEPS}",
          "--sampler.trajectory_steps=200", "--sampler.trajectory_keep_every=10", "--out", str(out)])
    metrics = check_run_files_sample(out, 7)
    assert metrics["trained_with"] == "torch" and metrics["epochs"] == 1
    assert_samples_match(np.load(out / "samples.npy"), expected_samples(weights, 7), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit status 2, no traceback


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "text.csv").write_text("a,b\n1,2\n3,x\n4,5\n")
    (d / "nan.csv").write_text("a,b\n1,2\n3,nan\n4,5\n")
    (d / "inf.csv").write_text("a,b\n1,2\n3,4\n-inf,5\n")
    (d / "few.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    np.save(d / "three.npy", np.zeros((20, 3)))
    return d


BAD_INPUTS = [
    # (id, arguments, substrings the error line must hold: the thing at fault and the value)
    ("missing file", ["--data.dataset={d}/missing.csv"], ["data file not found", "{d}/missing.csv"]),
    ("missing column", ["--data.dataset={d}/few.csv", "--data.columns=[a,zz]"], ["{d}/few.csv", "no column named 'zz'", "a, b"]),
    ("text", ["--data.dataset={d}/text.csv", "--data.batch_size=1"],
     ["{d}/text.csv", "row 3", "column 'b'", "'x'", "not a number"]),
    ("nan", ["--data.dataset={d}/nan.csv", "--data.batch_size=1"], ["{d}/nan.csv", "row 3", "column 'b'", "nan", "finite"]),
    ("inf", ["--data.dataset={d}/inf.csv", "--data.batch_size=1"], ["{d}/inf.csv", "row 4", "column 'a'", "inf", "finite"]),
    ("fewer than a batch", ["--data.dataset={d}/few.csv"], ["{d}/few.csv", "holds 3 points", "data.batch_size=8"]),
    ("not 2-D", ["--data.dataset={d}/three.npy"], ["{d}/three.npy", "(N, 2)", "(20, 3)"]),
    ("sigma zero", ["--model.dsm.sigma=0"], ["model.dsm.sigma must be a positive number", "got 0.0"]),
    ("sigma negative", ["--model.dsm.sigma=-3"], ["model.dsm.sigma must be a positive number", "got -3.0"]),
    ("lr", ["--model.lr=-1e-5"], ["model.lr must be a positive number", "got -1e-05"]),
    ("step size", ["--model.sampler.langevin.step_size=0"],
     ["model.sampler.langevin.step_size must be a positive number", "got 0.0"]),
    ("batch size", ["--data.batch_size=0"], ["data.batch_size must be a positive integer", "got 0"]),
    ("step count", ["--model.sampler.langevin.n_steps=0"],
     ["model.sampler.langevin.n_steps must be a positive integer", "got 0"]),
]


def check_error_output(code, stderr: str, needles, d: Path) -> None:
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1]
    assert last.startswith("dsm-jax: error: "), stderr[-2000:]
    assert [line for line in lines if line.startswith("dsm-jax: error:")] == [last]  # one error line
    for needle in needles:
        assert needle.format(d=d) in last, (needle, last)


@pytest.mark.parametrize("args, needles", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_one_line_error(bad_files, tmp_path, capsys, args, needles):
    """Every case through ``main`` in this process (the code ``python -m jax_dsm.cli`` runs; cheap)."""
    argv = [a.format(d=bad_files) for a in args]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", CONFIG, *TINY, f"--trainer.default_root_dir={tmp_path / 'run'}", *argv])
    check_error_output(exit_info.value.code, capsys.readouterr().err, needles, bad_files)
    assert not (tmp_path / "run" / "weights.safetensors").exists()


DEVICE_ERRORS = [  # JAX's own (the torch side's devices are Lightning's)
    (["--trainer.devices=4"], ["trainer.devices=4 but this process has 1 JAX cpu device(s)",
                               "XLA_FLAGS=--xla_force_host_platform_device_count=4"]),
    (["--trainer.devices=0"], ["trainer.devices must be a positive integer", "got 0"]),
    (["--trainer.num_nodes=2"], ["trainer.num_nodes=2: cannot join the other processes", "JAX_COORDINATOR_ADDRESS"]),
]


@pytest.mark.parametrize("args, needles", DEVICE_ERRORS, ids=["too many devices", "no devices", "no coordinator"])
def test_bad_device_options_one_line_error(tmp_path, capsys, args, needles):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", CONFIG, *TINY, f"--trainer.default_root_dir={tmp_path / 'run'}", *args])
    check_error_output(exit_info.value.code, capsys.readouterr().err, needles, tmp_path)
    assert not (tmp_path / "run").exists()


SUBPROCESS_CASES = ("missing file", "nan", "sigma zero")


@pytest.mark.parametrize("args, needles", [b[1:] for b in BAD_INPUTS if b[0] in SUBPROCESS_CASES],
                         ids=[b[0] for b in BAD_INPUTS if b[0] in SUBPROCESS_CASES])
def test_bad_input_one_line_error_subprocess(bad_files, tmp_path, args, needles):
    """A few of the cases as a user meets them: ``python -m jax_dsm.cli train`` in a fresh process."""
    argv = [a.format(d=bad_files) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "jax_dsm.cli", "fit", "--config", CONFIG, *TINY,
         f"--trainer.default_root_dir={tmp_path / 'run'}", *argv],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV,
    )
    check_error_output(proc.returncode, proc.stderr, needles, bad_files)
    assert not (tmp_path / "run" / "weights.safetensors").exists()


@pytest.mark.slow
def test_bad_input_errors_are_the_torch_sides(bad_files, tmp_path, capsys, monkeypatch):
    """The same arguments to ``dsm-torch fit`` give the same error line, program name aside
    (both sides raise the shared checks of dsm_common). Slow: imports torch and Lightning."""
    pytest.importorskip("lightning")
    from torch_dsm.cli import main as torch_main

    monkeypatch.setattr(sys, "argv", ["dsm-torch"])  # LightningCLI warns when pytest's own argv is there
    for name, args, _ in BAD_INPUTS:
        argv = [a.format(d=bad_files) for a in args]
        lines = {}
        for prog, entry, word in (("dsm-jax", main, "fit"), ("dsm-torch", torch_main, "fit")):
            capsys.readouterr()
            with pytest.raises(SystemExit) as exit_info:
                entry([word, "--config", CONFIG, *TINY, f"--trainer.default_root_dir={tmp_path / prog}", *argv])
            err = capsys.readouterr().err
            assert exit_info.value.code == 2 and "Traceback" not in err, (name, prog, err[-2000:])
            lines[prog] = err.strip().splitlines()[-1]
        assert lines["dsm-torch"].replace("dsm-torch: ", "dsm-jax: ", 1) == lines["dsm-jax"], (name, lines)


def test_bad_weights_for_sample_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "jax_dsm.cli", "sample", "--weights", str(tmp_path / "none.safetensors")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"dsm-jax: error: weights file not found: {tmp_path / 'none.safetensors'}"


# ---------------------------------------------------------------------------------------------
# Import isolation


def test_import_jax_dsm_does_not_import_torch_or_lightning():
    code = ("import jax_dsm, jax_dsm.cli, sys; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'lightning', 'pytorch_lightning')]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("word", ["fit", "train"])
def test_fit_is_the_training_command_and_train_its_alias(word, capsys):
    """``dsm-jax fit`` as ``dsm-torch fit``; ``dsm-jax train`` still works (same parser)."""
    with pytest.raises(SystemExit) as exit_:
        main([word, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dsm-jax fit") and "--model.init" in out and "--trainer.max_epochs" in out


def test_top_level_help_is_the_usage_with_status_0(capsys):
    from jax_dsm.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == "usage: dsm-jax {fit,sample} [--help] ...  (train: an alias of fit)\n"
    with pytest.raises(SystemExit) as exit_:
        main(["fitt"])
    assert exit_.value.code == 2


def test_compilation_cache_keeps_results_and_can_be_turned_off(tmp_path):
    """``dsm-jax`` keeps its compiled functions in ``$XDG_CACHE_HOME/dsm-twins/jax``; a second run
    loads them and writes the same samples; ``JAX_ENABLE_COMPILATION_CACHE=false`` writes none."""
    def fit(name: str, **env: str) -> np.ndarray:
        run = tmp_path / name
        proc = subprocess.run([sys.executable, "-m", "jax_dsm.cli", "fit", "--config", CONFIG, *TINY, "--quiet=true",
                               f"--trainer.default_root_dir={run}"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={k: v for k, v in {**ENV, **env}.items() if k != "JAX_COMPILATION_CACHE_DIR"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return np.load(run / "samples.npy")

    cache = tmp_path / "xdg" / "dsm-twins" / "jax"
    first = fit("first", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) >= 3  # the training loop, the initialisation, the sampler at least
    second = fit("second", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert sorted(p.name for p in cache.iterdir()) == entries  # all loaded, none compiled anew
    np.testing.assert_array_equal(first, second)
    off = fit("off", XDG_CACHE_HOME=str(tmp_path / "xdg-off"), JAX_ENABLE_COMPILATION_CACHE="false")
    assert not (tmp_path / "xdg-off" / "dsm-twins").exists()  # (matplotlib keeps its font cache there)
    np.testing.assert_array_equal(first, off)
