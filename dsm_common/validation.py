"""Input checks shared by both frameworks: one error type, one-line messages.

Every check raises :class:`DSMInputError` with a message that names the option, file, column or
row at fault and the value found. The command lines of both frameworks catch it and print that
one line, so a user never sees a traceback from inside torch or JAX for bad input.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

__all__ = [
    "DSMInputError",
    "check_positive",
    "check_positive_int",
    "check_non_negative_int",
    "check_fits_memory",
    "machine_memory_bytes",
    "check_points",
    "check_choice",
    "require_randomness",
    "DivergedError",
    "RunInterrupted",
    "diverged_training_message",
]


class DSMInputError(ValueError):
    """Bad user input: a file, column, value or option that cannot be used."""


class DivergedError(RuntimeError):
    """A run whose training loss or samples are not finite; the message names the likely setting.
    The command lines print it as one line and exit with status 3."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C while a run folder was marked as working (``dsm_common.files.run_phase``): the
    folder is now marked ``interrupted``, and the command lines say how to go on."""


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise DSMInputError."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise DSMInputError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_non_negative(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number ≥ 0, else raise DSMInputError."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise DSMInputError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def check_finite(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number, else raise DSMInputError."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise DSMInputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


# Counts (epochs, steps, chains, widths) are int32 inside compiled JAX loops and torch indexing.
INT_LIMIT = 2**31 - 1


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an integer with 1 ≤ value ≤ ``INT_LIMIT``, else raise DSMInputError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DSMInputError(f"{name} must be a positive integer, got {value!r}")
    if value > INT_LIMIT:
        raise DSMInputError(f"{name} must be at most {INT_LIMIT}, got {value!r}")
    return int(value)


def check_non_negative_int(name: str, value: object) -> int:
    """Return ``value`` if it is an integer with 0 ≤ value ≤ ``INT_LIMIT``, else raise DSMInputError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DSMInputError(f"{name} must be a non-negative integer, got {value!r}")
    if value > INT_LIMIT:
        raise DSMInputError(f"{name} must be at most {INT_LIMIT}, got {value!r}")
    return int(value)


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_memory(name: str, value: int, bytes_each: int, memory: int | None = None, shown: object = None) -> int:
    """Raise DSMInputError unless ``value`` items of ``bytes_each`` bytes fit in half this
    machine's memory (``memory`` bytes, default: :func:`machine_memory_bytes`); the message shows
    ``name=shown`` (default: ``value``)."""
    memory = machine_memory_bytes() if memory is None else memory
    need = int(value) * int(bytes_each)
    if memory and need > memory // 2:
        raise DSMInputError(f"{name}={value if shown is None else shown} needs about {need / 2**30:.3g} GiB, "
                            "more than half of this machine's "
                            f"{memory / 2**30:.3g} GiB of memory")
    return int(value)


def check_choice(name: str, value: object, choices: tuple) -> object:
    """Return ``value`` if it is one of ``choices``, else raise DSMInputError."""
    if value not in choices:
        raise DSMInputError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def check_points(points: np.ndarray, source: str) -> np.ndarray:
    """Check a data array: shape (N, 2), real numbers, all finite.

    Args:
        points: the array to check.
        source: what the points came from (a file path or data-set name), used in messages.

    Returns:
        The points as a (N, 2) float64 array.

    Raises:
        DSMInputError: wrong shape, non-numeric dtype, or a NaN/infinite value (the message
            names the first offending row).
    """
    arr = np.asarray(points)
    if arr.dtype.kind not in "iuf":
        raise DSMInputError(f"{source}: expected numbers, found values of dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DSMInputError(f"{source}: expected 2-D points of shape (N, 2), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DSMInputError(f"{source}: holds no points")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DSMInputError(
            f"{source}: row {row}, column {col} holds {float(arr[row, col])!r}; every value must be finite"
        )
    return arr


def diverged_training_message(epoch: int, loss: float, lr: float, checkpoint: bool = True) -> str:
    """The one line both frameworks print when an epoch's mean training loss is not finite;
    ``checkpoint``: whether a checkpoint was written before it (else the run starts afresh)."""
    kept = ("the last checkpoint written before it is kept (--ckpt_path last resumes from it)" if checkpoint
            else "no checkpoint was written before it, so the same command starts afresh")
    return (f"training diverged: the mean loss of epoch {epoch} is {loss}; try a smaller model.lr (now {lr:g}) "
            f"or standardised data (data.standardize=true); {kept}")


def require_randomness(fn: str, rng: object, *drawn: object) -> None:
    """Raise ValueError unless ``rng`` is given or every random input in ``drawn`` was passed in.

    Both frameworks' losses and samplers take their random inputs (``noise``, ``levels``) or a
    source to draw them from (``rng``: a ``torch.Generator`` or a ``jax.random`` key), never an
    implicit global stream, and fail the same way, with the same message, when given neither.
    """
    if rng is None and any(d is None for d in drawn):
        raise ValueError(f"{fn} needs its random inputs or rng= (a torch.Generator or a jax.random key)")
