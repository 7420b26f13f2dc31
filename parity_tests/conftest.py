"""Shared fixtures of the parity suite: the fixture arrays, and the ``device`` parametrisation.

``device`` is ``cpu`` always and ``cuda`` (marked ``gpu``) when torch and JAX both see a GPU;
the default ``addopts`` deselect ``gpu``, ``scripts/gpu_parity.sh`` selects it. Every test that
takes ``device`` runs with full float32 matmuls on both sides (TF32 off), asserted first.
"""

from __future__ import annotations

import numpy as np
import pytest

from parity_tests.devices import Device, assert_full_float32, gpu_available, set_full_float32, set_torch_threads
from parity_tests.fixture_data import DEFAULT_PATH, load_fixtures, weight_set

_GPU = gpu_available()

DEVICE_PARAMS = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not _GPU, reason="needs a CUDA GPU seen by both torch and JAX")],
    ),
]


@pytest.fixture(scope="package", autouse=True)
def _parity_settings():
    """Full float32 on both sides and one torch thread (``devices.set_torch_threads``) while the
    parity tests run; the previous settings are restored for whatever runs after them."""
    import jax
    import torch

    saved = (jax.config.jax_default_matmul_precision, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    set_full_float32()
    threads = set_torch_threads()
    yield
    torch.set_num_threads(threads)
    jax.config.update("jax_default_matmul_precision", saved[0])
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1], saved[2]
    torch.set_float32_matmul_precision(saved[3])


@pytest.fixture(params=DEVICE_PARAMS)
def device(request) -> Device:
    """The device of both frameworks; asserts full float32 (TF32 off) before every test."""
    assert_full_float32()
    return Device(request.param)


@pytest.fixture(scope="session")
def fx() -> dict[str, np.ndarray]:
    """All fixture arrays (``parity_tests/fixtures.npz``)."""
    return load_fixtures(DEFAULT_PATH)


@pytest.fixture(scope="session")
def init_weights(fx) -> dict[str, np.ndarray]:
    return weight_set(fx, "init")


@pytest.fixture(scope="session")
def score_weights(fx) -> dict[str, np.ndarray]:
    return weight_set(fx, "score")


@pytest.fixture(scope="session")
def cond_weights(fx) -> dict[str, np.ndarray]:
    return weight_set(fx, "cond")
