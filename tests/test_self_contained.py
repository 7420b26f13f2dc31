"""Weight files that stand alone, and the bad inputs of both command lines answered in one line.

* ``sample`` maps samples to data units with the transform stored in the weight file: moving or
  editing the training CSV changes no sample, and grading happens only against unchanged data
  (or a file named with ``--data.dataset``), saying so otherwise.
* Weight files with metadata that is not JSON, for 3-D data or with NaN weights; checkpoints that
  are random bytes or of another architecture; options that are nan, inf, not numbers, too large
  or misspelt inside a section: one line naming the file or option and the value, exit status 2,
  and nothing written.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from conftest import cli_main as _main
from conftest import fails_in_one_line as _fails
from conftest import run_subprocess, tiny_fit_args

from dsm_common.validation import INT_LIMIT


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """A JAX run trained on a CSV file in minutes-like units (not standardised points)."""
    root = tmp_path_factory.mktemp("csv")
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal([60.0, 2.0], [5.0, 0.3], (60, 2)), rng.normal([80.0, 4.5], [5.0, 0.3], (60, 2))])
    data = root / "points.csv"
    data.write_text("wait,length\n" + "".join(f"{a:.4f},{b:.4f}\n" for a, b in pts))
    run = root / "run"
    proc = run_subprocess([sys.executable, "-m", "jax_dsm.cli", *tiny_fit_args(run, f"--data.dataset={data}", epochs=2)],
                          cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, data, run / "weights.safetensors"


def _sample(framework, weights, out, capsys, *extra):
    _main(framework)(["sample", f"--weights={weights}", f"--out={out}", "--sampler.n_chains=50",
                      "--sampler.langevin.n_steps=20", "--sampler.trajectory_steps=0", *extra])
    captured = capsys.readouterr()
    return json.loads((out / "metrics.json").read_text()), np.load(out / "samples.npy"), captured.err


def test_the_weight_file_carries_the_data_transform(csv_run):
    from dsm_common.datasets import load_dataset
    from dsm_common.weights import load_canonical

    root, data, weights = csv_run
    _, stored = load_canonical(weights)
    ds = load_dataset(str(data))
    t = stored["data_transform"]
    np.testing.assert_allclose(t["shift"], ds.shift, rtol=0, atol=0)
    np.testing.assert_allclose(t["scale"], ds.scale, rtol=0, atol=0)
    assert t["axis_names"] == ["wait", "length"] and t["n_points"] == 120
    # The transform is the data's: mean and population std of each column, as read from the file.
    raw = np.loadtxt(data, delimiter=",", skiprows=1)
    np.testing.assert_allclose(t["shift"], raw.mean(0), rtol=1e-12)
    np.testing.assert_allclose(t["scale"], raw.std(0), rtol=1e-12)


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_sample_needs_only_the_weight_file(framework, csv_run, tmp_path, capsys):
    root, data, weights = csv_run
    graded, samples, _ = _sample(framework, weights, tmp_path / "with-data", capsys)
    assert graded["graded"] is True and graded["energy_distance"] is not None

    moved = tmp_path / "moved.csv"
    shutil.move(data, moved)
    try:
        m, s, err = _sample(framework, weights, tmp_path / "no-data", capsys)
    finally:
        shutil.move(moved, data)
    np.testing.assert_array_equal(s, samples)  # the same data units, from the stored transform
    assert m["graded"] is False and m["energy_distance"] is None and m["n_samples"] == 50
    assert "samples not graded: the training data cannot be read (data file not found:" in m["grading_note"]
    assert err.count("note: samples not graded") == 1
    np.testing.assert_allclose(m["sample_mean"], s.mean(0), rtol=1e-9)

    edited = data.read_text().replace("\n6", "\n7", 1)  # one value changed
    original = data.read_text()
    data.write_text(edited)
    try:
        m, s, _ = _sample(framework, weights, tmp_path / "edited", capsys)
        # Graded against a file named explicitly, in the model's training space:
        other, s2, _ = _sample(framework, weights, tmp_path / "other", capsys, f"--data.dataset={data}")
    finally:
        data.write_text(original)
    np.testing.assert_array_equal(s, samples)  # editing the CSV no longer rescales the samples
    assert m["graded"] is False and "is not the data the weights were trained on" in m["grading_note"]
    np.testing.assert_array_equal(s2, samples)
    assert other["graded"] is True and other["energy_distance"] is not None


def _weights_file(path, dims=(2, 8, 2), config=None, metadata_text=None, nan=False):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    params = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        params[f"dense_{i}.kernel"] = rng.standard_normal((a, b)).astype(np.float32)
        params[f"dense_{i}.bias"] = np.zeros(b, np.float32)
    if nan:
        params["dense_0.kernel"][0, 0] = np.nan
    text = metadata_text if metadata_text is not None else json.dumps(config or {"conditioning": "none", "sigmas": [1.0]})
    save_file(params, str(path), metadata={"format": "dsm-canonical-mlp-v1", "dsm_config": text})
    return path


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("case,expected", [
    ("bad_json", "its dsm_config metadata is not valid JSON"),
    ("list_json", "its dsm_config metadata must be a JSON object, got list"),
    ("three_d", "weights have layer widths [3, 8, 3]: a score network of 3-D data"),
    ("conditioning", "metadata: conditioning must be none or sigma, got 'time'"),
    ("nan", "dense_0.kernel holds 1 values that are not finite"),
    ("bad_transform", "metadata data_transform.scale must be two finite positive numbers"),
])
def test_bad_weight_files_are_one_line(framework, case, expected, tmp_path, capsys):
    path = tmp_path / "w.safetensors"
    if case == "bad_json":
        _weights_file(path, metadata_text="{not json")
    elif case == "list_json":
        _weights_file(path, metadata_text="[1, 2]")
    elif case == "three_d":
        _weights_file(path, dims=(3, 8, 3))
    elif case == "nan":
        _weights_file(path, nan=True)
    elif case == "conditioning":
        _weights_file(path, config={"conditioning": "time"})
    else:
        _weights_file(path, config={"conditioning": "none", "sigmas": [1.0],
                                    "data_transform": {"shift": [0, 0], "scale": [1, 0]}})
    line = _fails(framework, ["sample", f"--weights={path}", f"--out={tmp_path / 'out'}"], capsys)
    assert str(path) in line and expected in line, line
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run of each framework (2 epochs), to resume from."""
    runs = {}
    for framework in ("torch", "jax"):
        run = tmp_path_factory.mktemp(framework) / "run"
        proc = run_subprocess([sys.executable, "-m", f"{framework}_dsm.cli", *tiny_fit_args(run, epochs=2)])
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[framework] = run
    return runs


def _snapshot(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_resuming_another_architecture_is_refused_before_anything_is_written(framework, finished, capsys):
    run = finished[framework]
    before = _snapshot(run)
    line = _fails(framework, [*tiny_fit_args(run, "--model.hidden_dims=[16]", epochs=3), "--ckpt_path", "last"], capsys)
    assert "the checkpoint's network has layer widths [2, 256, 256, 2], the model expects [2, 16, 2]" in line, line
    assert _snapshot(run) == before  # config.yaml and status.json included


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_a_checkpoint_of_random_bytes_is_refused(framework, tmp_path, capsys):
    bad = tmp_path / "random.ckpt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    run = tmp_path / "run"
    line = _fails(framework, [*tiny_fit_args(run, epochs=1), "--ckpt_path", str(bad)], capsys)
    assert f"{bad}: not a checkpoint of this project's model" in line, line
    assert not (run / "config.yaml").exists() and not (run / "status.json").exists()


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("option,expected", [
    ("--model.lr=nan", "--model.lr must be a finite number, got 'nan'"),
    ("--model.sampler.langevin.step_size=inf", "--model.sampler.langevin.step_size must be a finite number, got 'inf'"),
    ("--model.sampler.langevin.step_size=abc", "--model.sampler.langevin.step_size must be a finite number, got 'abc'"),
    ("--data.batch_size=1.5", "--data.batch_size must be an integer, got '1.5'"),
    ("--model.init=bad", "--model.init must be one of native, flax, torch, got 'bad'"),
    ("--model.sampler.langevin.n_step=5", "no option --model.sampler.langevin.n_step (given '5')"),  # no abbreviation
    ("--model.dsm.sigm=1", "no option --model.dsm.sigm (given '1')"),
    (f"--trainer.max_epochs={10**23}", f"trainer.max_epochs must be at most {INT_LIMIT}, got {10**23}"),
    (f"--model.sampler.langevin.n_steps={10**12}", f"model.sampler.langevin.n_steps must be at most {INT_LIMIT}"),
    (f"--model.sampler.n_chains={2**31 - 2}", f"model.sampler.n_chains={2**31 - 2} with model.hidden_dims=[256, 256] needs"),
    ("--model.hidden_dims=[1000000,1000000]", "model.hidden_dims=[1000000, 1000000] needs about"),
])
def test_bad_options_are_one_line_before_training(framework, option, expected, tmp_path, capsys):
    run = tmp_path / "run"
    line = _fails(framework, tiny_fit_args(run, option, epochs=1), capsys)
    assert expected in line, line
    assert not (run / "weights.safetensors").exists() and not (run / "status.json").exists()


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_sample_names_its_own_option_for_a_sampler_the_model_cannot_run(framework, finished, tmp_path, capsys):
    weights = finished["jax"] / "weights.safetensors"  # a single-σ (dsm) model
    line = _fails(framework, ["sample", f"--weights={weights}", f"--out={tmp_path / 'out'}",
                              "--sampler.name=annealed_langevin"], capsys)
    assert line.endswith(f"--sampler.name=annealed_langevin needs a network conditioned on σ, and {weights} holds one "
                         "that is not (objective dsm); use --sampler.name=langevin"), line
    assert not (tmp_path / "out").exists()


def test_torch_threads_option_is_checked_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    line = _fails("torch", tiny_fit_args(run, "--torch_threads=0", epochs=1), capsys)
    assert line == "dsm-torch: error: torch_threads must be a positive integer, got 0"
    assert not (run / "status.json").exists()


def test_the_memory_check_names_what_the_memory_goes_to():
    from dsm_common.config import SamplerConfig, check_sampler_memory
    from dsm_common.validation import DSMInputError

    # 50 chains × 4 bytes × (6 + 3 × 10⁸) = 60 GB, against half of 16 GiB
    with pytest.raises(DSMInputError, match=r"^model\.sampler\.n_chains=50 with model\.hidden_dims=\[100000000\] "
                                            r"needs about 55\.9 GiB, more than half of this machine's 16 GiB"):
        check_sampler_memory(SamplerConfig(n_chains=50), [10**8], memory=16 * 2**30)
    check_sampler_memory(SamplerConfig(n_chains=50), [256, 256], memory=16 * 2**30)  # 0.15 MB: fine


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_sample_names_options_as_it_spells_them(framework, finished, tmp_path, capsys):
    weights = finished["jax"] / "weights.safetensors"
    base = ["sample", f"--weights={weights}", f"--out={tmp_path / 'out'}"]
    line = _fails(framework, [*base, "--sampler.n_chains=0"], capsys)
    assert line.endswith("error: --sampler.n_chains must be a positive integer, got 0"), line
    line = _fails(framework, [*base, "--sampler.langevin.step_size=nan"], capsys)
    assert "--sampler.langevin.step_size must be a finite number, got 'nan'" in line, line
    # a bad value stored in the weight file is named as such
    from dsm_common.weights import load_canonical, save_canonical

    params, stored = load_canonical(weights)
    stored["sampler"]["n_chains"] = -5
    bad = save_canonical(tmp_path / "bad.safetensors", params, stored)
    line = _fails(framework, ["sample", f"--weights={bad}", f"--out={tmp_path / 'out'}"], capsys)
    assert line.endswith(f"--sampler.n_chains must be a positive integer, got -5 (a setting stored in {bad})"), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_resuming_with_fewer_epochs_than_trained_is_refused(framework, finished, capsys):
    run = finished[framework]
    before = _snapshot(run)
    line = _fails(framework, [*tiny_fit_args(run, epochs=1), "--ckpt_path", "last"], capsys)
    assert "the checkpoint has trained 2 epochs, more than trainer.max_epochs=1; resume with trainer.max_epochs of " \
           "at least 2" in line, line
    assert _snapshot(run) == before


def test_sample_overwrite_leaves_nothing_of_the_earlier_sample(finished, tmp_path, capsys):
    weights = finished["jax"] / "weights.safetensors"
    out = tmp_path / "s"
    base = ["sample", f"--weights={weights}", f"--out={out}", "--sampler.n_chains=20", "--sampler.langevin.n_steps=10"]
    _main("jax")([*base, "--sampler.trajectory_steps=100", "--sampler.trajectory_keep_every=10"])
    assert (out / "trajectory.png").exists()
    _main("jax")([*base, "--sampler.trajectory_steps=0", "--overwrite=true"])
    assert not (out / "trajectory.png").exists()  # not left from the earlier sample run
    assert json.loads((out / "status.json").read_text())["status"] == "complete"
