"""Training parity.

* The Lightning Trainer against a plain torch loop on the same batches and noise (equal weights
  after 100 steps), and jax_dsm's compiled training loop against the same plain loop: value
  parity, run per device in ``test_values.py`` (``lightning_trainer`` and ``jax_training_loop``
  of ``compare.py``).
* Full training in each framework from the same initial weights (the fixtures' ``init`` set),
  each with its own RNG for the batch order and the DSM noise, here: R independent runs per
  framework (seeds 0 … R−1) of the recipe (docs/method.md §1: seed-mixture data, batch 8 reshuffled every
  epoch, SGD lr 1e-5, DSM sum loss, σ = 3), each summarised by its final loss (mean of the last
  epochs), the relative Fisher divergence of the trained score to the exact score of Υ_σ, and the
  mode-2 weight and gap mass of 2000 samples drawn from the trained score with the same
  framework's own sampler and RNG (``training.run_statistics``).

How the spread is estimated: from the runs themselves. For each statistic the R torch values and
the R JAX values go into Welch's two-sample t-test, whose standard error is built from each
framework's run-to-run standard deviation (training noise and sampling noise together). The
frameworks agree when no statistic's p-value falls below 1e-4 / m (Bonferroni over the m = 4
statistics: family-wise false-alarm rate ≤ 1e-4; fixed seeds; no rerun). The negative control
(Lightning with the learning rate doubled) shows that this spread is tight enough to see a real
change in training.

CI: 10 epochs, R = 8 (measured run-to-run SD of the Fisher divergence ≈ 0.005 on a CPU against a
difference of ≈ 0.05 for a doubled learning rate). With R = 5 the control was too weak on a GPU,
where torch's CUDA generator draws other batches and noise: there the torch runs' SD was 0.011 and
Welch's test, on about 6 degrees of freedom, gave p = 1.1e-4 against the bound 2.5e-5.
``slow``: the full 1000-epoch recipe, R = 4.

Whole runs (``test_whole_runs_*``): as a user runs them, each framework also draws its own
initial weights, with the same ``model.init`` law on both sides (``dsm_common.init``), so the
spread now holds the initialisation too. The same statistics and Welch tests compare R runs per
framework, on the recipe (``configs/seed.yaml``) and on NCSN (``configs/ncsn.yaml``: annealed
Langevin samples, the Fisher divergence at σ_L), and a negative control (the learning rate
changed on one side) must be told apart. ``slow``: the full recipe (R = 8, ``model.init=flax``;
control lr × 10) and the full NCSN configuration (R = 4, ``flax``; control lr ÷ 10). CI: the
recipe at 50 epochs, R = 8, each law; its control runs from the ``torch`` start (lr × 10: final
loss 0.41 ± 0.03 against 0.75 ± 0.05, measured). From the Flax start 50–100 epochs leave the
runs dominated by their initial weights (first-epoch loss ≈ 39): there lr × 10 was seen only at
p = 2.6e-4 and lr ÷ 100 at 1e-3, against the bound of 2.5e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dsm_common.mixtures import seed_mixture
from parity_tests.fixture_data import weight_set
from parity_tests.stats import FAMILY_ALPHA
from parity_tests.training import (
    STATISTICS,
    annealed_statistics,
    fit_jax,
    fit_lightning,
    load_config,
    run_statistics,
    train_jax,
    train_lightning,
)

SIZES = [
    pytest.param(dict(name="ci", epochs=10, replicates=8, n_chains=2000, step_size=0.1, n_steps=100, last_epochs=3),
                 id="ci"),
    pytest.param(dict(name="full", epochs=1000, replicates=4, n_chains=2000, step_size=0.01, n_steps=1000,
                      last_epochs=50), id="full-recipe", marks=pytest.mark.slow),
]
THRESHOLD = FAMILY_ALPHA / len(STATISTICS)


def welch_table(a: dict[str, list[float]], b: dict[str, list[float]], names=("torch", "jax")) -> tuple[list, str]:
    """Per statistic: Welch's t-test p-value; and a printable table of means ± run-to-run SDs."""
    rows = []
    lines = [f"{'statistic':<18} {names[0] + ' mean ± sd':>26} {names[1] + ' mean ± sd':>26} {'p (Welch)':>10}"]
    for k in STATISTICS:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        same = np.all(x == x[0]) and np.all(y == x[0])
        p = 1.0 if same else float(stats.ttest_ind(x, y, equal_var=False).pvalue)
        rows.append((k, p))
        lines.append(f"{k:<18} {x.mean():>14.5g} ± {x.std(ddof=1):<9.3g} {y.mean():>14.5g} ± {y.std(ddof=1):<9.3g} {p:>10.3g}")
    lines.append(f"reject below p = {THRESHOLD:.2g} (family-wise 1e-4, Bonferroni over {len(STATISTICS)})")
    return rows, "\n".join(lines)


@pytest.fixture(scope="module")
def trained(fx, tmp_path_factory):
    """Cache of run statistics: (device, size, framework, lr) → {statistic: [R values]}."""
    cache: dict = {}
    target = seed_mixture().convolve(float(fx["sigma"]))

    def get(device, size, framework, lr=1e-5):
        key = (device.name, size["name"], framework, lr)
        if key not in cache:
            train = train_lightning if framework == "torch" else train_jax
            out = {k: [] for k in STATISTICS}
            for seed in range(size["replicates"]):
                root = tmp_path_factory.mktemp(f"{framework}-{lr:g}-{seed}")
                run = train(weight_set(fx, "init"), seed, size["epochs"], device, root, lr=lr)
                assert len(run.losses) == size["epochs"]
                assert run.losses[-size["last_epochs"]:].mean() < run.losses[0], f"{framework} run {seed} did not learn"
                sample_seed = {"torch": 1000, "jax": 2000}[framework] + 100 * int(lr != 1e-5) + seed
                st = run_statistics(run, target, device, size["n_chains"], size["step_size"], size["n_steps"],
                                    size["last_epochs"], sample_seed)
                for k in STATISTICS:
                    out[k].append(st[k])
            cache[key] = out
        return cache[key]

    return get


@pytest.mark.parametrize("size", SIZES)
def test_full_training_agrees_within_run_to_run_spread(size, device, trained):
    rows, table = welch_table(trained(device, size, "torch"), trained(device, size, "jax"))
    print(table)
    assert all(p >= THRESHOLD for _, p in rows), "trained models differ beyond their spread:\n" + table


@pytest.mark.parametrize("size", SIZES)
def test_negative_control_doubled_learning_rate_is_told_apart(size, device, trained):
    rows, table = welch_table(trained(device, size, "torch", lr=2e-5), trained(device, size, "jax"),
                              names=("torch lr 2e-5", "jax lr 1e-5"))
    print(table)
    assert any(p < THRESHOLD for _, p in rows), "the test did not see a doubled learning rate:\n" + table


# ----------------------------------------------------------------------------- whole runs
WHOLE = [
    pytest.param(dict(name="ci", config="seed", epochs=50, replicates=8, n_chains=2000, step_size=0.1, n_steps=100,
                      last_epochs=10, control_lr=10.0, control_init="torch"), id="recipe-ci"),
    pytest.param(dict(name="full", config="seed", epochs=1000, replicates=8, n_chains=2000, step_size=0.01,
                      n_steps=1000, last_epochs=50, control_lr=10.0, control_init="flax"),
                 id="recipe-full", marks=pytest.mark.slow),
    pytest.param(dict(name="ncsn-full", config="ncsn", epochs=None, replicates=4, n_chains=2000, n_steps=None,
                      last_epochs=100, control_lr=0.1, control_init="flax"), id="ncsn-full", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """Cache of whole-run statistics: (device, size, framework, init, lr factor) → {statistic: [R values]}."""
    cache: dict = {}

    def get(device, size, framework, init, lr_factor=1.0):
        key = (device.name, size["name"], framework, init, lr_factor)
        if key not in cache:
            base = load_config(size["config"])
            overrides = {"model.init": init, "model.lr": base["model"]["lr"] * lr_factor}
            if size["epochs"]:
                overrides["trainer.max_epochs"] = size["epochs"]
            if size["n_steps"] and size["config"] != "seed":
                sampler = base["model"]["sampler"]
                overrides["model.sampler"] = dict(sampler, annealed_langevin=dict(sampler["annealed_langevin"],
                                                                                  n_steps_each=size["n_steps"]))
            cfg = load_config(size["config"], **overrides)
            fit = fit_lightning if framework == "torch" else fit_jax
            out = {k: [] for k in STATISTICS}
            for seed in range(size["replicates"]):
                run = fit(cfg, seed, device, tmp_path_factory.mktemp(f"whole-{framework}-{init}-{seed}"))
                sample_seed = {"torch": 3000, "jax": 4000}[framework] + 100 * int(lr_factor != 1.0) + seed
                if run.conditional:
                    st = annealed_statistics(run, device, size["n_chains"], size["last_epochs"], sample_seed)
                else:
                    st = run_statistics(run, seed_mixture().convolve(float(run.sigmas[0])), device, size["n_chains"],
                                        size["step_size"], size["n_steps"], size["last_epochs"], sample_seed)
                for k in STATISTICS:
                    out[k].append(st[k])
            cache[key] = out
        return cache[key]

    return get


def _whole_laws(size):
    return ["flax", "torch"] if size["name"] == "ci" else ["flax"]


@pytest.mark.parametrize("size", WHOLE)
def test_whole_runs_from_the_same_init_law_agree_in_distribution(size, device, whole):
    for init in _whole_laws(size):
        rows, table = welch_table(whole(device, size, "torch", init), whole(device, size, "jax", init))
        print(f"{size['config']}, model.init={init}, R={size['replicates']}\n{table}")
        assert all(p >= THRESHOLD for _, p in rows), f"model.init={init}: whole runs differ beyond their spread:\n{table}"


@pytest.mark.parametrize("size", WHOLE)
def test_whole_runs_negative_control_learning_rate_is_told_apart(size, device, whole):
    factor, init = size["control_lr"], size["control_init"]
    rows, table = welch_table(whole(device, size, "torch", init), whole(device, size, "jax", init, factor),
                              names=("torch", f"jax lr ×{factor:g}"))
    print(f"{size['config']}, model.init={init}, R={size['replicates']}\n{table}")
    assert any(p < THRESHOLD for _, p in rows), f"the test did not see a learning rate ×{factor:g}:\n" + table
