"""The weight average (``model.ema_decay``) on both sides, beyond the parity rows (``ema`` in
``parity_tests/compare.py``: both training loops against the convention written out by hand).

* JAX: a run stopped and resumed ends with exactly the average (and weights) of an uninterrupted
  run, and the trained state's ``params`` are the average, not the last weights.
* Lightning: a checkpoint holds the average (``state_dict``) and the weights
  (``current_model_state``); resuming restores both, and ``fit``'s weight file is the average.
* Either command line refuses to resume a checkpoint under another ``model.ema_decay`` (a
  checkpoint's ``state_dict`` is the average: loaded as the weights, training would go on from it).
* A decay outside [0, 1) is refused in one line.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from conftest import fails_in_one_line, run_torch_cli_inprocess, tiny_fit_args
from safetensors.numpy import load_file

from dsm_common.validation import DSMInputError

DECAY = 0.9


def _leaves(tree):
    import jax

    return [np.asarray(v) for v in jax.tree_util.tree_leaves(tree)]


@pytest.mark.usefixtures("jax_full_float32")
def test_jax_resume_keeps_the_average_exactly(tmp_path):
    from jax_dsm.data import DSMDataModule
    from jax_dsm.module import DSMModule
    from jax_dsm.trainer import Trainer

    dm = DSMDataModule("seed_mixture", batch_size=64)
    small = dict(hidden_dims=[16, 16], lr=1e-3, optimizer="adam", ema_decay=DECAY)

    def trainer(root, epochs):
        return Trainer(max_epochs=epochs, default_root_dir=str(tmp_path / root), enable_progress_bar=False,
                       epochs_per_chunk=2, logger=False)

    full = trainer("full", 8)
    state_full = full.fit(DSMModule(**small), dm, seed=1)
    trainer("part", 4).fit(DSMModule(**small), dm, seed=1)
    resumed = trainer("part", 8)
    state_res = resumed.fit(DSMModule(**small), dm, seed=1, ckpt_path="last")
    assert resumed.loss_history == full.loss_history
    for a, b in zip(_leaves((state_res.params, state_res.ema_params)), _leaves((state_full.params, state_full.ema_params))):
        np.testing.assert_array_equal(a, b)
    # The trained state's params are the average; the checkpoint keeps the last weights beside it.
    from flax import serialization

    payload = serialization.msgpack_restore(full.checkpoint_path.read_bytes())
    assert payload["ema_decay"] == DECAY
    for a, b in zip(_leaves(state_full.params), _leaves(payload["state"]["ema_params"])):
        np.testing.assert_array_equal(a, b)
    gap = max(np.max(np.abs(a - b)) for a, b in zip(_leaves(state_full.params), _leaves(payload["state"]["params"])))
    assert gap > 1e-4  # the average is not the last weights


class _CaptureAtStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        ema = next(cb for cb in trainer.callbacks if type(cb).__name__ == "StepEMA")
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.average = {k: v.clone() for k, v in ema._average_model.module.state_dict().items()}
        self.n_averaged = int(ema._average_model.n_averaged)


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_lightning_checkpoint_holds_and_restores_both(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from torch_dsm.data import DSMDataModule
    from torch_dsm.module import DSMModule

    def fit(epochs, ckpt_path=None, capture=None):
        L.seed_everything(0, verbose=False)
        module = DSMModule(hidden_dims=[16, 16], lr=1e-3, optimizer="adam", ema_decay=DECAY)
        dm = DSMDataModule("seed_mixture", batch_size=64, batches_per_step=2)
        trainer = L.Trainer(max_epochs=epochs, default_root_dir=str(tmp_path), logger=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True, enable_version_counter=False),
                                       *([capture] if capture else [])])
        trainer.fit(module, dm, ckpt_path=ckpt_path)
        return module, trainer

    module, trainer = fit(3)
    ckpt = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    # After fit the module holds the average, which is the checkpoint's state_dict.
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, ckpt["state_dict"][k], rtol=0, atol=0)
    gap = max(float((ckpt["state_dict"][k] - v).abs().max()) for k, v in ckpt["current_model_state"].items())
    assert gap > 1e-4
    assert ckpt["hyper_parameters"]["ema_decay"] == DECAY

    capture = _CaptureAtStart()
    fit(5, ckpt_path=tmp_path / "last.ckpt", capture=capture)
    assert capture.n_averaged == trainer.global_step  # one update per optimiser step (2 mini-batches a step)
    for k, v in ckpt["current_model_state"].items():
        torch.testing.assert_close(capture.weights[k], v, rtol=0, atol=0)  # training goes on from the weights …
    for k, v in ckpt["state_dict"].items():
        torch.testing.assert_close(capture.average[k], v, rtol=0, atol=0)  # … and the average from the average


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_torch_fit_writes_the_average_and_refuses_another_decay(tmp_path, capsys):
    run = tmp_path / "run"
    run_torch_cli_inprocess(tiny_fit_args(run, f"--model.ema_decay={DECAY}", "--model.lr=1e-3"))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    w = load_file(str(run / "weights.safetensors"))
    np.testing.assert_array_equal(w["dense_2.bias"], ckpt["state_dict"]["model.dense.2.bias"].numpy())
    assert not np.array_equal(w["dense_2.bias"], ckpt["current_model_state"]["model.dense.2.bias"].numpy())
    line = fails_in_one_line("torch", tiny_fit_args(run, "--ckpt_path=last", epochs=4), capsys)
    assert f"trained with model.ema_decay={DECAY}, the model has model.ema_decay=None" in line


def test_jax_fit_writes_the_average_and_refuses_another_decay(tmp_path, capsys):
    from flax import serialization

    from jax_dsm.cli import main
    from jax_dsm.weights import load_weights

    run = tmp_path / "run"
    args = ["fit", "--config", str(tiny_fit_args(run)[2]), f"--trainer.default_root_dir={run}",
            "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false", "--model.hidden_dims=[16,16]",
            "--model.lr=1e-3", "--model.sampler.n_chains=10", "--model.sampler.langevin.n_steps=20",
            "--model.sampler.trajectory_steps=0"]
    main([*args, f"--model.ema_decay={DECAY}"])
    payload = serialization.msgpack_restore((run / "checkpoints" / "last.msgpack").read_bytes())
    _, variables, stored = load_weights(run / "weights.safetensors")
    assert stored["model"]["ema_decay"] == DECAY
    for a, b in zip(_leaves(variables["params"]), _leaves(payload["state"]["ema_params"])):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(variables["params"]), _leaves(payload["state"]["params"])))
    line = fails_in_one_line("jax", [*args, "--ckpt_path=last", "--model.ema_decay=0.5", "--trainer.max_epochs=4"], capsys)
    assert f"trained with model.ema_decay={DECAY}, the model has model.ema_decay=0.5" in line


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("decay", ["1.0", "-0.1"])
def test_decay_outside_the_unit_interval_is_refused(framework, decay, tmp_path, capsys):
    line = fails_in_one_line(framework, tiny_fit_args(tmp_path / "run", f"--model.ema_decay={decay}"), capsys)
    assert "model.ema_decay must be in [0, 1)" in line and decay in line


@pytest.mark.parametrize("kw, fragment", [
    ({"ema_decay": 1.5}, r"model.ema_decay must be in \[0, 1\)"),
    ({"optimizer": "adam", "weight_decay": 0.1}, r"model.weight_decay=0.1 needs model.optimizer=adamw"),
])
def test_modules_refuse_bad_options(kw, fragment):
    from jax_dsm.module import DSMModule as JaxModule
    from torch_dsm.module import DSMModule as TorchModule

    for cls in (TorchModule, JaxModule):
        with pytest.raises(DSMInputError, match=fragment):
            cls(**kw)
