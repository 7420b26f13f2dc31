"""The NCSN configurations (configs/ncsn*.yaml) run through both command lines, and their optimiser schedule.

Every ``configs/ncsn*.yaml`` is read by ``dsm-jax fit`` (and ``configs/ncsn.yaml`` by
``dsm-torch fit``) at a tiny size (2 epochs, a few chains and steps): the run writes the per-level
loss and the side-by-side plain-vs-annealed figure, its samples are finite, and Old Faithful's
metrics carry the split-half energy check. The cosine learning-rate schedule the configs use
gives the same rates in both frameworks (optax's ``cosine_decay_schedule``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import is_png, read_metrics, run_torch_cli_inprocess

REPO = Path(__file__).resolve().parents[1]
NCSN_CONFIGS = sorted((REPO / "configs").glob("ncsn*.yaml"))


def tiny_args(config: Path, root: Path, n_chains: int = 13) -> list[str]:
    return [
        "--config", str(config),
        "--trainer.max_epochs=2",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        f"--model.sampler.n_chains={n_chains}",
        "--model.sampler.annealed_langevin.n_steps_each=3",
        "--model.sampler.trajectory_steps=0",
    ]


def check_ncsn_run(root: Path, config: Path, framework: str) -> dict:
    cfg = yaml.safe_load(config.read_text())
    m = read_metrics(root)
    levels = cfg["model"]["ncsn"]["num_scales"]
    assert m["framework"] == framework and m["dataset"] == cfg["data"]["dataset"]
    assert m["sampler"] == "annealed_langevin" and m["nfe"] == 3 * levels + 1
    assert len(m["per_level_loss"]["sigma"]) == levels == len(m["per_level_loss"]["loss"])
    assert np.all(np.diff(m["per_level_loss"]["sigma"]) < 0)  # largest first
    assert m["per_level_loss"]["sigma"][-1] == pytest.approx(cfg["model"]["ncsn"]["sigma_min"])
    assert np.isfinite(m["per_level_loss"]["loss"]).all()
    assert np.isfinite(np.load(root / "samples.npy")).all()
    for png in ("sampler_comparison.png", "loss.png", "samples.png"):
        assert is_png(root / png), png
    return m


def test_configs_exist():
    names = {p.name for p in NCSN_CONFIGS}
    assert {"ncsn.yaml", "ncsn_old_faithful.yaml", "ncsn_sklearn.yaml"} <= names
    for path in NCSN_CONFIGS:
        cfg = yaml.safe_load(path.read_text())
        assert cfg["model"]["optimizer"] == "adam" and cfg["model"]["lr_schedule"] == "cosine"
        assert cfg["model"]["objective"] == "ncsn" and cfg["model"]["ncsn"]["num_scales"] > 1
        assert path.read_text().lstrip().startswith("#")  # the comment block with the measured figures


@pytest.mark.parametrize("config", NCSN_CONFIGS, ids=lambda p: p.stem)
def test_jax_train_tiny(config, tmp_path):
    from jax_dsm.cli import fit_main

    n_chains = 140 if "faithful" in config.stem else 13  # the split-half check needs ≥ 136 samples
    fit_main(tiny_args(config, tmp_path, n_chains))
    m = check_ncsn_run(tmp_path, config, "jax")
    if "faithful" in config.stem:
        assert m["split_half_energy"]["n_per_half"] == 136
        assert m["units"] == "min"


def test_torch_fit_tiny(tmp_path):
    config = REPO / "configs" / "ncsn.yaml"
    run_torch_cli_inprocess(["fit", *tiny_args(config, tmp_path)])
    check_ncsn_run(tmp_path, config, "torch")


def test_cosine_schedule_same_in_both_frameworks():
    """Adam with a constant unit gradient moves each parameter by lr·f(k): compare with torch's rates."""
    import jax
    import jax.numpy as jnp
    import torch

    from dsm_common.datasets import load_dataset
    from jax_dsm.module import DSMModule as JaxModule
    from torch_dsm.module import _cosine_factor

    total, lr = 12, 1e-3
    jm = JaxModule(objective="ncsn", ncsn={"num_scales": 3}, optimizer="adam", lr=lr, lr_schedule="cosine")
    jm.setup(load_dataset("seed_mixture"), total_steps=total)
    state = jm.init_state(jax.random.PRNGKey(0))
    grads = jax.tree_util.tree_map(jnp.ones_like, state.params)
    opt_state, steps = state.opt_state, []
    for _ in range(total + 2):
        updates, opt_state = jm.tx.update(grads, opt_state, state.params)
        steps.append(-float(jax.tree_util.tree_leaves(updates)[0].ravel()[0]))

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: _cosine_factor(total, k))
    rates = []
    for _ in range(total + 2):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [lr * 0.5 * (1 + math.cos(math.pi * min(k, total) / total)) for k in range(total + 2)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(steps, expected, rtol=1e-5, atol=1e-9)  # Adam's eps moves it by ~1e-8


def test_cosine_needs_the_run_length():
    import jax

    from dsm_common.datasets import load_dataset
    from jax_dsm.module import DSMModule as JaxModule

    module = JaxModule(objective="ncsn", ncsn={"num_scales": 3}, optimizer="adam", lr_schedule="cosine")
    with pytest.raises(ValueError, match="setup"):
        module.init_state(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="total number"):
        module.setup(load_dataset("seed_mixture"))


def test_bad_schedule_is_an_input_error():
    from dsm_common.validation import DSMInputError
    from jax_dsm.module import DSMModule as JaxModule
    from torch_dsm.module import DSMModule as TorchModule

    for cls in (JaxModule, TorchModule):
        with pytest.raises(DSMInputError, match="lr_schedule"):
            cls(lr_schedule="linear")
