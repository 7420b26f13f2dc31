"""Weights through the canonical layout and .safetensors (torch_dsm.weights, dsm_common.weights; docs/parity.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from dsm_common.testing import numpy_mlp
from dsm_common.validation import DSMInputError
from dsm_common.weights import load_canonical
from torch_dsm.models import ScoreMLP
from torch_dsm.weights import from_canonical, load_weights, save_weights, to_canonical

torch.set_num_threads(1)




@pytest.mark.parametrize("conditional", [False, True])
def test_safetensors_round_trip_is_exact(tmp_path, conditional):
    torch.manual_seed(0)
    model = ScoreMLP((32, 16), conditional=conditional)
    config = {"framework": "torch", "model": {"hidden_dims": [32, 16], "sigma": 3.0}, "sigmas": [3.0], "epochs": 7}
    path = save_weights(tmp_path / "w.safetensors", model, config)
    loaded, cfg = load_weights(path)
    assert cfg == config
    assert loaded.hidden_dims == (32, 16) and loaded.conditional == conditional
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)  # bit-for-bit
    # The file holds the canonical layout: kernels (in, out) = Linear.weight transposed.
    raw = load_file(str(path))
    d_in = 3 if conditional else 2
    assert {k: v.shape for k, v in raw.items()} == {
        "dense_0.kernel": (d_in, 32), "dense_0.bias": (32,), "dense_1.kernel": (32, 16), "dense_1.bias": (16,),
        "dense_2.kernel": (16, 2), "dense_2.bias": (2,),
    }
    np.testing.assert_array_equal(raw["dense_0.kernel"], model.dense[0].weight.detach().numpy().T)
    assert all(v.dtype == np.float32 for v in raw.values())


def test_canonical_layout_computes_the_same_function():
    """A numpy MLP on the canonical arrays equals the torch forward (this pins the transpose)."""
    torch.manual_seed(1)
    model = ScoreMLP((64, 64))
    x = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, numpy_mlp(to_canonical(model), x), rtol=1e-5, atol=1e-6)  # float32 forward


def test_from_canonical_into_an_existing_model_and_new_model():
    rng = np.random.default_rng(2)
    params = {"dense_0.kernel": rng.normal(size=(2, 5)), "dense_0.bias": rng.normal(size=5),
              "dense_1.kernel": rng.normal(size=(5, 2)), "dense_1.bias": rng.normal(size=2)}
    m = from_canonical(params)
    assert m.hidden_dims == (5,) and not m.conditional
    np.testing.assert_array_equal(m.dense[0].weight.detach().numpy(), params["dense_0.kernel"].T.astype(np.float32))
    x = rng.normal(size=(4, 2)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(x)).numpy(), numpy_mlp(params, x), rtol=1e-5, atol=1e-6)
    m2 = ScoreMLP((5,))
    assert from_canonical(params, m2) is m2
    np.testing.assert_array_equal(m2.dense[1].bias.detach().numpy(), params["dense_1.bias"].astype(np.float32))


def test_shape_mismatch_is_a_dsm_input_error(tmp_path):
    torch.manual_seed(0)
    params = to_canonical(ScoreMLP((16, 16)))
    with pytest.raises(DSMInputError, match=r"weights have layer widths \[2, 16, 16, 2\], the model expects \[2, 8, 8, 2\]"):
        from_canonical(params, ScoreMLP((8, 8)))
    with pytest.raises(DSMInputError, match=r"weights have layer widths \[2, 16, 16, 2\], the model expects \[2, 16, 2\]"):
        from_canonical(params, ScoreMLP((16,)))
    bad = dict(params, **{"dense_1.bias": np.zeros(5, np.float32)})
    with pytest.raises(DSMInputError, match=r"dense_1.bias has shape \(5,\), expected \(16,\)"):
        from_canonical(bad)
    chain = dict(params, **{"dense_1.kernel": np.zeros((15, 16), np.float32)})
    with pytest.raises(DSMInputError, match="dense_1.kernel has 15 inputs but dense_0 has 16 outputs"):
        from_canonical(chain)
    missing = {k: v for k, v in params.items() if k != "dense_2.bias"}
    with pytest.raises(DSMInputError, match=r"missing \['dense_2.bias'\]"):
        from_canonical(missing)
    # The same through a file.
    save_file({**params, "dense_1.kernel": np.zeros((15, 16), np.float32)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(DSMInputError, match="bad.safetensors: dense_1.kernel has 15 inputs"):
        load_canonical(tmp_path / "bad.safetensors")


def test_missing_and_corrupt_weight_files(tmp_path):
    with pytest.raises(DSMInputError, match="weights file not found: .*none.safetensors"):
        load_weights(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DSMInputError, match="junk.safetensors: not a readable .safetensors file"):
        load_weights(tmp_path / "junk.safetensors")
