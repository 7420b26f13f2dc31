"""2-D data sets by name or by file, identical for both frameworks.

Built-in names:

* ``seed_mixture`` (the default): the reference recipe's 300 points, 100 from N((−10, 1), I) and
  200 from N((10, 0), I), drawn from ``numpy.random.default_rng(seed)`` (docs/method.md §1). Its law is a
  Gaussian mixture, so it has an exact score.
* ``old_faithful``: 272 eruptions of the Old Faithful geyser (eruption length, waiting time, in
  minutes; R ``datasets::faithful``), shipped with the package. Standardised for training.
* ``moons``, ``circles``, ``swiss_roll``: scikit-learn's generators (the swiss roll keeps its
  x and z coordinates, divided by 10).

Any other string is read as a file; points are always kept in the *training space* and
``to_data_units`` maps samples back (minutes for Old Faithful). The file reading policy:

* **Formats**, by suffix (any case): ``.npy`` is a numpy array of shape (N, 2); ``.csv``, ``.txt``
  and a name without a suffix are comma-separated text. Any other suffix (``.npz``, ``.tsv``,
  ``.xlsx``, ``.parquet``, ``.json``, ``.pkl``, …) is refused by name, as are a folder, an
  unreadable file (the OS reason is given) and a CSV file that is not UTF-8 text (a NUL byte or an
  invalid UTF-8 sequence, with its byte offset).
* **Encoding**: UTF-8; a leading byte-order mark (as Excel writes it) is dropped.
* **Lines**: blank lines (nothing but spaces) are skipped, while a line of empty cells (``,``) is a
  row of missing values; every message
  names the file's own line number (1-based, as an editor shows it, blank lines counted; a quoted
  field spanning lines is named by the line it starts on). A row with a different number of fields
  than the first row is refused.
* **Header** (``data.header``): ``auto`` (default): the first non-blank row is a header only if
  some cell in it is neither a number nor a missing value (so a row of numbers, or of numbers and
  missing values, is data); ``true``: it is always the header; ``false``: there is none and
  columns are named by 0-based index ("0", "1", …). YAML booleans are accepted for true/false.
* **Columns**: two columns, by header name or 0-based index (``data.columns``); needed when the
  file has more than two.
* **Missing values**: an empty cell, or ``NA``, ``N/A``, ``NaN``, ``null``, ``None`` (any case; also
  any other spelling that Python reads as NaN, e.g. ``-nan``) in one of the two chosen columns.
  Refused by default; ``data.drop_missing=true`` drops such rows (missing values in other columns
  never matter), says how many on stderr and in ``Dataset2D.dropped_rows``, and refuses a file
  where no row is left. For ``.npy`` files it drops rows holding NaN.
* **Values**: every other cell of a chosen column must be a finite number (``inf``, ``1e400`` are
  refused). When standardising, the mean and spread of each axis must be finite (values up to
  ~1e150 are fine; larger ones are refused as too large to standardise). Without standardisation
  |value| must stay below 1e18: the model trains in float32 and squares its inputs' scale.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from dsm_common.mixtures import SEED_COUNTS, SEED_MEANS, GaussianMixture, seed_mixture
from dsm_common.validation import DSMInputError, check_points, check_positive_int

__all__ = ["Dataset2D", "BUILTIN_DATASETS", "CSV_SUFFIXES", "MISSING_TOKENS", "load_dataset", "read_points_file"]

BUILTIN_DATASETS = ("seed_mixture", "old_faithful", "moons", "circles", "swiss_roll")
_SKLEARN_DEFAULT_N = 1000

CSV_SUFFIXES = (".csv", ".txt", "")  # "" : a file name without a suffix
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})  # compared after strip() and lower()
# Without standardisation the points are the float32 training space itself; the DSM loss squares
# their scale, and float32 overflows above 3.4e38, so raw values must stay well below 1.8e19.
RAW_VALUE_LIMIT = 1e18
_HEADER_CHOICES = {"auto": "auto", "true": True, "false": False}


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
        dropped_rows: rows of the file left out for a missing value (``data.drop_missing=true``).
    """

    name: str
    points: np.ndarray
    shift: np.ndarray
    scale: np.ndarray
    mixture: GaussianMixture | None = None
    units: str = ""
    axis_names: tuple[str, str] = ("x1", "x2")
    dropped_rows: int = 0

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


class _Table(NamedTuple):
    """What ``_read_table`` found: the points, their axis names, and where each came from."""

    points: np.ndarray  # (N, 2) float64, all finite
    names: tuple[str, str]
    labels: tuple[str | int, str | int]  # how messages name the two columns: CSV names, .npy indices
    lines: list[int] | None  # the file line of each point (CSV); None for .npy (row = array index)
    dropped: int  # rows left out for a missing value


def _is_missing(text: str) -> bool:
    """An empty cell or a missing-value token (see MISSING_TOKENS), or any spelling of NaN."""
    t = text.strip()
    if t.lower() in MISSING_TOKENS:
        return True
    try:
        return float(t) != float(t)  # NaN: "-nan", "+NaN", …
    except ValueError:
        return False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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


def _header_mode(header: object) -> str | bool:
    """``data.header`` as "auto", True or False; accepts the strings auto/true/false (any case) and bools."""
    if isinstance(header, (bool, np.bool_)):
        return bool(header)
    if isinstance(header, str) and header.strip().lower() in _HEADER_CHOICES:
        return _HEADER_CHOICES[header.strip().lower()]
    raise DSMInputError(f"data.header must be auto, true or false, got {header!r}")


def _check_drop_missing(drop_missing: object) -> bool:
    if not isinstance(drop_missing, (bool, np.bool_)):
        raise DSMInputError(f"data.drop_missing must be true or false, got {drop_missing!r}")
    return bool(drop_missing)


def _read_text(path: Path) -> str:
    """The file as text: UTF-8 with an optional byte-order mark; refuse binary content by offset."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DSMInputError(f"{path}: cannot read the file ({err.strerror or err})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DSMInputError(f"{path}: is UTF-16 text, not a UTF-8 CSV file; save it as UTF-8 (CSV UTF-8)")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DSMInputError(f"{path}: not a text CSV file (binary content: a NUL byte at byte offset {nul})")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        at = err.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)  # utf-8-sig offsets skip the BOM
        raise DSMInputError(
            f"{path}: not a text CSV file (byte 0x{data[at]:02x} at byte offset {at} is not UTF-8); "
            "save it as UTF-8 text"
        ) from None


def _pick_columns(path: Path, header: list[str], columns: Sequence[str | int] | None) -> list[int]:
    n_cols = len(header)
    if columns is None:
        if n_cols != 2:
            raise DSMInputError(
                f"{path}: has {n_cols} column{'s' * (n_cols != 1)} ({', '.join(header)}); choose two with "
                "--data.columns=[NAME_OR_INDEX,NAME_OR_INDEX]"
            )
        return [0, 1]
    if len(columns) != 2:
        raise DSMInputError(f"data.columns must name exactly two columns, got {list(columns)!r}")
    picks = []
    for col in columns:
        if isinstance(col, int) or (isinstance(col, str) and col.isdigit() and col not in header):
            idx = int(col)
            if not 0 <= idx < n_cols:
                raise DSMInputError(f"{path}: column index {idx} is out of range (file has {n_cols} columns)")
        elif col in header:
            idx = header.index(col)
        else:
            raise DSMInputError(f"{path}: no column named {col!r}; the columns are {', '.join(header)}")
        picks.append(idx)
    if picks[0] == picks[1]:
        raise DSMInputError(f"{path}: data.columns={list(columns)!r} names the same column twice; choose two columns")
    return picks


def _read_npy(path: Path, columns, drop_missing: bool) -> _Table:
    if columns is not None:
        raise DSMInputError(f"{path}: columns can only be chosen for CSV files")
    try:
        arr = np.load(path, allow_pickle=False)
    except OSError as err:
        raise DSMInputError(f"{path}: cannot read the file ({err.strerror or err})") from None
    except ValueError as err:
        raise DSMInputError(f"{path}: not a readable .npy array ({err})") from None
    dropped = 0
    if drop_missing and arr.ndim == 2 and arr.shape[1] == 2 and arr.dtype.kind == "f" and len(arr):
        missing = np.isnan(arr).any(axis=1)
        dropped = int(missing.sum())
        if dropped == len(arr):
            raise DSMInputError(f"{path}: every one of its {len(arr)} rows holds NaN (data.drop_missing=true left no points)")
        if dropped:
            arr = arr[~missing]
            print(f"{path}: dropped {dropped} of {len(missing)} rows with a missing value (NaN)", file=sys.stderr)
    return _Table(check_points(arr, str(path)), ("x1", "x2"), (0, 1), None, dropped)


def _read_csv(path: Path, columns, header_mode: str | bool, drop_missing: bool) -> _Table:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    rows: list[tuple[int, list[str]]] = []  # (file line the row starts on, cells), blank rows left out
    last = 0
    try:
        for cells in reader:
            start, last = last + 1, reader.line_num
            if len(cells) > 1 or (cells and cells[0].strip()):  # a row of empty cells is missing values, not blank
                rows.append((start, cells))
    except csv.Error as err:
        raise DSMInputError(f"{path}: line {reader.line_num} is not readable as CSV ({err})") from None
    if not rows:
        raise DSMInputError(f"{path}: the file is empty")

    first = rows[0][1]
    n_cols = len(first)
    if header_mode == "auto":
        has_header = any(not (_is_number(c) or _is_missing(c)) for c in first)
    else:
        has_header = header_mode
    if has_header:
        header = [c.strip() or str(i) for i, c in enumerate(first)]  # an unnamed column is named by its index
        body = rows[1:]
    else:
        header = [str(i) for i in range(n_cols)]
        body = rows
    picks = _pick_columns(path, header, columns)
    names = (header[picks[0]], header[picks[1]])

    out = np.empty((len(body), 2))
    lines: list[int] = []
    missing_in: set[int] = set()  # chosen columns in which a missing value was found
    for line, r in body:
        if len(r) != n_cols:
            raise DSMInputError(f"{path}: line {line} has {len(r)} field{'s' * (len(r) != 1)}, expected {n_cols}")
        row_missing = False
        for j, idx in enumerate(picks):
            text = r[idx].strip()
            if _is_missing(text):
                if not drop_missing:
                    raise DSMInputError(
                        f"{path}: row {line}, column {header[idx]!r} holds {text!r}, a missing value "
                        "(every value must be a finite number); --data.drop_missing=true drops such rows"
                    )
                row_missing = True
                missing_in.add(j)
            else:
                out[len(lines), j] = _parse_float(text, path, line, header[idx])
        if not row_missing:
            lines.append(line)
    dropped = len(body) - len(lines)
    where = ", ".join(repr(names[j]) for j in sorted(missing_in))
    if dropped and not lines:
        raise DSMInputError(
            f"{path}: every one of its {dropped} data rows has a missing value in column(s) {where}; no points are left"
        )
    if dropped:
        print(f"{path}: dropped {dropped} of {len(body)} rows with a missing value in column(s) {where}", file=sys.stderr)
    return _Table(check_points(out[: len(lines)], str(path)), names, names, lines, dropped)


def _read_table(path: str | Path, columns=None, header: object = "auto", drop_missing: object = False) -> _Table:
    """``read_points_file``, also returning the file line of each point and the count of rows dropped."""
    header_mode = _header_mode(header)
    drop_missing = _check_drop_missing(drop_missing)
    path = Path(path)
    if not path.exists():
        raise DSMInputError(f"data file not found: {path}")
    if path.is_dir():
        raise DSMInputError(f"{path} is a folder, not a data file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _read_npy(path, columns, drop_missing)
    if suffix not in CSV_SUFFIXES:
        raise DSMInputError(
            f"{path}: unsupported file type {path.suffix!r}; give a .csv (or .txt) file of numbers, "
            "or a .npy array of shape (N, 2)"
        )
    return _read_csv(path, columns, header_mode, drop_missing)


def read_points_file(
    path: str | Path,
    columns: Sequence[str | int] | None = None,
    header: str | bool = "auto",
    drop_missing: bool = False,
) -> tuple[np.ndarray, tuple[str, str]]:
    """Read 2-D points from a ``.npy`` or CSV file, by the policy of the module docstring.

    Args:
        path: the file (``.npy``; ``.csv``, ``.txt`` or no suffix for CSV).
        columns: two column names or 0-based indices (CSV only; needed with more than two columns).
        header: "auto", "true" or "false" (or a bool): whether the first non-blank row is a header.
        drop_missing: drop rows with a missing value in a chosen column instead of refusing them.

    Returns:
        ``(points, axis_names)``: (N, 2) float64 array and the two column names. The number of
        rows dropped is printed to stderr (and is ``Dataset2D.dropped_rows`` via ``load_dataset``).

    Raises:
        DSMInputError: one line naming the file and, where there is one, the line, column and
            value at fault: missing file, folder, unsupported or binary file, unknown column,
            non-numeric, missing or infinite cell, wrong number of fields, wrong shape, bad option.
    """
    table = _read_table(path, columns, header, drop_missing)
    return table.points, table.names


def _too_large(name: str, label: str | int, values: np.ndarray, lines: list[int] | None = None) -> DSMInputError:
    i = int(np.argmax(np.abs(values)))
    where = f"row {lines[i]}, " if lines is not None else ""
    return DSMInputError(
        f"{name}: {where}column {label!r} holds {values[i]:.3g}, too large to standardise; rescale the data"
    )


def _standardised(name: str, raw: np.ndarray, standardize: bool, labels=(0, 1), lines=None, **kw) -> Dataset2D:
    if standardize:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow is checked below
            shift = raw.mean(axis=0)
            scale = raw.std(axis=0)
            pts = (raw - shift) / scale
        for j in range(2):
            if not (np.isfinite(shift[j]) and np.isfinite(scale[j])):
                raise _too_large(name, labels[j], raw[:, j], lines)
        if np.any(scale == 0):
            raise DSMInputError(f"{name}: an axis is constant, so it cannot be standardised")
        for j in range(2):
            if not np.isfinite(pts[:, j]).all():
                raise _too_large(name, labels[j], raw[:, j], lines)
    else:
        shift, scale = np.zeros(2), np.ones(2)
        pts = raw
    pts = pts.astype(np.float32)
    return Dataset2D(name=name, points=pts, shift=shift, scale=scale, **kw)


def _check_raw_range(table: _Table, path: str) -> None:
    """Without standardisation the raw values are the float32 training space: refuse |v| ≥ RAW_VALUE_LIMIT."""
    big = np.abs(table.points) >= RAW_VALUE_LIMIT
    if big.any():
        i, j = np.argwhere(big)[0]
        row = table.lines[i] if table.lines is not None else i
        raise DSMInputError(
            f"{path}: row {row}, column {table.labels[j]!r} holds {table.points[i, j]:.6g}, too large to train on "
            f"without standardisation (|value| must stay below {RAW_VALUE_LIMIT:.0e} in float32); "
            "set data.standardize=true or rescale the data"
        )


def load_dataset(
    dataset: str = "seed_mixture",
    n_points: int | None = None,
    seed: int = 0,
    columns: Sequence[str | int] | None = None,
    standardize: bool | None = None,
    header: str | bool = "auto",
    drop_missing: bool = False,
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
        header: CSV header policy, "auto", "true" or "false" (files only; see the module docstring).
        drop_missing: drop file rows with a missing value in a chosen column (files only); the
            count is ``Dataset2D.dropped_rows``.

    Raises:
        DSMInputError: on any bad input (see ``read_points_file``), a bad ``n_points``, values too
            large to standardise (or, unstandardised, to train on in float32).
    """
    if n_points is not None:
        check_positive_int("data.n_points", n_points)
    _header_mode(header)  # check the options whatever the data set
    _check_drop_missing(drop_missing)
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
    table = _read_table(dataset, columns, header, drop_missing)
    if standardize is False:
        _check_raw_range(table, str(dataset))
    return _standardised(str(dataset), table.points, standardize is not False, labels=table.labels, lines=table.lines,
                         axis_names=table.names, dropped_rows=table.dropped)


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

