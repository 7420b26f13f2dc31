"""``LightningDataModule`` over any data set of ``dsm_common.datasets``.

Mirror: ``jax_dsm/data.py``. Batches are drawn by a ``BatchSampler`` over a ``RandomSampler``
(reshuffled every epoch, last batch short: 300 points in batches of 8 give 38 steps), and each
batch is one tensor index rather than B item fetches and a collate.

``batches_per_step = K > 1`` groups K consecutive mini-batches into one loader item (a list of
K ``(x,)`` tuples; the epoch's order and batch boundaries are unchanged). The ``DSMModule`` then
takes one optimiser step per mini-batch inside a single Lightning step, so the Trainer's fixed
cost per step is paid once per K updates. ``dsm-torch fit`` uses K = 64 by default
(``torch_dsm.cli.data_defaults``); the class itself defaults to K = 1, Lightning's usual loop.

Under DDP (``trainer.devices`` × ``trainer.num_nodes`` = R > 1 processes; docs/scale.md) an
epoch's batches are the same ``data.batch_size``-point global batches as in one process (every
process draws the same permutation: ``seed_everything`` seeds them alike) and each process takes
its slice of every global batch (``rank_slice``), with the global batch's size beside it, so the
module can weigh its loss to make DDP's gradient average the gradient of the global batch
(``DSMModule.loss``). The sampler is a ``DistributedSampler``, which Lightning leaves in place.
"""

from __future__ import annotations

from typing import Optional, Union

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from dsm_common.datasets import check_batch_size, load_dataset
from dsm_common.validation import check_positive_int

__all__ = ["DSMDataModule"]  # rank_slice: DDP only (JAX splits batches through its mesh)


def rank_slice(batch: list[int], ranks: int, rank: int) -> list[int]:
    """Process ``rank``'s part of a global batch of indices split across ``ranks`` processes:
    consecutive slices of sizes differing by at most one (``numpy.array_split``'s), in rank order."""
    size, extra = divmod(len(batch), ranks)
    start = rank * size + min(rank, extra)
    return batch[start : start + size + (rank < extra)]


class DSMDataModule(L.LightningDataModule):
    """2-D points for denoising score matching.

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
        batches_per_step: mini-batches per Lightning step (1: the usual one; see module doc).

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
        batches_per_step: int = 1,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.data = load_dataset(dataset, n_points, seed, columns, standardize, header, drop_missing)
        self.batch_size = check_batch_size(self.data, batch_size)
        self.batches_per_step = check_positive_int("data.batches_per_step", batches_per_step)
        self.points = torch.from_numpy(self.data.points)  # (N, 2) float32, training space

    def train_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:  # DDP: this process's slice of every batch
            sampler = _RankBatches(len(self.points), self.batch_size, self.hparams.shuffle, self.batches_per_step,
                                   trainer.world_size, trainer.global_rank)
            return DataLoader(_RankGroups(self.points, self.batches_per_step), sampler=sampler, batch_size=None)
        data = TensorDataset(self.points)
        order = RandomSampler(data) if self.hparams.shuffle else SequentialSampler(data)
        batches = BatchSampler(order, self.batch_size, drop_last=False)
        if self.batches_per_step > 1:
            # Items are lists of K index lists; _Groups fetches each mini-batch by one index.
            groups = BatchSampler(batches, self.batches_per_step, drop_last=False)
            return DataLoader(_Groups(self.points), sampler=groups, batch_size=None)
        # batch_size=None: the BatchSampler's index lists go to TensorDataset.__getitem__ whole.
        return DataLoader(data, sampler=batches, batch_size=None)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Lightning's hook: grouped mini-batches (a list of lists of tensors) already on the CPU
        stay as they are when training on the CPU, where Lightning's generic traversal of the list
        costs about 0.3 ms a step (profiled) to return the same tensors; any other batch or device
        Lightning's way."""
        if device.type == "cpu" and isinstance(batch, list) and all(
                isinstance(mb, (list, tuple)) and all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in mb)
                for mb in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)


class _Groups(Dataset):
    """Maps a list of index lists to a list of ``(points[idx],)`` mini-batches."""

    def __init__(self, points: torch.Tensor):
        self.points = points

    def __getitem__(self, groups: list[list[int]]) -> list[tuple[torch.Tensor]]:
        return [(self.points[idx],) for idx in groups]

    def __len__(self) -> int:
        return len(self.points)


class _RankBatches(DistributedSampler):
    """One process's items of a DDP epoch: its ``rank_slice`` of each global batch, with the
    global batch's size; K > 1 (``batches_per_step``) groups K of them into one item. A
    ``DistributedSampler`` so that Lightning does not wrap it in one of its own."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, group: int, ranks: int, rank: int):
        # DistributedSampler.__init__ is not called: it wants a dataset and draws its own order.
        self.n, self.batch_size, self.shuffle, self.group = n, batch_size, shuffle, group
        self.num_replicas, self.rank, self.epoch = ranks, rank, 0

    def __iter__(self):
        # The same permutation in every process, drawn as one process's RandomSampler draws it.
        order = RandomSampler(range(self.n)) if self.shuffle else SequentialSampler(range(self.n))
        items = [(rank_slice(b, self.num_replicas, self.rank), len(b)) for b in BatchSampler(order, self.batch_size, False)]
        if self.group == 1:
            yield from items
        else:
            yield from (items[i : i + self.group] for i in range(0, len(items), self.group))

    def __len__(self) -> int:
        batches = -(-self.n // self.batch_size)
        return -(-batches // self.group)


class _RankGroups(Dataset):
    """Maps a ``_RankBatches`` item to ``(points[idx], global batch size)`` (or a list of them)."""

    def __init__(self, points: torch.Tensor, group: int):
        self.points, self.group = points, group

    def _batch(self, item) -> tuple[torch.Tensor, torch.Tensor]:
        idx, size = item
        return self.points[idx], torch.tensor(size)

    def __getitem__(self, item):
        return self._batch(item) if self.group == 1 else [self._batch(i) for i in item]

    def __len__(self) -> int:
        return len(self.points)
