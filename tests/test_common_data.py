"""Data sets by name and by file (dsm_common.datasets) and their input checks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import OLD_FAITHFUL_CSV

from dsm_common.datasets import check_batch_size, load_dataset, read_points_file
from dsm_common.validation import DSMInputError


def _write(path, text: str):
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# files


def test_csv_with_header_columns_by_name_and_index(tmp_path):
    f = _write(tmp_path / "p.csv", "a,b,c\n1,2,3\n4,5,6\n7.5,-8,9e1\n")
    pts, names = read_points_file(f, ["c", "a"])
    np.testing.assert_array_equal(pts, [[3, 1], [6, 4], [90, 7.5]])
    assert names == ("c", "a")
    pts, names = read_points_file(f, [1, 2])
    np.testing.assert_array_equal(pts, [[2, 3], [5, 6], [-8, 90]])
    assert names == ("b", "c")
    pts, _ = read_points_file(f, ["2", "0"])  # digit strings (as from the command line) are indices
    np.testing.assert_array_equal(pts, [[3, 1], [6, 4], [90, 7.5]])


def test_csv_without_header_and_blank_lines(tmp_path):
    f = _write(tmp_path / "p.csv", "1.5,2\n\n-3,4e-1\n")
    pts, names = read_points_file(f)
    np.testing.assert_array_equal(pts, [[1.5, 2.0], [-3.0, 0.4]])
    assert names == ("0", "1")


def test_npy_file(tmp_path):
    arr = np.arange(10, dtype=np.float32).reshape(5, 2)
    np.save(tmp_path / "p.npy", arr)
    pts, _ = read_points_file(tmp_path / "p.npy")
    np.testing.assert_array_equal(pts, arr)
    ds = load_dataset(str(tmp_path / "p.npy"))  # files are standardised by default
    np.testing.assert_allclose(ds.shift, [4.0, 5.0])
    np.testing.assert_allclose(ds.scale, [np.sqrt(8.0)] * 2)  # population std of 0,2,4,6,8
    np.testing.assert_allclose(ds.to_data_units(ds.points), arr, rtol=1e-6, atol=1e-6)  # float32 points


@pytest.mark.parametrize(
    "content, columns, fragments",
    [
        ("x,y,z\n1,2,3\n", ["x", "w"], ["no column named 'w'", "x, y, z"]),
        ("x,y,z\n1,2,3\n", [0, 5], ["column index 5", "3 columns"]),
        ("x,y,z\n1,2,3\n", None, ["3 columns", "x, y, z"]),
        ("x,y\n1,2\n3,4\n5,abc\n", None, ["row 4", "'y'", "'abc'", "not a number"]),
        ("x,y\n1,2\nnan,4\n", None, ["row 3", "'x'", "'nan'", "finite"]),
        ("1,2\n3,-inf\n", None, ["row 2", "'1'", "'-inf'", "finite"]),
        ("x,y\n1,2\n3\n", None, ["line 3", "1 field, expected 2"]),
        ("", None, ["empty"]),
    ],
)
def test_bad_csv_names_file_row_column_and_value(tmp_path, content, columns, fragments):
    f = _write(tmp_path / "bad.csv", content)
    with pytest.raises(DSMInputError) as err:
        read_points_file(f, columns)
    msg = str(err.value)
    assert str(f) in msg and "\n" not in msg
    for frag in fragments:
        assert frag in msg


@pytest.mark.parametrize(
    "arr, fragments",
    [
        (np.zeros((10, 3)), ["(N, 2)", "(10, 3)"]),
        (np.zeros(4), ["(N, 2)", "(4,)"]),
        (np.array([[0.0, 1.0], [2.0, np.inf]]), ["row 1, column 1 holds inf;"]),
        (np.array([[0.0, 1.0], [2.0, 3.0], [np.nan, 0.0]]), ["row 2, column 0 holds nan;"]),
        (np.array([["a", "b"]]), ["numbers", "<U1"]),
        (np.zeros((0, 2)), ["no points"]),
    ],
)
def test_bad_npy(tmp_path, arr, fragments):
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(DSMInputError) as err:
        read_points_file(tmp_path / "bad.npy")
    for frag in [str(tmp_path / "bad.npy"), *fragments]:
        assert frag in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DSMInputError, match="data file not found: .*nope.csv"):
        load_dataset(str(tmp_path / "nope.csv"))


# ---------------------------------------------------------------------------------------------
# built-in sets


def test_seed_mixture_counts_and_determinism():
    ds = load_dataset("seed_mixture", seed=0)
    assert ds.points.shape == (300, 2) and ds.points.dtype == np.float32
    # Modes 20 apart with unit variance: the first 100 points are the left cluster, the next 200 the right.
    left, right = ds.points[:100], ds.points[100:]
    assert (left[:, 0] < 0).all() and (right[:, 0] > 0).all()
    # Means within 4 standard errors (1/√100 and 1/√200 per coordinate).
    np.testing.assert_allclose(left.mean(0), [-10.0, 1.0], atol=4 / np.sqrt(100))
    np.testing.assert_allclose(right.mean(0), [10.0, 0.0], atol=4 / np.sqrt(200))
    np.testing.assert_array_equal(load_dataset("seed_mixture", seed=0).points, ds.points)  # same seed, same points
    assert not np.array_equal(load_dataset("seed_mixture", seed=1).points, ds.points)
    # Not standardised, so training space = data units; the law is the mixture of docs/method.md §1.
    np.testing.assert_array_equal(ds.shift, [0, 0])
    np.testing.assert_array_equal(ds.scale, [1, 1])
    np.testing.assert_allclose(ds.mixture.weights, [1 / 3, 2 / 3])
    np.testing.assert_array_equal(ds.target_mixture(3.0).covs[1], 10 * np.eye(2))
    small = load_dataset("seed_mixture", n_points=30)
    assert len(small) == 30 and (small.points[:10, 0] < 0).all() and (small.points[10:, 0] > 0).all()


def test_old_faithful_rows_standardisation_and_units():
    raw = np.loadtxt(OLD_FAITHFUL_CSV, delimiter=",", skiprows=1)
    assert raw.shape == (272, 2)
    ds = load_dataset("old_faithful")
    assert len(ds) == 272 and ds.units == "min"
    assert ds.axis_names == ("eruptions_min", "waiting_min")
    np.testing.assert_allclose(ds.shift, raw.mean(0), rtol=1e-12)
    np.testing.assert_allclose(ds.scale, raw.std(0), rtol=1e-12)
    # Standardised axes: mean 0, std 1 (float32 points: ~1e-7 relative rounding).
    np.testing.assert_allclose(ds.points.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(ds.points.std(0), 1.0, rtol=1e-6)
    # Back to minutes: the CSV's values, to float32 rounding of the standardised points.
    np.testing.assert_allclose(ds.to_data_units(ds.points), raw, rtol=1e-6)
    # Known data: eruptions 1.6–5.1 min, waiting 43–96 min, means ≈ 3.488 and 70.90.
    np.testing.assert_allclose(raw.min(0), [1.6, 43])
    np.testing.assert_allclose(raw.max(0), [5.1, 96])
    np.testing.assert_allclose(ds.shift, [3.487783, 70.897059], atol=1e-6)
    assert ds.mixture is None and ds.target_mixture(0.5) is None


def test_to_data_units_is_affine_per_axis():
    ds = load_dataset("old_faithful")
    x = np.array([[0.0, 0.0], [1.0, -2.0]])
    np.testing.assert_allclose(ds.to_data_units(x), [ds.shift, ds.shift + ds.scale * [1.0, -2.0]], rtol=1e-15)


@pytest.mark.parametrize("name", ["moons", "circles", "swiss_roll"])
def test_sklearn_sets(name):
    ds = load_dataset(name, n_points=200, seed=3)
    assert ds.points.shape == (200, 2) and np.isfinite(ds.points).all()
    np.testing.assert_array_equal(load_dataset(name, n_points=200, seed=3).points, ds.points)
    assert len(load_dataset(name)) == 1000  # default size
    if name == "circles":  # radii 1 and 0.5 with noise 0.05: every point between 0.25 and 1.25
        r = np.linalg.norm(ds.points, axis=1)
        assert ((r > 0.25) & (r < 1.25)).all()
    if name == "moons":  # scikit-learn's moons live in [−1.25, 2.25] × [−0.75, 1.25] (noise 0.05)
        assert (ds.points[:, 0] > -1.5).all() and (ds.points[:, 0] < 2.5).all()


def test_standardize_option(tmp_path):
    f = _write(tmp_path / "p.csv", "1,10\n3,30\n")
    raw = load_dataset(str(f), standardize=False)
    np.testing.assert_array_equal(raw.points, [[1, 10], [3, 30]])
    std = load_dataset(str(f))
    np.testing.assert_allclose(std.points, [[-1, -1], [1, 1]])
    with pytest.raises(DSMInputError, match="constant"):
        load_dataset(str(_write(tmp_path / "c.csv", "1,10\n1,30\n")))


def test_batch_size_checks(tmp_path):
    ds = load_dataset(str(_write(tmp_path / "five.csv", "0,0\n1,0\n0,1\n1,1\n2,2\n")))
    assert check_batch_size(ds, 5) == 5
    with pytest.raises(DSMInputError) as err:
        check_batch_size(ds, 8)
    assert "5 points" in str(err.value) and "data.batch_size=8" in str(err.value) and "five.csv" in str(err.value)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(DSMInputError, match="data.batch_size"):
            check_batch_size(ds, bad)
    with pytest.raises(DSMInputError, match="data.n_points"):
        load_dataset("moons", n_points=0)
