"""Data for the JAX side: the same data sets and arguments as ``torch_dsm/data.py``.

The points live on the device; each epoch's order is a ``jax.random.permutation`` drawn inside
the compiled training loop. An epoch of N points in batches of B is ``ceil(N / B)`` steps; the
last batch is padded and masked, so it computes exactly what the short last batch of a torch
``DataLoader`` computes (300 points in batches of 8: 38 steps, the last of 4 points).
"""

from __future__ import annotations

from typing import Optional, Union

import jax
import jax.numpy as jnp

from dsm_common.datasets import check_batch_size, load_dataset

__all__ = ["DSMDataModule", "epoch_batches"]


def epoch_batches(key: jax.Array | None, n: int, batch_size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Index batches of one epoch, for use inside ``jit``.

    Args:
        key: PRNG key of the epoch's permutation; None keeps the data order.
        n: number of points (static). batch_size: B (static).

    Returns:
        ``(idx, mask)``: (steps, B) int32 indices and (steps, B) bool, False on padding.
    """
    steps = -(-n // batch_size)
    order = jnp.arange(n, dtype=jnp.int32) if key is None else jax.random.permutation(key, n).astype(jnp.int32)
    pad = steps * batch_size - n
    idx = jnp.concatenate([order, jnp.zeros((pad,), jnp.int32)]).reshape(steps, batch_size)
    mask = (jnp.arange(steps * batch_size) < n).reshape(steps, batch_size)
    return idx, mask


class DSMDataModule:
    """2-D points for denoising score matching (the JAX twin of the LightningDataModule).

    Args:
        dataset: a built-in name (``seed_mixture``, ``old_faithful``, ``moons``, ``circles``,
            ``swiss_roll``) or a path to a ``.csv``/``.npy`` file of 2-D points.
        batch_size: points per step (the recipe: 8).
        n_points: size of the generated sets (default: 300 for the seed mixture, 1000 otherwise).
        columns: two CSV columns, by name or 0-based index.
        standardize: standardise each axis (default: on for ``old_faithful`` and files).
        header: whether a CSV file's first non-blank row is a header: ``auto`` (if a cell is
            neither a number nor a missing value), ``true`` or ``false``.
        drop_missing: drop CSV rows with a missing value (empty, NA, NaN, …) in a chosen
            column, instead of refusing the file; the count is ``data.dropped_rows``.
        seed: seed of the numpy Generator that draws generated sets.
        shuffle: reshuffle every epoch.

    Raises:
        DSMInputError: at construction, for any bad data or option (before training starts).
    """

    def __init__(
        self,
        dataset: str = "seed_mixture",
        batch_size: int = 8,
        n_points: Optional[int] = None,
        columns: Optional[list[Union[str, int]]] = None,
        standardize: Optional[bool] = None,
        header: Union[bool, str] = "auto",
        drop_missing: bool = False,
        seed: int = 0,
        shuffle: bool = True,
    ):
        self.hparams = dict(dataset=dataset, batch_size=batch_size, n_points=n_points, columns=columns,
                            standardize=standardize, header=header, drop_missing=drop_missing, seed=seed,
                            shuffle=shuffle)
        self.data = load_dataset(dataset, n_points, seed, columns, standardize, header, drop_missing)
        self.batch_size = check_batch_size(self.data, batch_size)
        self.points = jnp.asarray(self.data.points)  # (N, 2) float32, training space

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.data) // self.batch_size)
