"""The notebook's way: its network, its jitted training and Langevin steps, called from Python.

Shared by ``benchmark.py`` (the rows every other row is a ratio of) and ``bench_devices.py``
(the notebook's code run as a script, for the whole-job rows). Imports what the notebook imports:
JAX, Flax, Optax, numpy, and torch for its ``DataLoader``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax.training.train_state import TrainState
from torch.utils.data import DataLoader, TensorDataset

# The reference recipe (docs/method.md §1).
SIGMA, LR, BATCH, EPS = 3.0, 1e-5, 8, 0.01


class NotebookMLP(nn.Module):
    """The notebook's score network: 2 → 256 → ReLU → 256 → ReLU → 2."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(256)(x))
        x = nn.relu(nn.Dense(256)(x))
        return nn.Dense(2)(x)


@jax.jit
def notebook_train_step(state: TrainState, x, key):
    """One SGD step on a batch; DSM loss summed over the batch, noise per point and coordinate."""

    def loss_fn(params):
        z = jax.random.normal(key, x.shape)
        return jnp.sum((state.apply_fn({"params": params}, x + SIGMA * z) + z / SIGMA) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


@jax.jit
def notebook_langevin_step(params, x, key):
    z = jax.random.normal(key, x.shape)
    return x + 0.5 * EPS * NotebookMLP().apply(params, x) + jnp.sqrt(EPS) * z


def notebook_state(seed: int = 0) -> TrainState:
    model = NotebookMLP()
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 2)))["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(LR))


def notebook_train(points: np.ndarray, epochs: int, seed: int = 0) -> TrainState:
    """``epochs`` epochs, one jitted step per batch fed by a torch ``DataLoader(shuffle=True)``, a
    key split in Python each step, the epoch's mean loss kept for a plot; the trained state."""
    key = jax.random.PRNGKey(seed + 1)
    state = notebook_state(seed)
    loader = DataLoader(TensorDataset(torch.from_numpy(points)), batch_size=BATCH, shuffle=True)
    history = []
    for _ in range(epochs):
        losses = []
        for (xb,) in loader:
            key, sub = jax.random.split(key)
            state, loss = notebook_train_step(state, jnp.asarray(xb.numpy()), sub)
            losses.append(loss)
        history.append(float(np.mean(jax.device_get(losses))))  # the epoch's loss, for a plot
    jax.block_until_ready(state.params)
    return state


def notebook_sample(params, x0: np.ndarray, steps: int, seed: int = 0):
    """Langevin from ``x0``, one jitted step per step called from Python, every state kept; the final states."""
    key, x = jax.random.PRNGKey(seed), jnp.asarray(x0)
    states = []  # the notebook keeps every state
    for _ in range(steps):
        key, sub = jax.random.split(key)
        x = notebook_langevin_step(params, x, sub)
        states.append(x)
    return jax.block_until_ready(x)
