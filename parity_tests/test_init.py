"""Initial weights: for each ``model.init`` law the two frameworks draw from the same law.

For each law (``flax``, ``torch``) and network (the recipe's unconditional MLP and the
noise-conditional one), R initialisations per framework, each side from its own random stream
(torch's global generator seeded 0 … R−1; JAX keys 0 … R−1). Entries of one tensor are
independent draws of one law (``dsm_common.init.init_law``), so each tensor's entries are pooled
over the R draws and checked:

* each side against the exact law: one-sample Kolmogorov–Smirnov;
* the two sides against each other: two-sample Kolmogorov–Smirnov, and z-tests on the mean and
  the variance (standard error of the variance from the fourth central moment);
* zero biases (``flax``): exactly zero on both sides.

A test rejects when any p-value falls below 1e-4 / m (Bonferroni over its m checks: family-wise
false-alarm rate ≤ 1e-4; fixed seeds; no rerun). The negative control (one side drawn with the
other law) must be rejected by the same checks. Bounds and their reasons: ``docs/parity.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy import stats

from dsm_common.init import init_law
from jax_dsm.models import ScoreMLP as JaxMLP
from parity_tests.stats import FAMILY_ALPHA, Battery, Check, _z_check
from torch_dsm.models import ScoreMLP as TorchMLP

R = 64  # initialisations per framework
MAX_ENTRIES = 100_000  # per tensor and side (the 256 × 256 kernels hold 4.2 M over R draws)
NETWORKS = [pytest.param(False, id="unconditional"), pytest.param(True, id="conditional")]


def torch_draws(law: str, conditional: bool, dev) -> dict[str, np.ndarray]:
    """Canonical tensors of R torch initialisations, stacked: name → (R, *shape) float64."""
    out: dict[str, list] = {}
    for seed in range(R):
        torch.manual_seed(seed)
        with torch.device(dev.torch):
            model = TorchMLP((256, 256), conditional=conditional, initialization=law)
        for i, layer in enumerate(model.dense):
            out.setdefault(f"dense_{i}.kernel", []).append(layer.weight.detach().cpu().numpy().T)
            out.setdefault(f"dense_{i}.bias", []).append(layer.bias.detach().cpu().numpy())
    return {k: np.stack(v).astype(np.float64) for k, v in out.items()}


def jax_draws(law: str, conditional: bool, dev) -> dict[str, np.ndarray]:
    """Canonical tensors of R Flax initialisations (keys 0 … R−1), stacked like ``torch_draws``."""
    model = JaxMLP((256, 256), conditional=conditional, initialization=law)
    x = jnp.zeros((1, 2), jnp.float32)
    sigma = jnp.ones((1,)) if conditional else None
    with jax.default_device(dev.jax):
        keys = jnp.stack([jax.random.PRNGKey(s) for s in range(R)])
        params = jax.jit(jax.vmap(lambda k: model.init(k, x, sigma)["params"]))(keys)
    return {f"{name}.{kind}": np.asarray(p[kind], np.float64) for name, p in params.items() for kind in ("kernel", "bias")}


def law_battery(a: dict[str, np.ndarray], law_a: str, b: dict[str, np.ndarray], law_b: str) -> Battery:
    """The module docstring's checks of every tensor: side ``a`` drawn with ``law_a``, ``b`` with ``law_b``."""
    out = Battery(alpha=FAMILY_ALPHA)
    for name in sorted(a):
        fan_in = a[name].shape[1] if name.endswith("kernel") else a[name.replace("bias", "kernel")].shape[1]
        kind = name.split(".")[1]
        xa, xb = a[name].ravel()[:MAX_ENTRIES], b[name].ravel()[:MAX_ENTRIES]
        for side, x, law in (("torch", xa, law_a), ("jax", xb, law_b)):
            dist = init_law(law, kind, fan_in)
            if dist is None:  # zero biases
                out.checks.append(Check(f"{name} {side} all zero", float(np.abs(x).max()), float(np.all(x == 0))))
            else:
                res = stats.kstest(x, dist.cdf, method="asymp")
                out.checks.append(Check(f"{name} {side} KS vs law", float(res.statistic), float(res.pvalue)))
        if np.all(xa == 0) and np.all(xb == 0):
            continue
        out.checks.append(_z_check(f"{name} mean", xa.mean(), xa.var(ddof=1) / len(xa), xb.mean(), xb.var(ddof=1) / len(xb)))
        va, vb = xa.var(ddof=1), xb.var(ddof=1)
        m4a, m4b = np.mean((xa - xa.mean()) ** 4), np.mean((xb - xb.mean()) ** 4)
        out.checks.append(_z_check(f"{name} variance", va, (m4a - va**2) / len(xa), vb, (m4b - vb**2) / len(xb)))
        res = stats.ks_2samp(xa, xb, method="asymp")
        out.checks.append(Check(f"{name} KS torch vs jax", float(res.statistic), float(res.pvalue)))
    return out


@pytest.mark.parametrize("conditional", NETWORKS)
@pytest.mark.parametrize("law", ["flax", "torch"])
def test_both_sides_draw_initial_weights_from_the_same_law(law, conditional, device):
    battery = law_battery(torch_draws(law, conditional, device), law, jax_draws(law, conditional, device), law)
    print(battery.table())
    assert not battery.rejected, battery.table()


def test_native_is_each_frameworks_own_default(device):
    """``native`` is ``torch`` in torch_dsm (bitwise: the same draws) and ``flax`` in jax_dsm."""
    torch.manual_seed(3)
    native = TorchMLP((8,), initialization="native")
    torch.manual_seed(3)
    plain = torch.nn.Linear(2, 8), torch.nn.Linear(8, 2)  # nn.Linear's own default, same stream
    for layer, ref in zip(native.dense, plain):
        assert torch.equal(layer.weight, ref.weight) and torch.equal(layer.bias, ref.bias)
    x = jnp.zeros((1, 2), jnp.float32)
    key = jax.random.PRNGKey(3)
    a = JaxMLP((8,), initialization="native").init(key, x)
    b = JaxMLP((8,), initialization="flax").init(key, x)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda u, v: bool(jnp.array_equal(u, v)), a, b))


def test_negative_control_the_other_law_is_told_apart(device):
    """torch drawn with ``torch``, JAX with ``flax`` (the frameworks' defaults, which differ): each
    side matches its own law, and the checks between the sides reject."""
    battery = law_battery(torch_draws("torch", False, device), "torch", jax_draws("flax", False, device), "flax")
    print(battery.table())
    between = [c.name for c in battery.failed if "vs law" not in c.name]
    assert between and len(between) == len(battery.failed), "the checks did not see two different laws:\n" + battery.table()


def test_an_unknown_law_is_refused_with_the_same_message_on_both_sides():
    from dsm_common.validation import DSMInputError
    from jax_dsm.module import DSMModule as JaxModule
    from torch_dsm.module import DSMModule as TorchModule

    messages = []
    for make in (TorchModule, JaxModule, lambda init: TorchMLP((4,), initialization=init)):
        with pytest.raises(DSMInputError) as err:
            make(init="lecun")
        messages.append(str(err.value))
    assert len(set(messages)) == 1 and "model.init" in messages[0] and "'lecun'" in messages[0], messages


def test_the_chosen_law_reaches_the_trained_network():
    """``model.init`` of the training module builds its network with that law (zero biases: ``flax``)."""
    from jax_dsm.module import DSMModule as JaxModule
    from torch_dsm.module import DSMModule as TorchModule

    torch_module = TorchModule(hidden_dims=[16], init="flax")
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in torch_module.model.dense)
    jax_module = JaxModule(hidden_dims=[16], init="torch")
    params = jax_module.init_state(jax.random.PRNGKey(0)).params
    assert all(np.count_nonzero(np.asarray(p["bias"])) == p["bias"].size for p in params.values())
    bound = 1 / np.sqrt(2)
    assert np.abs(np.asarray(params["dense_0"]["kernel"])).max() <= bound
