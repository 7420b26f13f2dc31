"""Run directories: never shared by the two frameworks, a finished run never replaced unasked."""

import numpy as np
import pytest

from dsm_common.commands import check_run_dir
from dsm_common.validation import DSMInputError
from dsm_common.weights import save_canonical


def _weights(path, framework):
    params = {"dense_0.kernel": np.ones((2, 3), np.float32), "dense_0.bias": np.zeros(3, np.float32),
              "dense_1.kernel": np.ones((3, 2), np.float32), "dense_1.bias": np.zeros(2, np.float32)}
    save_canonical(path / "weights.safetensors", params, {"framework": framework})


def test_empty_or_same_framework_dir_is_accepted(tmp_path):
    assert check_run_dir(tmp_path / "new", "jax") == tmp_path / "new"
    _weights(tmp_path, "jax")
    with pytest.raises(DSMInputError, match=r"holds a finished run \(weights.safetensors\); pass --overwrite=true"):
        check_run_dir(tmp_path, "jax")  # a finished run is never replaced unasked
    assert check_run_dir(tmp_path, "jax", overwrite=True) == tmp_path
    assert check_run_dir(tmp_path, "jax", resume=True) == tmp_path


@pytest.mark.parametrize("owner, other", [("torch", "jax"), ("jax", "torch")])
def test_other_framework_dir_is_refused_with_a_suggestion(tmp_path, owner, other):
    _weights(tmp_path, owner)
    with pytest.raises(DSMInputError, match=f"holds a {owner} run.*default_root_dir={tmp_path}-{other}"):
        check_run_dir(tmp_path, other)


def test_sample_reads_a_weight_file_of_the_older_flat_layout(tmp_path):
    """A multi-level model saved before the registries (flat sampler settings, no ``kind``, no
    ``conditioning``, ``model.num_scales``): ``sample`` takes its stored settings as annealed
    Langevin's, as the run that wrote it did (3 levels × 5 steps + denoising = 16 evaluations)."""
    from jax_dsm.cli import sample_main

    rng = np.random.default_rng(0)
    params = {"dense_0.kernel": 0.1 * rng.standard_normal((3, 8)).astype(np.float32), "dense_0.bias": np.zeros(8, np.float32),
              "dense_1.kernel": 0.1 * rng.standard_normal((8, 2)).astype(np.float32), "dense_1.bias": np.zeros(2, np.float32)}
    old = {"framework": "jax", "model": {"hidden_dims": [8], "num_scales": 3, "sigma_min": 0.1},
           "sigmas": [4.0, 1.0, 0.1], "data": {"dataset": "seed_mixture", "seed": 0},
           "sampler": {"n_chains": 6, "step_size": 1e-3, "n_steps": 5, "keep_every": 0, "init": "uniform", "init_scale": 3.0,
                       "kind": None, "denoise": True, "seed": 0, "trajectory_steps": 0}, "epochs": 1}
    save_canonical(tmp_path / "weights.safetensors", params, old)
    metrics = sample_main(["--weights", str(tmp_path / "weights.safetensors"), "--out", str(tmp_path / "s")])
    assert metrics["sampler"] == "annealed_langevin" and metrics["nfe"] == 16 and metrics["n_samples"] == 6
