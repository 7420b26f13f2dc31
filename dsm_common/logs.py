"""The per-epoch training log both command lines write: ``logs/metrics.csv`` in the run folder.

The format is Lightning's ``CSVLogger``'s (``lightning.pytorch.loggers.CSVLogger``), which writes
the torch side's file: a header of the logged keys in sorted order, then one row per epoch::

    epoch,step,train_loss
    0,38,7.29...
    1,76,6.95...

``epoch`` counts from 0 (Lightning's ``current_epoch`` of the epoch just finished), ``step`` is the
number of optimiser steps after it, ``train_loss`` the epoch's mean mini-batch loss (the value
``metrics.json``'s ``final_loss`` and ``loss.png`` report). The JAX side writes the same file
with :class:`EpochCSVLog`, so the two read alike with ``csv.DictReader`` or ``pandas.read_csv``.

A resumed run rewrites the file from the checkpoint's loss history before it goes on, so the log
holds exactly the epochs the weights have seen, also after a run killed between two checkpoints.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from dsm_common.files import write_text_atomic

__all__ = ["LOG_DIR", "LOG_FILE", "FIELDS", "log_rows", "EpochCSVLog", "read_log"]

LOG_DIR = "logs"
LOG_FILE = f"{LOG_DIR}/metrics.csv"
FIELDS = ("epoch", "step", "train_loss")  # Lightning's CSVLogger sorts its keys: this order


def log_rows(losses: Sequence[float], steps_per_epoch: int, first_epoch: int = 0) -> list[dict]:
    """Rows of the log for consecutive epochs from ``first_epoch`` (0-based) with ``losses``.

    ``step`` of epoch e is ``(e + 1) × steps_per_epoch``: every epoch of a run takes the same
    number of optimiser steps (⌈N / B⌉)."""
    return [{"epoch": first_epoch + i, "step": (first_epoch + i + 1) * int(steps_per_epoch), "train_loss": float(v)}
            for i, v in enumerate(losses)]


class EpochCSVLog:
    """``logs/metrics.csv`` of ``run_dir``, written as Lightning's CSVLogger writes it.

    :meth:`restart` writes the header and the rows of a resumed run's history (atomically);
    :meth:`append` adds rows as training goes on (flushed each time, so ``tail -f`` follows it).
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOG_FILE

    def restart(self, rows: Sequence[dict] = ()) -> None:
        """Replace the file by the header and ``rows``."""
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, buf.getvalue())

    def append(self, rows: Sequence[dict]) -> None:
        """Add ``rows`` at the end of the file (written by :meth:`restart` first)."""
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=FIELDS).writerows(rows)


def read_log(run_dir: str | Path) -> list[dict]:
    """The rows of ``run_dir``'s ``logs/metrics.csv``: ``epoch`` and ``step`` as int, ``train_loss`` as float.

    Raises:
        FileNotFoundError: the run wrote no log (``trainer.logger=false``).
    """
    with open(Path(run_dir) / LOG_FILE, newline="") as f:
        return [{"epoch": int(r["epoch"]), "step": int(r["step"]), "train_loss": float(r["train_loss"])}
                for r in csv.DictReader(f)]
