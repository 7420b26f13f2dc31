"""The shared fixtures: reproducible from their seed, and what the tests assume of them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from dsm_common.mixtures import seed_mixture
from dsm_common.testing import numpy_mlp
from dsm_common.weights import check_canonical, layer_dims
from parity_tests.fixture_data import DEFAULT_PATH, WEIGHT_SETS, load_fixtures, weight_set

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_fixtures.py"


def _run_script(args: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("make_fixtures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(args)


def test_script_reproduces_committed_fixtures(tmp_path):
    out = tmp_path / "fixtures.npz"
    assert _run_script(["--out", str(out)]) == 0
    new, committed = load_fixtures(out), load_fixtures(DEFAULT_PATH)
    assert sorted(new) == sorted(committed)
    for k in committed:
        assert new[k].dtype == committed[k].dtype, k
        assert new[k].shape == committed[k].shape, k
        assert np.array_equal(new[k], committed[k]), f"{k} differs from the committed fixtures"


def test_another_seed_gives_other_arrays(tmp_path):
    out = tmp_path / "other.npz"
    _run_script(["--out", str(out), "--seed", "1"])
    assert not np.array_equal(load_fixtures(out)["langevin_noise"], load_fixtures(DEFAULT_PATH)["langevin_noise"])


def test_fixture_contents(fx):
    for name in WEIGHT_SETS:
        w = check_canonical(weight_set(fx, name), name)
        assert all(v.dtype == np.float32 for v in w.values())
        assert layer_dims(w) == ([3, 256, 256, 2] if name == "cond" else [2, 256, 256, 2])
    n_steps, n_chains = fx["langevin_noise"].shape[:2]
    assert (n_steps, fx["x0"].shape[0]) == (1000, n_chains)
    assert fx["sgd_x"].shape == fx["sgd_z"].shape == (100, 8, 2)
    assert fx["annealed_noise"].shape[0] == fx["ncsn_sigmas"].shape[0]
    assert np.all(np.diff(fx["ncsn_sigmas"]) < 0) and fx["ncsn_levels"].max() < len(fx["ncsn_sigmas"])
    for key in ("z", "sgd_z", "langevin_noise", "annealed_noise", "ncsn_z"):
        z = fx[key].astype(np.float64)
        assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.std() - 1) < 5 / np.sqrt(2 * z.size), key


def test_score_weights_approximate_the_exact_score(fx):
    """The 'score' set is close to ∇ log Υ_σ (relative RMS error < 20 % on [−20, 20]²)."""
    x = fx["x_eval"].astype(np.float64)
    exact = seed_mixture().convolve(float(fx["sigma"])).score(x)
    err = numpy_mlp(weight_set(fx, "score"), x) - exact
    assert np.sqrt(np.mean(np.sum(err**2, 1)) / np.mean(np.sum(exact**2, 1))) < 0.2
