"""JAX training loop, checkpoints and weight files.

* The epoch's batches: ceil(N/B) steps, every point once, the short last batch masked.
* The compiled chunk is compiled once per run shape (no retracing per epoch or chunk).
* Resume: a run interrupted after k epochs and resumed gives exactly (bit for bit) the
  parameters and loss history of an uninterrupted run, in-process and after SIGKILL.
* ``weights.safetensors`` round trip, canonical layout on disk, shape mismatches.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from dsm_common.validation import DSMInputError
from jax_dsm.data import DSMDataModule, epoch_batches
from jax_dsm.models import ScoreMLP
from jax_dsm.module import DSMModule
from jax_dsm.trainer import Trainer
from jax_dsm.weights import from_canonical, load_weights, save_weights, to_canonical

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(hidden_dims=[32, 32], lr=1e-4)  # small model, larger lr so that epochs visibly differ


pytestmark = pytest.mark.usefixtures("jax_full_float32")  # tests/conftest.py


def _leaves(tree):
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(tree)]


def _assert_trees_identical(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)  # bit-exact: same program, same keys, same data


def test_epoch_batches_cover_every_point_once_with_a_masked_short_batch():
    """300 points in batches of 8 (docs/method.md §1): 38 steps, the last holding 4 real points."""
    idx, mask = epoch_batches(jax.random.PRNGKey(0), 300, 8)
    idx, mask = np.asarray(idx), np.asarray(mask)
    assert idx.shape == mask.shape == (38, 8)
    assert mask.sum() == 300 and mask[-1].sum() == 4 and mask[:-1].all()
    np.testing.assert_array_equal(np.sort(idx[mask]), np.arange(300))  # a permutation
    assert not np.array_equal(idx[mask], np.arange(300))  # shuffled
    idx2, _ = epoch_batches(jax.random.PRNGKey(1), 300, 8)
    assert not np.array_equal(np.asarray(idx2), idx)  # another key, another order
    idx0, _ = epoch_batches(None, 300, 8)
    np.testing.assert_array_equal(np.asarray(idx0)[mask], np.arange(300))  # no key: data order


def test_resume_in_process_is_exact_and_compiled_once(tmp_path):
    """max_epochs=k, then resume to N from checkpoints/last.msgpack == N epochs in one go. Each run
    (8, 3 and 5 chunks of 3 epochs) compiles its training chunk once: no retracing per chunk."""
    dm = DSMDataModule("seed_mixture", batch_size=8)
    n, k, chunk = 24, 9, 3

    full = Trainer(max_epochs=n, default_root_dir=str(tmp_path / "full"), enable_progress_bar=False, epochs_per_chunk=chunk)
    state_full = full.fit(DSMModule(**SMALL), dm, seed=5)
    assert full.train_chunk._cache_size() == 1

    part = Trainer(max_epochs=k, default_root_dir=str(tmp_path / "part"), enable_progress_bar=False, epochs_per_chunk=chunk)
    state_k = part.fit(DSMModule(**SMALL), dm, seed=5)
    assert part.checkpoint_path.is_file() and part.train_chunk._cache_size() == 1
    resumed = Trainer(max_epochs=n, default_root_dir=str(tmp_path / "part"), enable_progress_bar=False, epochs_per_chunk=chunk)
    state_res = resumed.fit(DSMModule(**SMALL), dm, seed=5, ckpt_path="last")
    assert resumed.train_chunk._cache_size() == 1  # restored numpy leaves do not force a second compilation

    assert int(state_res.step) == int(state_full.step) == n * 38
    _assert_trees_identical(state_res.params, state_full.params)
    assert resumed.loss_history == full.loss_history  # float for float
    assert part.loss_history == full.loss_history[:k]
    # The resumed run really trained: its parameters moved from the k-epoch ones.
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(state_k.params), _leaves(state_res.params)))


class _Interrupted(Exception):
    pass


def test_resume_with_default_chunking_is_exact(tmp_path, monkeypatch):
    """The default run (epochs_per_chunk=None): 40 epochs cut into 20 chunks of 2, compiled once,
    38 SGD steps an epoch (300 points, batch 8). Interrupted right after the checkpoint of epoch 10
    and resumed with the same command, it must continue with the same chunks (hence the same
    keys) and end exactly where the uninterrupted run ends."""
    dm = DSMDataModule("seed_mixture", batch_size=8)
    n = 40
    full = Trainer(max_epochs=n, default_root_dir=str(tmp_path / "full"), enable_progress_bar=True)
    state_full = full.fit(DSMModule(**SMALL), dm, seed=2)
    assert full.train_chunk._cache_size() == 1
    assert int(state_full.step) == n * 38 and len(full.loss_history) == n
    assert all(np.isfinite(full.loss_history))

    save = Trainer._save

    def save_then_die(self, *args):
        save(self, *args)
        if self.current_epoch >= 10:
            raise _Interrupted  # as if killed right after the checkpoint was written

    monkeypatch.setattr(Trainer, "_save", save_then_die)
    interrupted = Trainer(max_epochs=n, default_root_dir=str(tmp_path / "run"), enable_progress_bar=False)
    with pytest.raises(_Interrupted):
        interrupted.fit(DSMModule(**SMALL), dm, seed=2)
    monkeypatch.setattr(Trainer, "_save", save)
    assert interrupted.current_epoch == 10

    resumed = Trainer(max_epochs=n, default_root_dir=str(tmp_path / "run"), enable_progress_bar=False)
    state_res = resumed.fit(DSMModule(**SMALL), dm, seed=2, ckpt_path="last")
    assert resumed.train_chunk._cache_size() == 1
    assert resumed.loss_history == full.loss_history
    _assert_trees_identical(state_res.params, state_full.params)


def test_resume_from_missing_checkpoint_is_an_input_error(tmp_path):
    trainer = Trainer(max_epochs=2, default_root_dir=str(tmp_path), enable_progress_bar=False)
    with pytest.raises(DSMInputError, match=r"checkpoint not found: .*last.msgpack \(nothing to resume; drop --ckpt_path"):
        trainer.fit(DSMModule(**SMALL), DSMDataModule("seed_mixture"), ckpt_path="last")


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before its first checkpoint: {proc.communicate()[1][-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.002)


def test_resume_after_sigkill_is_exact(tmp_path):
    """Kill ``dsm-jax fit`` (a subprocess) with SIGKILL as soon as its first checkpoint exists,
    resume it with ``--ckpt_path last`` (in this process, through the same ``main``): the final
    parameters and loss history equal an uninterrupted run's, bit for bit."""
    from jax_dsm.cli import main

    n, chunk = 200, 5  # 40 chunks: the kill lands long before the end, even on a loaded machine
    run = tmp_path / "run"
    args = [
        sys.executable, "-m", "jax_dsm.cli", "fit", "--config", str(REPO / "configs" / "seed.yaml"),
        f"--trainer.max_epochs={n}", f"--trainer.epochs_per_chunk={chunk}", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={run}", "--model.hidden_dims=[32,32]", "--model.lr=1e-4", "--seed_everything=3",
        "--model.sampler.n_chains=10", "--model.sampler.langevin.n_steps=20", "--model.sampler.trajectory_steps=0",
    ]
    ckpt = run / "checkpoints" / "last.msgpack"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JAX_DEFAULT_MATMUL_PRECISION": "highest"}  # as in this process
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        _wait_for(ckpt, proc, timeout=120)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(serialization.msgpack_restore(ckpt.read_bytes())["epoch"])
    assert 0 < killed_at < n and killed_at % chunk == 0, killed_at
    assert not (run / "weights.safetensors").exists()  # it never finished

    main(args[3:] + ["--ckpt_path=last"])  # args[3:]: "fit" and its options
    payload = serialization.msgpack_restore(ckpt.read_bytes())
    assert int(payload["epoch"]) == n
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == n and metrics["framework"] == "jax"

    # The uninterrupted run, in this process, from the same settings.
    dm = DSMDataModule("seed_mixture", batch_size=8, seed=0)
    trainer = Trainer(max_epochs=n, default_root_dir=str(tmp_path / "ref"), enable_progress_bar=False, epochs_per_chunk=chunk)
    state = trainer.fit(DSMModule(hidden_dims=[32, 32], lr=1e-4), dm, seed=3)
    np.testing.assert_array_equal(np.asarray(payload["loss_history"], np.float64), np.asarray(trainer.loss_history))
    assert metrics["final_loss"] == trainer.loss_history[-1]
    _, variables, _ = load_weights(run / "weights.safetensors")
    _assert_trees_identical(variables["params"], state.params)


# ---------------------------------------------------------------------------------------------
# Weight files


@pytest.mark.parametrize("conditional", [False, True])
def test_safetensors_round_trip_is_exact(tmp_path, conditional):
    from safetensors.numpy import load_file

    model = ScoreMLP(hidden_dims=(16, 8), conditional=conditional)
    variables = model.init(jax.random.PRNGKey(4), jnp.zeros((1, 2)), jnp.ones((1,)) if conditional else None)
    config = {"framework": "jax", "model": {"hidden_dims": [16, 8]}, "sigmas": [3.0], "epochs": 7}
    path = save_weights(tmp_path / "w.safetensors", variables, config)

    raw = load_file(str(path))  # the file itself: canonical names and (in, out) kernels (docs/parity.md)
    width_in = 3 if conditional else 2
    assert {k: v.shape for k, v in raw.items()} == {
        "dense_0.kernel": (width_in, 16), "dense_0.bias": (16,),
        "dense_1.kernel": (16, 8), "dense_1.bias": (8,),
        "dense_2.kernel": (8, 2), "dense_2.bias": (2,),
    }
    np.testing.assert_array_equal(raw["dense_0.kernel"], np.asarray(variables["params"]["dense_0"]["kernel"]))

    model2, variables2, config2 = load_weights(path)
    assert model2.hidden_dims == (16, 8) and model2.conditional == conditional
    assert config2 == config
    _assert_trees_identical(variables2, variables)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 2)), jnp.float32)
    s = jnp.full((5,), 0.7) if conditional else None
    np.testing.assert_array_equal(np.asarray(model2.apply(variables2, x, s)), np.asarray(model.apply(variables, x, s)))


def test_weights_shape_mismatch_raises_input_error(tmp_path):
    model = ScoreMLP(hidden_dims=(16, 16))
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    canonical = to_canonical(variables)
    with pytest.raises(DSMInputError, match=r"\[2, 16, 16, 2\].*\[2, 32, 32, 2\]"):
        from_canonical(canonical, ScoreMLP(hidden_dims=(32, 32)))
    bad = dict(canonical)
    bad["dense_1.bias"] = np.zeros(15, np.float32)
    with pytest.raises(DSMInputError, match=r"dense_1.bias has shape \(15,\)"):
        from_canonical(bad)
    bad = dict(canonical)
    bad["dense_1.kernel"] = np.zeros((17, 16), np.float32)
    with pytest.raises(DSMInputError, match="dense_1.kernel has 17 inputs but dense_0 has 16 outputs"):
        from_canonical(bad)
    # The same through a file: check happens at load time, with the file named.
    from safetensors.numpy import save_file

    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(DSMInputError, match="bad.safetensors"):
        load_weights(tmp_path / "bad.safetensors")
    with pytest.raises(DSMInputError, match="weights file not found"):
        load_weights(tmp_path / "nope.safetensors")
