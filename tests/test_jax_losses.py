"""DSM loss of the JAX side on hand-computed cases, and the padding mask.

Hand case (worked out on paper, every number exact in float32): σ = 2, score s(x) = −x/4,
x = [[1, 0], [0, 2]], z = [[1, −1], [0.5, 0]]:
    x̃ = x + σ z               = [[3, −2], [1, 2]]
    s(x̃) = −x̃/4               = [[−0.75, 0.5], [−0.25, −0.5]]
    z/σ                       = [[0.5, −0.5], [0.25, 0]]
    s(x̃) + z/σ                = [[−0.25, 0], [0, −0.5]]
    per point ‖·‖²            = 0.0625, 0.25
    sum = 0.3125, mean = 0.15625
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsm_common.testing import numpy_mlp
from jax_dsm.losses import dsm_loss
from jax_dsm.models import ScoreMLP
from jax_dsm.weights import to_canonical

X = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
Z = np.array([[1.0, -1.0], [0.5, 0.0]], np.float32)
SIGMA = 2.0


pytestmark = pytest.mark.usefixtures("jax_full_float32")  # tests/conftest.py


def _linear_variables(kernel, bias):
    """Flax variables of ScoreMLP(hidden_dims=()), which is one Dense layer: s(x) = x K + b."""
    return {"params": {"dense_0": {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}}}


@pytest.mark.parametrize("reduction, expected", [("sum", 0.3125), ("mean", 0.15625)])
def test_dsm_loss_hand_case_plain_function(reduction, expected):
    loss = dsm_loss(lambda x: -x / 4.0, jnp.asarray(X), SIGMA, noise=jnp.asarray(Z), reduction=reduction)
    # Every intermediate is a dyadic rational: float32 gets it exactly (1e-7 leaves room for nothing else).
    assert float(loss) == pytest.approx(expected, rel=1e-7, abs=0)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_dsm_loss_hand_case_flax_model_value_and_gradient(reduction):
    """The Flax model with known weights K = −I/4, b = (0.25, 0): s(x̃) + z/σ = [[0, 0], [0.25, −0.5]],
    per-point losses 0 and 0.3125; gradients by hand: dL/db = 2 Σ r_i, dL/dK = 2 Σ x̃_iᵀ r_i
    (divided by B = 2 for the mean)."""
    model = ScoreMLP(hidden_dims=())
    kernel = -0.25 * np.eye(2, dtype=np.float32)
    bias = np.array([0.25, 0.0], np.float32)
    variables = _linear_variables(kernel, bias)

    def loss_fn(params):
        return dsm_loss(lambda x: model.apply({"params": params}, x), jnp.asarray(X), SIGMA,
                        noise=jnp.asarray(Z), reduction=reduction)

    value, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])

    x_tilde = X.astype(np.float64) + SIGMA * Z
    r = x_tilde @ kernel + bias + Z / SIGMA  # residuals, by hand: [[0, 0], [0.25, -0.5]]
    np.testing.assert_array_equal(r, [[0.0, 0.0], [0.25, -0.5]])
    div = 1.0 if reduction == "sum" else 2.0
    expected_value = 0.3125 / div
    expected_db = 2.0 * r.sum(0) / div  # sum: [0.5, -1]
    expected_dk = 2.0 * x_tilde.T @ r / div  # sum: [[0.5, -1], [1, -2]]
    # Dyadic numbers again: exact in float32 up to rounding of nothing; 1e-6 allows for reordered sums.
    assert float(value) == pytest.approx(expected_value, rel=1e-6)
    np.testing.assert_allclose(np.asarray(grads["dense_0"]["bias"]), expected_db, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grads["dense_0"]["kernel"]), expected_dk, rtol=1e-6, atol=1e-7)
    if reduction == "sum":
        np.testing.assert_array_equal(expected_db, [0.5, -1.0])
        np.testing.assert_array_equal(expected_dk, [[0.5, -1.0], [1.0, -2.0]])




@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_dsm_loss_mlp_against_numpy(reduction):
    """A real 2 → 32 → 32 → 2 MLP on a batch of 16: the loss equals the numpy formula."""
    rng = np.random.default_rng(1)
    model = ScoreMLP(hidden_dims=(32, 32))
    variables = model.init(jax.random.PRNGKey(3), jnp.zeros((1, 2)))
    x = rng.standard_normal((16, 2)).astype(np.float32) * 5
    z = rng.standard_normal((16, 2)).astype(np.float32)
    sigma = 3.0
    loss = dsm_loss(lambda v: model.apply(variables, v), jnp.asarray(x), sigma, noise=jnp.asarray(z), reduction=reduction)
    x_tilde = x.astype(np.float64) + sigma * z
    per_point = np.sum((numpy_mlp(to_canonical(variables), x_tilde) + z / sigma) ** 2, axis=1)
    expected = per_point.sum() if reduction == "sum" else per_point.mean()
    # float32 forward against float64: ~1e-6 relative per operation; 1e-5 relative (docs/parity.md).
    assert float(loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_mask_gives_exactly_the_short_batch(reduction):
    """A padded batch of 8 (5 real points, 3 padding rows holding other values) with a mask gives
    the loss and the gradient of the 5 points alone (the short last batch of an epoch)."""
    rng = np.random.default_rng(7)
    model = ScoreMLP(hidden_dims=(16, 16))
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))["params"]
    x_short = rng.standard_normal((5, 2)).astype(np.float32) * 4
    z_short = rng.standard_normal((5, 2)).astype(np.float32)
    x_pad = np.concatenate([x_short, 10 + rng.standard_normal((3, 2)).astype(np.float32)])
    z_pad = np.concatenate([z_short, rng.standard_normal((3, 2)).astype(np.float32)])
    mask = np.array([True] * 5 + [False] * 3)

    def loss(p, x, z, m=None):
        return dsm_loss(lambda v: model.apply({"params": p}, v), jnp.asarray(x), 3.0, noise=jnp.asarray(z),
                        reduction=reduction, mask=None if m is None else jnp.asarray(m))

    v_short, g_short = jax.jit(jax.value_and_grad(loss))(params, x_short, z_short)
    v_pad, g_pad = jax.jit(jax.value_and_grad(loss))(params, x_pad, z_pad, mask)
    v_unmasked = jax.jit(loss)(params, x_pad, z_pad)
    # Masked rows contribute exact zeros; only the order of a float32 sum may differ: 1e-6 relative.
    assert float(v_pad) == pytest.approx(float(v_short), rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g_pad), jax.tree_util.tree_leaves(g_short)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6 * float(np.abs(b).max()))
    # The padding is not silently ignored without the mask (guards against a test that passes trivially).
    assert abs(float(v_unmasked) - float(v_short)) > 1e-3 * abs(float(v_short))
    # Independent value: the numpy formula on the 5 real points.
    x_tilde = x_short.astype(np.float64) + 3.0 * z_short
    per_point = np.sum((numpy_mlp(to_canonical({"params": params}), x_tilde) + z_short / 3.0) ** 2, axis=1)
    expected = per_point.sum() if reduction == "sum" else per_point.mean()
    assert float(v_pad) == pytest.approx(expected, rel=1e-5)  # float32 vs float64 (docs/parity.md)


def test_noise_drawn_from_key_is_per_point_and_coordinate():
    """With a key, z is one standard normal per point and coordinate (not the notebook's one scalar
    per batch). Recover z: for s(x̃) = x̃ the residual is x + (σ + 1/σ) z, so at x = 0 the gradient
    of the summed loss with respect to x_i is 2 (σ + 1/σ) z_i. Over B = 20 000 points the
    recovered coordinates must have mean 0 and variance 1 and be uncorrelated (z-tests at 5 SE:
    SE of a mean 1/√(2B), of a variance √(2/B), of a correlation 1/√B)."""
    b, sigma = 20_000, 0.5
    grad = jax.grad(lambda x: dsm_loss(lambda v: v, x, sigma, rng=jax.random.PRNGKey(12)))(jnp.zeros((b, 2)))
    z = np.asarray(grad, np.float64) / (2 * (sigma + 1 / sigma))
    assert abs(z.mean()) < 5 / np.sqrt(2 * b)
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2.0 / b)
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 5 / np.sqrt(b)
    assert len(np.unique(z[:, 0])) > 0.99 * b  # a fresh draw per point
