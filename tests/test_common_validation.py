"""Option checks (dsm_common.validation, dsm_common.config): one-line errors naming option and value."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from dsm_common.config import SamplerConfig, check_model_options
from dsm_common.validation import DSMInputError, check_non_negative_int, check_positive, check_positive_int


@pytest.mark.parametrize("value", [0, 0.0, -1, -1e-9, math.nan, math.inf, True, "3", None])
def test_check_positive_rejects(value):
    with pytest.raises(DSMInputError) as err:
        check_positive("model.sigma", value)
    assert str(err.value) == f"model.sigma must be a positive number, got {value!r}"


def test_check_positive_accepts():
    assert check_positive("x", 3) == 3.0 and check_positive("x", np.float32(0.5)) == 0.5


@pytest.mark.parametrize("value", [0, -3, 2.0, True, "4"])
def test_check_positive_int_rejects(value):
    with pytest.raises(DSMInputError, match=r"^sampler.n_steps must be a positive integer, got "):
        check_positive_int("sampler.n_steps", value)


def test_int_checks_accept():
    assert check_positive_int("n", np.int64(7)) == 7
    assert check_non_negative_int("k", 0) == 0
    with pytest.raises(DSMInputError, match="k must be a non-negative integer, got -1"):
        check_non_negative_int("k", -1)


@pytest.mark.parametrize(
    "section, field, value",
    [(None, "n_chains", 0), ("langevin", "step_size", -1.0), ("langevin", "step_size", 0.0), ("langevin", "n_steps", 0),
     ("annealed_langevin", "step_size", 0.0), ("annealed_langevin", "n_steps_each", 0),
     (None, "init_scale", 0.0), (None, "trajectory_step_size", -0.1), (None, "trajectory_keep_every", 0)],
)
def test_sampler_config_names_the_bad_field(section, field, value):
    if section is None:
        cfg = SamplerConfig(**{field: value})
    else:
        cfg = SamplerConfig(**{section: SamplerConfig().settings(section).__class__(**{field: value})})
    name = f"model.sampler.{field}" if section is None else f"model.sampler.{section}.{field}"
    with pytest.raises(DSMInputError) as err:
        cfg.validate()
    assert str(err.value).startswith(f"{name} must be") and str(err.value).endswith(repr(value))


def test_sampler_config_unknown_sampler_is_one_line():
    names = "langevin, annealed_langevin, heun, euler, pc, ode"
    with pytest.raises(DSMInputError, match=rf"^model.sampler.name must be one of {names}, got 'ddim'$"):
        SamplerConfig(name="ddim").validate()


def test_sampler_config_initial_states():
    """N(0, init_scale² I) or U([−s, s]²) drawn with the given numpy Generator, float32."""
    x = SamplerConfig(n_chains=5, init_scale=2.0).initial_states(np.random.default_rng(4))
    np.testing.assert_array_equal(x, (2.0 * np.random.default_rng(4).standard_normal((5, 2))).astype(np.float32))
    u = SamplerConfig(n_chains=4000, init="uniform", init_scale=20.0).initial_states(np.random.default_rng(0))
    assert u.dtype == np.float32 and np.abs(u).max() <= 20.0
    # Var of U(−20, 20) is 400/3: sample variance within 4 standard errors (sd √(0.8/n) = 1 % at n = 8000).
    np.testing.assert_allclose(u.var(), 400 / 3, rtol=4 * np.sqrt(0.8 / 8000))


@pytest.mark.parametrize(
    "kw, fragment",
    [({"lr": -1e-3}, "model.lr must be a positive number, got -0.001"),
     ({"optimizer": "rmsprop"}, "model.optimizer must be sgd, adam or adamw, got 'rmsprop'"),
     ({"reduction": "max"}, "model.reduction must be sum or mean, got 'max'"),
     ({"ema_decay": 1.0}, "model.ema_decay must be in [0, 1) (or null: no average), got 1.0"),
     ({"weight_decay": -0.1, "optimizer": "adamw"}, "model.weight_decay must be a number ≥ 0, got -0.1"),
     ({"weight_decay": 0.1}, "model.weight_decay=0.1 needs model.optimizer=adamw (decoupled weight decay), not sgd")],
)
def test_model_options(kw, fragment):
    args = {"lr": 1e-5, "optimizer": "sgd", "reduction": "sum", **kw}
    with pytest.raises(DSMInputError, match=re.escape(fragment)):
        check_model_options(**args)


@pytest.mark.parametrize(
    "objective, sections, fragment",
    [("dsm", {"dsm": {"sigma": 0.0}}, "model.dsm.sigma must be a positive number, got 0.0"),
     ("ncsn", {"ncsn": {"num_scales": 0}}, "model.ncsn.num_scales must be a positive integer, got 0"),
     ("ncsn", {"ncsn": {"num_scales": 1}}, "model.ncsn.num_scales must be at least 2, got 1 (one level: objective dsm)"),
     ("ncsn", {"ncsn": {"sigma_min": -1.0}}, "model.ncsn.sigma_min must be a positive number, got -1.0"),
     ("ddpm", {}, "model.objective must be one of dsm, ncsn, edm, sde, got 'ddpm'")],
)
def test_objective_settings_are_checked_by_name(objective, sections, fragment):
    from dsm_common.config import resolve_methods

    with pytest.raises(DSMInputError) as err:
        resolve_methods(objective, sections, None, 1e-5, "sgd", "sum", "constant", "native")
    assert str(err.value) == fragment


def test_a_sampler_needing_sigma_levels_is_refused_for_a_single_level_objective():
    from dsm_common.config import resolve_methods

    with pytest.raises(DSMInputError, match=r"^model.sampler.name=annealed_langevin needs a network conditioned on σ"):
        resolve_methods("dsm", {}, SamplerConfig(name="annealed_langevin"), 1e-5, "sgd", "sum", "constant", "native")
    choice = resolve_methods("ncsn", {}, SamplerConfig(name="langevin"), 1e-5, "sgd", "sum", "constant", "native")
    assert choice.sampler_name == "langevin" and choice.conditional  # plain Langevin at σ_L is allowed
    assert resolve_methods("ncsn", {}, None, 1e-5, "sgd", "sum", "constant", "native").sampler_name == "annealed_langevin"


@pytest.mark.parametrize(
    "key, hint",
    [("model.sigma", "model.dsm.sigma"), ("model.num_scales", "model.objective: ncsn"),
     ("model.sampler.step_size", "model.sampler.langevin.step_size"), ("model.sampler.kind", "model.sampler.name"),
     ("model.sampler.n_steps", "model.sampler.annealed_langevin.n_steps_each")],
)
def test_older_flat_options_get_one_line_saying_what_to_write(key, hint, tmp_path):
    from dsm_common.commands import check_legacy_options
    from dsm_common.config import legacy_option_message

    assert hint in legacy_option_message(key, "x.yaml") and legacy_option_message("model.lr", "x.yaml") is None
    with pytest.raises(DSMInputError, match=f"^command line: {key} is the older layout; write .*{hint}"):
        check_legacy_options([f"--{key}=1"])
    section, leaf = key.rsplit(".", 1)
    tree = {"model": {leaf: 1}} if section == "model" else {"model": {"sampler": {leaf: 1}}}
    path = tmp_path / "old.yaml"
    import yaml

    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(DSMInputError, match=f"^{path}: {key} is the older layout"):
        check_legacy_options(["--config", str(path)])


def test_older_weight_files_sampler_settings_are_translated():
    old = {"n_chains": 7, "step_size": 2e-5, "n_steps": 50, "kind": "annealed", "denoise": False, "keep_every": 0}
    cfg = SamplerConfig.from_dict(old)
    assert cfg.name == "annealed_langevin" and cfg.n_chains == 7
    a = cfg.annealed_langevin
    assert (a.step_size, a.n_steps_each, a.denoise) == (2e-5, 50, False)
    plain = SamplerConfig.from_dict({"step_size": 0.02, "n_steps": 30, "kind": None})
    assert plain.name is None and (plain.langevin.step_size, plain.langevin.n_steps) == (0.02, 30)
    # no kind in a multi-level model's file: the settings were annealed Langevin's (its default)
    multi = SamplerConfig.from_dict({"step_size": 2e-5, "n_steps": 5}, default_sampler="annealed_langevin")
    assert multi.name is None and (multi.annealed_langevin.step_size, multi.annealed_langevin.n_steps_each) == (2e-5, 5)
    assert multi.plain_step_size == 2e-5 and plain.plain_step_size is None  # the comparison's ε was the annealed ε
    assert SamplerConfig.from_dict(cfg.to_dict()) == cfg


def test_older_options_in_section_files_short_flags_and_the_sample_command(tmp_path):
    import yaml

    from dsm_common.commands import check_legacy_options

    model = tmp_path / "model.yaml"
    model.write_text(yaml.safe_dump({"num_scales": 20}))
    with pytest.raises(DSMInputError, match=f"^{model}: model.num_scales is the older layout"):
        check_legacy_options([f"--model={model}"])
    sampler = tmp_path / "sampler.yaml"
    sampler.write_text(yaml.safe_dump({"step_size": 0.1}))
    with pytest.raises(DSMInputError, match=f"^{sampler}: model.sampler.step_size is the older layout"):
        check_legacy_options(["--model.sampler", str(sampler)])
    full = tmp_path / "full.yaml"
    full.write_text(yaml.safe_dump({"model": {"sigma": 3.0}}))
    with pytest.raises(DSMInputError, match=f"^{full}: model.sigma is the older layout"):
        check_legacy_options(["-c", str(full)])
    # the sample command spells its sampler options --sampler.…
    with pytest.raises(DSMInputError, match=r"write sampler.langevin.step_size or sampler.annealed_langevin.step_size"):
        check_legacy_options(["--model.sampler.step_size=0.1"], "sampler.")
    check_legacy_options(["--config", str(tmp_path / "missing.yaml"), "--model.lr=1e-3", "--trainer.max_epochs", "5"])


def test_a_settings_section_of_an_objective_not_chosen_is_still_checked():
    from dsm_common.config import resolve_methods

    with pytest.raises(DSMInputError, match=r"^model.ncsn.num_scales must be a positive integer, got 0$"):
        resolve_methods("dsm", {"dsm": None, "ncsn": {"num_scales": 0}}, None, 1e-5, "sgd", "sum", "constant", "native")
