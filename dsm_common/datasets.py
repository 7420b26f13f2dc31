"""2-D data sets by name or by file, identical for both frameworks.

Built-in names:

* ``seed_mixture`` (the default): the reference recipe's 300 points, 100 from N((−10, 1), I) and
  200 from N((10, 0), I), drawn from ``numpy.random.default_rng(seed)`` (docs/method.md §1). Its law is a
  Gaussian mixture, so it has an exact score.
* ``old_faithful``: 272 eruptions of the Old Faithful geyser (eruption length, waiting time, in
  minutes; R ``datasets::faithful``), shipped with the package. Standardised for training.
* ``moons``, ``circles``, ``swiss_roll``: scikit-learn's generators (the swiss roll keeps its
  x and z coordinates, divided by 10).

Any other string is read as a file: ``.npy`` of shape (N, 2), or CSV with or without a header,
two columns chosen by name or index. Points are always kept in the *training space*;
``to_data_units`` maps samples back (minutes for Old Faithful).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from dsm_common.mixtures import SEED_COUNTS, SEED_MEANS, GaussianMixture, seed_mixture
from dsm_common.validation import DSMInputError, check_points, check_positive_int

__all__ = ["Dataset2D", "BUILTIN_DATASETS", "load_dataset", "read_points_file"]

BUILTIN_DATASETS = ("seed_mixture", "old_faithful", "moons", "circles", "swiss_roll")
_SKLEARN_DEFAULT_N = 1000


@dataclass
class Dataset2D:
    """Points in training space plus what is needed to report and grade samples.

    Attributes:
        name: the data-set name or file path it was loaded from.
        points: (N, 2) float32, training space.
        shift, scale: (2,) float64; data units = training space · scale + shift.
        mixture: the data law in training space when it is a known Gaussian mixture, else None.
        units: unit of the data axes after ``to_data_units`` ("" when unitless).
        axis_names: names of the two axes, for plots.
    """

    name: str
    points: np.ndarray
    shift: np.ndarray
    scale: np.ndarray
    mixture: GaussianMixture | None = None
    units: str = ""
    axis_names: tuple[str, str] = ("x1", "x2")

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def to_data_units(self, x: np.ndarray) -> np.ndarray:
        """Map training-space points (..., 2) to data units (float64)."""
        return np.asarray(x, dtype=np.float64) * self.scale + self.shift

    def target_mixture(self, sigma: float) -> GaussianMixture | None:
        """The noised data law ``p ∗ N(0, σ² I)`` in training space, if the law is a mixture."""
        return None if self.mixture is None else self.mixture.convolve(sigma)

    def target_sample(self, n: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` points (n, 2) float64 in training space from ``p ∗ N(0, σ² I)``.

        ``p`` is the exact mixture where there is one, else the empirical law of the points
        (resampling with replacement), which is what a DSM model of noise σ is trained to match.
        """
        if self.mixture is not None:
            return self.mixture.convolve(sigma).sample(n, rng) if sigma > 0 else self.mixture.sample(n, rng)
        idx = rng.integers(0, len(self), size=n)
        return self.points[idx].astype(np.float64) + sigma * rng.standard_normal((n, 2))


def _parse_float(text: str, path: Path, row: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DSMInputError(
            f"{path}: row {row}, column {column!r} holds {text!r}, which is not a number"
        ) from None
    if not np.isfinite(value):  # name the file's line and column, as for text (not the array index)
        raise DSMInputError(f"{path}: row {row}, column {column!r} holds {text!r}; every value must be finite")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_points_file(path: str | Path, columns: Sequence[str | int] | None = None) -> tuple[np.ndarray, tuple[str, str]]:
    """Read 2-D points from a ``.npy`` or CSV file.

    CSV files may have a header (detected when a cell of the first row is not a number). With
    more than two columns, ``columns`` must name two of them, by header name or 0-based index.

    Args:
        path: the file.
        columns: two column names or indices (CSV only).

    Returns:
        ``(points, axis_names)``: (N, 2) float64 array and the two column names.

    Raises:
        DSMInputError: missing file, unknown column, non-numeric cell, NaN/infinite value,
            wrong shape; the message names the file and the row or column.
    """
    path = Path(path)
    if not path.is_file():
        raise DSMInputError(f"data file not found: {path}")
    if path.suffix == ".npy":
        if columns is not None:
            raise DSMInputError(f"{path}: columns can only be chosen for CSV files")
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise DSMInputError(f"{path}: not a readable .npy array ({err})") from None
        return check_points(arr, str(path)), ("x1", "x2")

    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
    if not rows:
        raise DSMInputError(f"{path}: the file is empty")
    has_header = not all(_is_number(c) for c in rows[0])
    n_cols = len(rows[0])
    header = [c.strip() for c in rows[0]] if has_header else [str(i) for i in range(n_cols)]
    body = rows[1:] if has_header else rows
    first_row = 2 if has_header else 1  # 1-based line numbers, as an editor shows them

    if columns is None:
        if n_cols != 2:
            raise DSMInputError(
                f"{path}: has {n_cols} columns ({', '.join(header)}); choose two with "
                "--data.columns=[NAME_OR_INDEX,NAME_OR_INDEX]"
            )
        picks = [0, 1]
    else:
        if len(columns) != 2:
            raise DSMInputError(f"columns must name exactly two columns, got {list(columns)!r}")
        picks = []
        for col in columns:
            if isinstance(col, int) or (isinstance(col, str) and col.isdigit() and col not in header):
                idx = int(col)
                if not 0 <= idx < n_cols:
                    raise DSMInputError(f"{path}: column index {idx} is out of range (file has {n_cols} columns)")
            elif col in header:
                idx = header.index(col)
            else:
                raise DSMInputError(
                    f"{path}: no column named {col!r}; the columns are {', '.join(header)}"
                )
            picks.append(idx)

    out = np.empty((len(body), 2))
    for i, r in enumerate(body):
        line = first_row + i
        if len(r) != n_cols:
            raise DSMInputError(f"{path}: line {line} has {len(r)} fields, expected {n_cols}")
        for j, idx in enumerate(picks):
            out[i, j] = _parse_float(r[idx].strip(), path, line, header[idx])
    names = (header[picks[0]], header[picks[1]])
    return check_points(out, str(path)), names


def _standardised(name: str, raw: np.ndarray, standardize: bool, **kw) -> Dataset2D:
    if standardize:
        shift = raw.mean(axis=0)
        scale = raw.std(axis=0)
        if np.any(scale == 0):
            raise DSMInputError(f"{name}: an axis is constant, so it cannot be standardised")
    else:
        shift, scale = np.zeros(2), np.ones(2)
    pts = ((raw - shift) / scale).astype(np.float32)
    return Dataset2D(name=name, points=pts, shift=shift, scale=scale, **kw)


def load_dataset(
    dataset: str = "seed_mixture",
    n_points: int | None = None,
    seed: int = 0,
    columns: Sequence[str | int] | None = None,
    standardize: bool | None = None,
) -> Dataset2D:
    """Load a built-in data set by name, or points from a file.

    Args:
        dataset: one of ``BUILTIN_DATASETS`` or a path to a ``.npy``/``.csv`` file.
        n_points: number of points for the generated sets (seed mixture: split ⅓/⅔; default 300
            for the seed mixture, 1000 for the scikit-learn sets). Ignored for files.
        seed: seed of the numpy Generator that draws generated sets.
        columns: two CSV columns (names or indices).
        standardize: shift and scale each axis to mean 0, std 1 for training. Default: True
            for ``old_faithful`` and files, False for the generated sets.

    Raises:
        DSMInputError: on any bad input (see ``read_points_file``), a bad ``n_points``.
    """
    if n_points is not None:
        check_positive_int("data.n_points", n_points)
    rng = np.random.default_rng(seed)
    if dataset == "seed_mixture":
        counts = SEED_COUNTS if n_points is None else (n_points // 3, n_points - n_points // 3)
        raw = np.concatenate([m + rng.standard_normal((c, 2)) for m, c in zip(SEED_MEANS, counts)])
        law = seed_mixture()
        if n_points is not None:
            law = GaussianMixture(np.array(counts) / sum(counts), law.means, law.covs)
        ds = _standardised(dataset, raw, bool(standardize), mixture=law)
        if standardize:
            ds.mixture = law.transformed(ds.shift, ds.scale)
        return ds
    if dataset == "old_faithful":
        ref = resources.files("dsm_common") / "data" / "old_faithful.csv"
        with resources.as_file(ref) as path:
            raw, names = read_points_file(path, columns)
        return _standardised(dataset, raw, standardize is not False, units="min", axis_names=names)
    if dataset in ("moons", "circles", "swiss_roll"):
        from sklearn import datasets as skd

        n = _SKLEARN_DEFAULT_N if n_points is None else n_points
        if dataset == "moons":
            raw, _ = skd.make_moons(n, noise=0.05, random_state=seed)
        elif dataset == "circles":
            raw, _ = skd.make_circles(n, noise=0.05, factor=0.5, random_state=seed)
        else:
            raw3, _ = skd.make_swiss_roll(n, noise=0.5, random_state=seed)
            raw = raw3[:, [0, 2]] / 10.0
        return _standardised(dataset, raw, bool(standardize))
    raw, names = read_points_file(dataset, columns)
    return _standardised(str(dataset), raw, standardize is not False, axis_names=names)


def check_batch_size(ds: Dataset2D, batch_size: int) -> int:
    """Check ``batch_size`` is a positive integer no larger than the data set."""
    check_positive_int("data.batch_size", batch_size)
    if batch_size > len(ds):
        raise DSMInputError(
            f"{ds.name}: holds {len(ds)} points, fewer than one batch (data.batch_size={batch_size})"
        )
    return batch_size


def largest_pairwise_distance(points: np.ndarray) -> float:
    """Largest Euclidean distance between two of ``points`` (N, d): NCSN's σ₁ (arXiv 2006.09011)."""
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist

    pts = np.asarray(points, dtype=np.float64)
    if len(pts) > 3:
        try:  # the diameter is attained between hull vertices
            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # degenerate (collinear) sets: use all points
            pass
    return float(pdist(pts).max()) if len(pts) > 1 else 0.0

