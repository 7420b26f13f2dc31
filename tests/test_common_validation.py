"""Option checks (dsm_common.validation, dsm_common.config): one-line errors naming option and value."""

from __future__ import annotations

import math

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
    "field, value",
    [("n_chains", 0), ("step_size", -1.0), ("step_size", 0.0), ("n_steps", 0), ("keep_every", -1),
     ("init_scale", 0.0), ("trajectory_step_size", -0.1), ("trajectory_keep_every", 0)],
)
def test_sampler_config_names_the_bad_field(field, value):
    with pytest.raises(DSMInputError) as err:
        SamplerConfig(**{field: value}).validate()
    assert str(err.value).startswith(f"sampler.{field} must be") and str(err.value).endswith(repr(value))


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
    [({"sigma": 0.0}, "model.sigma must be a positive number, got 0.0"),
     ({"lr": -1e-3}, "model.lr must be a positive number, got -0.001"),
     ({"num_scales": 0}, "model.num_scales must be a positive integer, got 0"),
     ({"optimizer": "rmsprop"}, "model.optimizer must be sgd or adam, got 'rmsprop'"),
     ({"reduction": "max"}, "model.reduction must be sum or mean, got 'max'")],
)
def test_model_options(kw, fragment):
    args = {"sigma": 3.0, "lr": 1e-5, "num_scales": 1, "optimizer": "sgd", "reduction": "sum", **kw}
    with pytest.raises(DSMInputError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        check_model_options(**args)
