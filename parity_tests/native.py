"""Samplers driven by each framework's own random numbers, for the distribution tests.

Torch: a ``torch.Generator`` seeded once draws x₀ ~ N(0, I) and then every step's noise inside
``torch_dsm.sampling.langevin``. JAX: ``PRNGKey(seed)`` split into a key for x₀ and a key for the
steps of ``jax_dsm.sampling.langevin``. The two streams never match (docs/parity.md), so only the laws of
the results are compared.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import torch
from jax.tree_util import Partial

import jax_dsm.mixtures as jm
import jax_dsm.sampling as js
import jax_dsm.weights as jw
import torch_dsm.mixtures as tm
import torch_dsm.sampling as ts
import torch_dsm.weights as tw
from dsm_common.mixtures import GaussianMixture
from parity_tests.devices import Device

__all__ = ["torch_langevin", "jax_langevin", "torch_annealed", "jax_annealed", "torch_score", "jax_score"]


def torch_score(dev: Device, params: dict | None = None, mixture: GaussianMixture | None = None) -> Callable:
    """The torch score of canonical ``params`` (an MLP) or the exact score of ``mixture``."""
    if params is not None:
        return tw.from_canonical(params).to(dev.torch).eval()
    return tm.mixture_score(mixture)


def jax_score(dev: Device, params: dict | None = None, mixture: GaussianMixture | None = None) -> Callable:
    """The JAX score (a ``Partial``) of canonical ``params`` or of ``mixture``'s exact score."""
    with jax.default_device(dev.jax):
        if params is not None:
            model, variables = jw.from_canonical(params)
            return Partial(model.apply, jax.device_put(variables, dev.jax))
        return jm.mixture_score(mixture)


def torch_langevin(score: Callable, n: int, step_size: float, n_steps: int, seed: int, dev: Device) -> np.ndarray:
    """``n`` chains from N(0, I), ``n_steps`` steps of ε = ``step_size``, torch's RNG; (n, 2) float32."""
    gen = torch.Generator(device=dev.torch).manual_seed(seed)
    x0 = torch.randn((n, 2), generator=gen, device=dev.torch)
    x, _ = ts.langevin(score, x0, step_size, n_steps, rng=gen)
    return x.cpu().numpy()


def jax_langevin(score: Callable, n: int, step_size: float, n_steps: int, seed: int, dev: Device) -> np.ndarray:
    """``n`` chains from N(0, I), ``n_steps`` steps of ε = ``step_size``, JAX's RNG; (n, 2) float32."""
    with jax.default_device(dev.jax):
        key_x0, key_steps = jax.random.split(jax.random.PRNGKey(seed))
        x0 = jax.random.normal(key_x0, (n, 2))
        x, _ = js.langevin(score, x0, step_size, n_steps, rng=key_steps)
        return np.asarray(x)


def torch_annealed(score: Callable, n: int, sigmas, step_size: float, n_steps_each: int, init_scale: float,
                   denoise: bool, seed: int, dev: Device) -> np.ndarray:
    """``n`` chains of annealed Langevin from U[−init_scale, init_scale]², torch's RNG; (n, 2) float32."""
    gen = torch.Generator(device=dev.torch).manual_seed(seed)
    x0 = (2 * torch.rand((n, 2), generator=gen, device=dev.torch) - 1) * init_scale
    sigmas = torch.as_tensor(np.asarray(sigmas), dtype=torch.float32, device=dev.torch)
    with torch.inference_mode():
        x, _ = ts.annealed_langevin(score, x0, sigmas, step_size, n_steps_each, denoise=denoise, rng=gen)
    return x.cpu().numpy()


def jax_annealed(score: Callable, n: int, sigmas, step_size: float, n_steps_each: int, init_scale: float,
                 denoise: bool, seed: int, dev: Device) -> np.ndarray:
    """``n`` chains of annealed Langevin from U[−init_scale, init_scale]², JAX's RNG; (n, 2) float32."""
    with jax.default_device(dev.jax):
        key_x0, key_steps = jax.random.split(jax.random.PRNGKey(seed))
        x0 = jax.random.uniform(key_x0, (n, 2), minval=-init_scale, maxval=init_scale)
        sigmas = jax.numpy.asarray(np.asarray(sigmas), jax.numpy.float32)
        x, _ = js.annealed_langevin(score, x0, sigmas, step_size, n_steps_each, rng=key_steps, denoise=denoise)
        return np.asarray(x)
