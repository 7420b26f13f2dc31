"""DSMModule + DSMDataModule under a plain Lightning Trainer: the recipe's batching and SGD updates."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from dsm_common.datasets import load_dataset
from torch_dsm.data import DSMDataModule
from torch_dsm.module import DSMModule

torch.set_num_threads(1)


def test_datamodule_batches_cover_each_point_once_per_epoch():
    """300 points in batches of 8: 38 batches, the last holding 4 (docs/method.md §1), a permutation every epoch."""
    dm = DSMDataModule(batch_size=8)
    points = load_dataset("seed_mixture").points
    np.testing.assert_array_equal(dm.points.numpy(), points)
    torch.manual_seed(0)
    epochs = []
    for _ in range(2):
        batches = [b[0] for b in dm.train_dataloader()]
        assert len(batches) == 38 and [len(b) for b in batches] == [8] * 37 + [4]
        cat = torch.cat(batches).numpy()
        # The same 300 points, each once (rows sorted lexicographically to compare as sets).
        np.testing.assert_array_equal(np.unique(cat, axis=0), np.unique(points, axis=0))
        epochs.append(cat)
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch


def test_grouped_batches_on_the_cpu_skip_lightnings_transfer():
    """The grouped mini-batches reach training_step as the loader made them on the CPU (the same
    tensors, not copies); other batches and devices go through Lightning's own transfer."""
    dm = DSMDataModule(batch_size=8, batches_per_step=64)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, list) and len(batch) == 38
    assert dm.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    moved = dm.transfer_batch_to_device(batch, torch.device("meta"), 0)  # Lightning's way: new tensors there
    assert all(x.device.type == "meta" and x.shape == y.shape for (x,), (y,) in zip(moved, batch))
    single = (batch[0][0],)
    out = dm.transfer_batch_to_device(single, torch.device("cpu"), 0)
    assert out[0] is single[0]  # Lightning's own transfer: .to(cpu) of a CPU tensor is the tensor


class _HookedUpdate(DSMModule):
    """Keeps Lightning's manual_backward and LightningOptimizer.step (and their hooks) in the grouped
    inner loop."""

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self._plain_update = False


class _CountingHooks(L.Callback):
    """Counts the calls of the hooks around a backward pass and an optimiser step."""

    def __init__(self):
        self.calls = {"on_before_backward": 0, "on_after_backward": 0, "on_before_optimizer_step": 0}

    def on_before_backward(self, trainer, pl_module, loss):
        self.calls["on_before_backward"] += 1

    def on_after_backward(self, trainer, pl_module):
        self.calls["on_after_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.calls["on_before_optimizer_step"] += 1


def _train(batches_per_step: int, epochs: int = 2, cls=DSMModule, callbacks=None):
    L.seed_everything(0, verbose=False)
    module = cls(hidden_dims=[16, 16], lr=1e-3)
    dm = DSMDataModule(batch_size=8, batches_per_step=batches_per_step)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, dm)
    return module, trainer


@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
def test_batches_per_step_gives_the_same_updates():
    """Grouping K = 5 mini-batches into one Lightning step takes the same 38 SGD steps an epoch in the
    same order with the same noise, so the weights and per-epoch losses match K = 1 (float32 sums in
    the same order: equal to 1e-6 relative), with the inner loop's plain loss.backward() and
    optimiser step (fp32 on one device) and with Lightning's manual_backward and
    LightningOptimizer.step alike."""
    grouped = list(DSMDataModule(batch_size=8, batches_per_step=5).train_dataloader())
    assert [len(g) for g in grouped] == [5] * 7 + [3]  # 38 mini-batches in ⌈38/5⌉ = 8 loader items
    assert [len(x) for g in grouped for (x,) in g] == [8] * 37 + [4]
    m1, t1 = _train(1)
    m5, t5 = _train(5)
    m5h, t5h = _train(5, cls=_HookedUpdate)
    assert m5._plain_update and not m5h._plain_update and not m1._plain_update  # fp32, one CPU
    assert t1.global_step == t5.global_step == t5h.global_step == 2 * 38  # one optimiser step per mini-batch
    for m in (m5, m5h):
        assert len(m1.loss_history) == len(m.loss_history) == 2
        np.testing.assert_allclose(m.loss_history, m1.loss_history, rtol=1e-6)
        for a, b in zip(m1.model.parameters(), m.model.parameters()):
            np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-6, atol=1e-7)
    # And training did something: the weights moved from their initial values.
    L.seed_everything(0, verbose=False)
    init = DSMModule(hidden_dims=[16, 16], lr=1e-3)
    assert not torch.equal(init.model.dense[0].weight, m1.model.dense[0].weight)


@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
def test_grouped_steps_call_the_update_hooks_a_callback_overrides():
    """The grouped inner loop skips Lightning's hook calls only when nothing overrides those hooks: with
    a callback that does, each of the 2 × 38 updates calls its on_before_backward, on_after_backward
    and on_before_optimizer_step once, as in Lightning's usual loop (K = 1), and the weights are the
    same (1e-6 relative)."""
    plain, _ = _train(5)
    counted = {k: _CountingHooks() for k in (1, 5)}
    m1, _ = _train(1, callbacks=[counted[1]])
    m5, t5 = _train(5, callbacks=[counted[5]])
    assert plain._plain_update and not m5._plain_update
    expected = dict.fromkeys(counted[5].calls, 2 * 38)
    assert counted[1].calls == expected and counted[5].calls == expected
    assert t5.global_step == 2 * 38
    for m in (m1, m5):
        for a, b in zip(plain.model.parameters(), m.model.parameters()):
            np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-6, atol=1e-7)


class _OwnBackward(DSMModule):
    """Overrides LightningModule.backward (what manual_backward's precision plugin calls)."""

    calls = 0

    def backward(self, loss, *args, **kwargs):
        type(self).calls += 1
        loss.backward(*args, **kwargs)


@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
def test_grouped_steps_call_a_module_s_own_backward():
    """A module that overrides ``backward`` keeps Lightning's calls: its backward runs once per update."""
    m, _ = _train(5, epochs=1, cls=_OwnBackward)
    assert not m._plain_update and _OwnBackward.calls == 38
