"""A run directory is never shared by the two frameworks (nothing is overwritten)."""

import numpy as np
import pytest

from dsm_common.commands import check_run_dir
from dsm_common.validation import DSMInputError
from dsm_common.weights import save_canonical


def _weights(path, framework):
    params = {"dense_0.kernel": np.ones((2, 3), np.float32), "dense_0.bias": np.zeros(3, np.float32),
              "dense_1.kernel": np.ones((3, 2), np.float32), "dense_1.bias": np.zeros(2, np.float32)}
    save_canonical(path / "weights.safetensors", params, {"framework": framework})


def test_empty_or_same_framework_dir_is_accepted(tmp_path):
    assert check_run_dir(tmp_path / "new", "jax") == tmp_path / "new"
    _weights(tmp_path, "jax")
    assert check_run_dir(tmp_path, "jax") == tmp_path  # re-running a jax run in place is allowed


@pytest.mark.parametrize("owner, other", [("torch", "jax"), ("jax", "torch")])
def test_other_framework_dir_is_refused_with_a_suggestion(tmp_path, owner, other):
    _weights(tmp_path, owner)
    with pytest.raises(DSMInputError, match=f"holds a {owner} run.*default_root_dir={tmp_path}-{other}"):
        check_run_dir(tmp_path, other)
