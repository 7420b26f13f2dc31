"""Weight conversion both ways through the canonical layout and ``.safetensors`` (docs/parity.md)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import jax_dsm.models as jmodels
import jax_dsm.weights as jw
import torch_dsm.models as tmodels
import torch_dsm.weights as tw
from dsm_common.validation import DSMInputError
from dsm_common.weights import load_canonical, save_canonical


def _assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype == np.float32, k
        assert a[k].shape == b[k].shape, k
        assert np.array_equal(a[k], b[k]), f"{k} changed"


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_exact_round_trip_torch_canonical_flax_canonical_torch(conditional):
    torch.manual_seed(0)
    net = tmodels.ScoreMLP((256, 256), conditional=conditional)  # torch's own initialisation
    c1 = tw.to_canonical(net)
    assert c1["dense_0.kernel"].shape == (3 if conditional else 2, 256)  # (in, out)
    assert np.array_equal(c1["dense_0.kernel"], net.dense[0].weight.detach().numpy().T)
    model, variables = jw.from_canonical(c1)
    assert model.conditional == conditional and tuple(model.hidden_dims) == (256, 256)
    c2 = jw.to_canonical(variables)
    back = tw.from_canonical(c2)
    _assert_same(c1, tw.to_canonical(back))
    for a, b in zip(net.parameters(), back.parameters()):
        assert torch.equal(a, b)


def test_exact_round_trip_flax_canonical_torch_canonical_flax():
    model = jmodels.ScoreMLP((256, 256))
    variables = model.init(jax.random.PRNGKey(0), np.zeros((1, 2), np.float32))  # Flax's own initialisation
    c1 = jw.to_canonical(variables)
    c2 = tw.to_canonical(tw.from_canonical(c1))
    _assert_same(c1, c2)
    _, back = jw.from_canonical(c2)
    for (pa, a), (pb, b) in zip(jax.tree_util.tree_leaves_with_path(variables), jax.tree_util.tree_leaves_with_path(back)):
        assert pa == pb and np.array_equal(np.asarray(a), np.asarray(b))


def test_safetensors_across_frameworks(tmp_path, init_weights, fx):
    """torch saves → JAX loads → JAX saves → torch loads: same arrays, same settings, same outputs."""
    config = {"hidden_dims": [256, 256], "sigma": 3.0, "num_scales": 1}
    net = tw.from_canonical(init_weights)
    p1 = tw.save_weights(tmp_path / "torch.safetensors", net, config)
    model, variables, cfg = jw.load_weights(p1)
    assert cfg == config
    _assert_same(init_weights, jw.to_canonical(variables))
    p2 = jw.save_weights(tmp_path / "jax.safetensors", variables, cfg)
    net2, cfg2 = tw.load_weights(p2)
    assert cfg2 == config
    _assert_same(init_weights, tw.to_canonical(net2))
    x = fx["x_eval"]
    with torch.no_grad():
        a = net2(torch.from_numpy(x)).numpy()
    b = np.asarray(model.apply(variables, x))
    assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a))
    params, _ = load_canonical(p2)
    _assert_same(init_weights, params)


# ---------------------------------------------------------------- loud failures on mismatch


def _broken(weights: dict, how: str) -> dict:
    w = dict(weights)
    if how == "missing tensor":
        del w["dense_1.bias"]
    elif how == "extra tensor":
        w["dense_3.kernel"] = np.zeros((2, 2), np.float32)
    elif how == "renamed tensor":
        w["dense_1.weight"] = w.pop("dense_1.kernel")
    elif how == "kernel in torch layout (out, in)":
        w["dense_0.kernel"] = w["dense_0.kernel"].T.copy()
    elif how == "bias of the wrong length":
        w["dense_2.bias"] = np.zeros(3, np.float32)
    elif how == "1-D kernel":
        w["dense_2.kernel"] = w["dense_2.kernel"][:, 0].copy()
    elif how == "widths that do not chain":
        w["dense_1.kernel"] = np.zeros((128, 256), np.float32)
    return w


BREAKS = ["missing tensor", "extra tensor", "renamed tensor", "kernel in torch layout (out, in)",
          "bias of the wrong length", "1-D kernel", "widths that do not chain"]


@pytest.mark.parametrize("how", BREAKS)
def test_malformed_canonical_weights_fail_loudly(how, init_weights, tmp_path):
    w = _broken(init_weights, how)
    with pytest.raises(DSMInputError, match="dense_"):
        tw.from_canonical(w)
    with pytest.raises(DSMInputError, match="dense_"):
        jw.from_canonical(w)
    with pytest.raises(DSMInputError, match="dense_"):
        save_canonical(tmp_path / "bad.safetensors", w, {})


def test_malformed_safetensors_file_fails_loudly(tmp_path, init_weights):
    from safetensors.numpy import save_file

    path = tmp_path / "bad.safetensors"
    save_file(_broken(init_weights, "kernel in torch layout (out, in)"), str(path))
    for load in (tw.load_weights, jw.load_weights, load_canonical):
        with pytest.raises(DSMInputError, match="dense_0"):
            load(path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    for load in (tw.load_weights, jw.load_weights):
        with pytest.raises(DSMInputError, match="junk.safetensors"):
            load(junk)
        with pytest.raises(DSMInputError, match="not found"):
            load(tmp_path / "missing.safetensors")


def test_weights_for_another_model_fail_loudly(init_weights, cond_weights):
    # The same check and message on both sides (dsm_common.weights.check_widths).
    with pytest.raises(DSMInputError, match=r"widths \[2, 256, 256, 2\], the model expects \[2, 128, 128, 2\]"):
        tw.from_canonical(init_weights, tmodels.ScoreMLP((128, 128)))
    with pytest.raises(DSMInputError, match=r"the model expects \[3, 256, 256, 2\]"):
        tw.from_canonical(init_weights, tmodels.ScoreMLP((256, 256), conditional=True))
    with pytest.raises(DSMInputError, match=r"the model expects \[2, 256, 256, 256, 2\]"):
        tw.from_canonical(init_weights, tmodels.ScoreMLP((256, 256, 256)))
    with pytest.raises(DSMInputError, match="widths"):
        jw.from_canonical(init_weights, jmodels.ScoreMLP((128, 128)))
    with pytest.raises(DSMInputError, match="widths"):
        jw.from_canonical(cond_weights, jmodels.ScoreMLP((256, 256), conditional=False))
