"""The data transform a model was trained in, as stored with its weights.

A model learns the score of its data in *training space*: ``x = (y − shift) / scale`` per axis,
where ``y`` is in data units (minutes for Old Faithful). The weight file carries that transform
(``data_transform`` in its metadata: shift, scale, the axis names, their unit, the number of points
and a fingerprint of them), so ``sample`` maps samples back to data units from the file alone,
and grades them against the data only when the data are at hand and unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import numpy as np

from dsm_common.datasets import Dataset2D
from dsm_common.validation import DSMInputError

__all__ = ["data_transform", "fingerprint", "in_training_space", "ungraded_dataset", "check_transform"]


def fingerprint(ds: Dataset2D) -> str:
    """SHA-256 of the training points (float32) and the transform (float64): any edit of the data
    file, or a change of standardisation, changes it."""
    h = hashlib.sha256()
    for arr in (np.ascontiguousarray(ds.points, np.float32), np.asarray(ds.shift, np.float64),
                np.asarray(ds.scale, np.float64)):
        h.update(arr.tobytes())
    return h.hexdigest()


def data_transform(ds: Dataset2D) -> dict[str, Any]:
    """The JSON-able ``data_transform`` entry of a weight file for data set ``ds``."""
    return {
        "name": ds.name,
        "shift": [float(v) for v in ds.shift],
        "scale": [float(v) for v in ds.scale],
        "axis_names": list(ds.axis_names),
        "units": ds.units,
        "n_points": len(ds),
        "points_sha256": fingerprint(ds),
    }


def check_transform(stored: Any, source: str) -> dict[str, Any]:
    """Check a weight file's ``data_transform`` entry: two finite shifts, two finite positive scales.

    Raises:
        DSMInputError: naming ``source`` (the weight file) and the entry at fault.
    """
    if not isinstance(stored, dict):
        raise DSMInputError(f"{source}: metadata data_transform must be a mapping, got {stored!r}")
    for key, positive in (("shift", False), ("scale", True)):
        v = stored.get(key)
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            arr = np.array([])
        if arr.shape != (2,) or not np.isfinite(arr).all() or (positive and (arr <= 0).any()):
            kind = "two finite positive numbers" if positive else "two finite numbers"
            raise DSMInputError(f"{source}: metadata data_transform.{key} must be {kind}, got {v!r}")
    return stored


def in_training_space(ds: Dataset2D, shift: np.ndarray, scale: np.ndarray) -> Dataset2D:
    """``ds`` re-expressed in the training space of another transform (``shift``, ``scale``): the
    same points in data units, so samples of a model trained there can be graded against them."""
    shift, scale = np.asarray(shift, np.float64), np.asarray(scale, np.float64)
    raw = ds.to_data_units(ds.points)
    mixture = None
    if ds.mixture is not None:
        mixture = ds.mixture.transformed(-ds.shift / ds.scale, 1.0 / ds.scale).transformed(shift, scale)
    return replace(ds, points=((raw - shift) / scale).astype(np.float32), shift=shift, scale=scale, mixture=mixture)


def ungraded_dataset(stored: dict[str, Any]) -> Dataset2D:
    """A data set holding only a stored transform (no points): what ``sample`` maps samples back
    to data units with when the training data are not at hand."""
    return Dataset2D(name=str(stored.get("name", "")), points=np.zeros((0, 2), np.float32),
                     shift=np.asarray(stored["shift"], np.float64), scale=np.asarray(stored["scale"], np.float64),
                     units=str(stored.get("units") or ""),
                     axis_names=tuple(stored.get("axis_names") or ("x1", "x2"))[:2])
