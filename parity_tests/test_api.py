"""The twins line up: the public API of ``torch_dsm`` and ``jax_dsm``, module by module.

For every module both packages have, the public names (``__all__``) must be the same, and every
public function pair (and the constructors of the public classes) must take the same parameters
in the same order, of the same kinds (positional or keyword-only), with the same defaults. Random
inputs are keyword-only, last, in the order ``…, noise, rng``; with neither the random inputs nor
``rng`` both sides raise the same error with the same message. The differences that are the
frameworks' own are listed below with their reasons; anything else fails.
"""

from __future__ import annotations

import importlib
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

MODULES = ["data", "models", "losses", "sampling", "mixtures", "module", "weights"]

# Public names one side has and the other need not, and why.
ONE_SIDED = {
    ("jax_dsm", "data", "epoch_batches"):
        "on-device batch indices for the compiled loop (Lightning's DataLoader on the torch side)",
    ("jax_dsm", "sampling", "chunk_length"): "equal compiled chunks for the progress bar (torch steps in Python)",
    ("jax_dsm", "", "Trainer"): "the twin of Lightning's Trainer, which torch_dsm uses as it is",
}
# Parameters whose names follow each framework's form of the same thing, and why.
RENAMED = {
    ("weights", "to_canonical"): "torch passes the nn.Module, JAX its Flax variables",
    ("weights", "save_weights"): "torch passes the nn.Module, JAX its Flax variables",
}
# Parameters one side has and the other need not, and why.
EXTRA = {
    ("torch_dsm", "data", "DSMDataModule", "batches_per_step"):
        "mini-batches per Lightning step (the Trainer's fixed cost); JAX runs whole epochs in one scan",
    ("jax_dsm", "models", "ScoreMLP", "parent"): "Flax module plumbing",
    ("jax_dsm", "models", "ScoreMLP", "name"): "Flax module plumbing",
}
SIMPLE = (int, float, str, bool, type(None), tuple, list)


def _public(package: str, module: str) -> set[str]:
    mod = importlib.import_module(f"{package}.{module}" if module else package)
    return set(mod.__all__)


def _params(package: str, module: str, name: str) -> list[inspect.Parameter]:
    obj = getattr(importlib.import_module(f"{package}.{module}"), name)
    fn = obj.__init__ if inspect.isclass(obj) and "__init__" in vars(obj) else obj
    params = list(inspect.signature(fn).parameters.values())
    params = [p for p in params if p.name != "self"]
    return [p for p in params if (package, module, name, p.name) not in EXTRA]


@pytest.mark.parametrize("module", ["", *MODULES])
def test_the_same_public_names(module):
    a, b = _public("torch_dsm", module), _public("jax_dsm", module)
    allowed = {n for (pkg, mod, n) in ONE_SIDED if mod == module}
    assert a - allowed == b - allowed, f"torch_dsm.{module} and jax_dsm.{module} differ: {sorted(a ^ b)}"


@pytest.mark.parametrize("module", MODULES)
def test_the_same_signatures(module):
    for name in sorted(_public("torch_dsm", module) & _public("jax_dsm", module)):
        pa, pb = _params("torch_dsm", module, name), _params("jax_dsm", module, name)
        where = f"{module}.{name}"
        assert [p.kind for p in pa] == [p.kind for p in pb], f"{where}: parameter kinds differ: {pa} / {pb}"
        if (module, name) not in RENAMED:
            assert [p.name for p in pa] == [p.name for p in pb], f"{where}: {[p.name for p in pa]} / {[p.name for p in pb]}"
        for x, y in zip(pa, pb):
            if isinstance(x.default, SIMPLE) and isinstance(y.default, SIMPLE):
                assert x.default == y.default, f"{where}({x.name}): default {x.default!r} / {y.default!r}"
        names = [p.name for p in pa]
        if "rng" in names:
            keyword_only = [p.name for p in pa if p.kind is inspect.Parameter.KEYWORD_ONLY]
            assert keyword_only and keyword_only[-1] == "rng" and names[-1] == "rng", f"{where}: rng is not last"
            assert names[-len(keyword_only):] == keyword_only, f"{where}: random inputs are not keyword-only"
            if "noise" in keyword_only:
                assert keyword_only.index("noise") == len(keyword_only) - 2, f"{where}: not …, noise, rng"


def _calls():
    import jax_dsm.losses as jl
    import jax_dsm.sampling as js
    import torch_dsm.losses as tl
    import torch_dsm.sampling as ts

    x_t, x_j = torch.zeros(4, 2), jnp.zeros((4, 2))
    sig_t, sig_j = torch.tensor([2.0, 1.0]), jnp.asarray([2.0, 1.0])
    return {
        "dsm_loss": (lambda: tl.dsm_loss(lambda x: x, x_t, 1.0), lambda: jl.dsm_loss(lambda x: x, x_j, 1.0)),
        "ncsn_loss": (lambda: tl.ncsn_loss(lambda x, s: x, x_t, sig_t), lambda: jl.ncsn_loss(lambda x, s: x, x_j, sig_j)),
        "ncsn_loss, noise only": (lambda: tl.ncsn_loss(lambda x, s: x, x_t, sig_t, noise=x_t),
                                  lambda: jl.ncsn_loss(lambda x, s: x, x_j, sig_j, noise=x_j)),
        "langevin": (lambda: ts.langevin(lambda x: x, x_t, 0.1, 3), lambda: js.langevin(lambda x: x, x_j, 0.1, 3)),
        "annealed_langevin": (lambda: ts.annealed_langevin(lambda x, s: x, x_t, sig_t, 0.1, 3),
                              lambda: js.annealed_langevin(lambda x, s: x, x_j, sig_j, 0.1, 3)),
    }


@pytest.mark.parametrize("case", list(_calls()))
def test_no_randomness_given_fails_the_same_way_on_both_sides(case):
    """No implicit random stream on either side: the same ValueError and message."""
    messages = []
    for call in _calls()[case]:
        with pytest.raises(ValueError) as err:
            call()
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "rng=" in messages[0], messages


def test_a_conditional_network_without_sigma_fails_the_same_way():
    import jax_dsm.models as jm
    import torch_dsm.models as tm

    messages = []
    with pytest.raises(ValueError) as err:
        tm.ScoreMLP((4,), conditional=True)(torch.zeros(1, 2))
    messages.append(str(err.value))
    with pytest.raises(ValueError) as err:
        jm.ScoreMLP((4,), conditional=True).init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    messages.append(str(err.value))
    assert messages[0] == messages[1], messages


def test_weights_of_the_wrong_shape_fail_the_same_way():
    import jax_dsm.models as jm
    import jax_dsm.weights as jw
    import torch_dsm.models as tm
    import torch_dsm.weights as tw
    from dsm_common.validation import DSMInputError

    params = tw.to_canonical(tm.ScoreMLP((8,)))
    errors = []
    for load in (lambda: tw.from_canonical(params, tm.ScoreMLP((4,))), lambda: jw.from_canonical(params, jm.ScoreMLP((4,)))):
        with pytest.raises(DSMInputError) as err:
            load()
        errors.append(str(err.value))
    assert errors[0] == errors[1] and "widths" in errors[0] and "\n" not in errors[0], errors


def test_a_toy_sampler_added_to_both_registries_runs_through_the_unchanged_orchestration():
    """Adding a sampler: its settings class and spec (dsm_common.registry.SAMPLERS) and one function
    per framework (``SAMPLERS`` of torch_dsm.sampling and jax_dsm.sampling); nothing else changes.
    The toy is noise-free gradient ascent x ← x + ε s(x), so the two sides must agree in value."""
    from dataclasses import dataclass

    import jax_dsm.models as jmodels
    import jax_dsm.sampling as js
    import jax_dsm.weights as jw
    import torch_dsm.models as tmodels
    import torch_dsm.sampling as ts
    import torch_dsm.weights as tw
    from dsm_common.config import SamplerConfig
    from dsm_common.generate import run_samplers
    from dsm_common.registry import SAMPLERS, SamplerSpec
    from jax_dsm.cli import JaxBackend
    from torch_dsm.cli import TorchBackend

    @dataclass
    class ToySettings:
        step_size: float = 0.05
        n_steps: int = 20

        def validate(self):
            return self

    def torch_toy(score_fn, x0, sigmas, settings, keep_every=0, progress=False, *, rng=None):
        x, level = x0.clone(), sigmas[-1].expand(x0.shape[0])
        with torch.inference_mode():
            for _ in range(settings.n_steps):
                x = x + settings.step_size * score_fn(x, level)
        return x, None

    def jax_toy(score_fn, x0, sigmas, settings, keep_every=0, progress=False, *, rng=None):
        x, level = x0, jnp.broadcast_to(jnp.asarray(sigmas)[-1], x0.shape[:1])
        for _ in range(settings.n_steps):
            x = x + settings.step_size * score_fn(x, level)
        return x, None

    spec = SamplerSpec(ToySettings, "any", nfe=lambda s, n: s.n_steps, describe=lambda s, n: "toy",
                       demo=lambda s, steps, eps, keep, n: (ToySettings(eps, steps), min(keep, steps)))
    try:
        SAMPLERS.register("toy", spec)
        ts.SAMPLERS.register("toy", torch_toy)
        js.SAMPLERS.register("toy", jax_toy)
        torch.manual_seed(0)
        net = tmodels.ScoreMLP((16,))
        model, variables = jw.from_canonical(tw.to_canonical(net), jmodels.ScoreMLP((16,)))
        cfg = SamplerConfig(name="toy", n_chains=6, trajectory_steps=10, trajectory_keep_every=5)
        gen_t = run_samplers(cfg, "toy", TorchBackend(net, np.array([3.0]), progress=False))
        gen_j = run_samplers(cfg, "toy", JaxBackend(model, variables, np.array([3.0]), progress=False))
        assert gen_t.nfe == gen_j.nfe == 20 and gen_t.sampler == gen_j.sampler == "toy"
        assert gen_t.samples.shape == (6, 2) and not np.allclose(gen_t.samples, cfg.initial_states(np.random.default_rng(0)))
        np.testing.assert_allclose(gen_t.samples, gen_j.samples, rtol=0, atol=1e-5)
    finally:
        for registry in (SAMPLERS, ts.SAMPLERS, js.SAMPLERS):
            registry.unregister("toy")
    assert "toy" not in SAMPLERS


def test_the_registries_hold_the_same_names_on_both_sides():
    import jax_dsm.losses as jl
    import jax_dsm.sampling as js
    import torch_dsm.losses as tl
    import torch_dsm.sampling as ts
    from dsm_common.registry import OBJECTIVES, SAMPLERS

    assert SAMPLERS.names() == ts.SAMPLERS.names() == js.SAMPLERS.names() == ["langevin", "annealed_langevin", "heun",
                                                                               "euler", "pc", "ode"]
    assert OBJECTIVES.names() == tl.OBJECTIVES.names() == jl.OBJECTIVES.names() == ["dsm", "ncsn", "edm", "sde"]
