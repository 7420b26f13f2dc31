"""Devices of the parity suite and full float32 on both sides (docs/parity.md, GPUs).

A :class:`Device` names where *both* frameworks compute: ``cpu`` always, ``cuda`` when torch sees a
CUDA GPU and JAX has a ``gpu`` device. Before any comparison both sides are put in full float32:
JAX's default matmul precision ``"highest"`` (on recent NVIDIA GPUs JAX otherwise runs float32
matmuls in TF32, about 1e-3 relative error) and torch's TF32 switches off with float32 matmul
precision ``"highest"``; :func:`assert_full_float32` checks that the settings took effect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import jax
import torch

__all__ = ["Device", "gpu_available", "available_devices", "set_full_float32", "assert_full_float32",
           "set_torch_threads"]


def gpu_available() -> bool:
    """True when torch sees a CUDA GPU *and* JAX has a GPU device."""
    if not torch.cuda.is_available():
        return False
    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:  # JAX without a GPU backend
        return False


def available_devices() -> list[str]:
    return ["cpu", "cuda"] if gpu_available() else ["cpu"]


@dataclass(frozen=True)
class Device:
    """One device for both frameworks: ``"cpu"`` or ``"cuda"`` (the first GPU)."""

    name: str

    @cached_property
    def torch(self) -> torch.device:
        return torch.device("cuda:0" if self.name == "cuda" else "cpu")

    @cached_property
    def jax(self) -> jax.Device:
        return jax.devices("gpu" if self.name == "cuda" else "cpu")[0]

    @property
    def lightning_accelerator(self) -> str:
        return "gpu" if self.name == "cuda" else "cpu"

    def __str__(self) -> str:
        return self.name


def set_full_float32() -> None:
    """Full float32 matmuls on both sides (no TF32), then check it took effect."""
    jax.config.update("jax_default_matmul_precision", "highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    assert_full_float32()


def assert_full_float32() -> None:
    """Raise AssertionError unless both frameworks are set to full float32 matmuls."""
    assert jax.config.jax_default_matmul_precision == "highest", jax.config.jax_default_matmul_precision
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest", torch.get_float32_matmul_precision()


def set_torch_threads() -> int:
    """Torch's CPU thread count for the suite; returns the previous count.

    ``PARITY_TORCH_THREADS`` (default 1). Measured on the 2 shared cores of CI: with 2 intra-op
    threads a batch-8 SGD step took 15–35 ms against 0.4 ms with one (the pool spins while the
    other core is busy), and a 10 000-point forward pass 144 ms against 39 ms.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("PARITY_TORCH_THREADS", "1")))
    return previous
