"""The file reading policy of dsm_common.datasets (its module docstring): header auto/true/false,
byte-order mark, missing values and data.drop_missing, formats, binary files, folders, unreadable
files, line numbers after blank lines, and values too large to standardise or to train on."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dsm_common.datasets import load_dataset, read_points_file
from dsm_common.validation import DSMInputError

BOM = "\ufeff"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _error(fn, *args, **kw) -> str:
    """The message of the DSMInputError ``fn(*args, **kw)`` raises; it must be one line."""
    with pytest.raises(DSMInputError) as err:
        fn(*args, **kw)
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------
# byte-order mark and header


def test_bom_and_header(tmp_path):
    f = _write(tmp_path / "p.csv", BOM + "x,y\n1,2\n3,4\n")
    pts, names = read_points_file(f)
    assert names == ("x", "y")  # not "\ufeffx"
    np.testing.assert_array_equal(pts, [[1, 2], [3, 4]])
    pts, names = read_points_file(f, ["y", "x"])  # the first name is found despite the BOM
    np.testing.assert_array_equal(pts, [[2, 1], [4, 3]])


def test_bom_without_header_keeps_the_first_row(tmp_path):
    f = _write(tmp_path / "p.csv", BOM + "1,2\n3,4\n5,6\n")
    pts, names = read_points_file(f)
    assert pts.shape == (3, 2)  # N points, not N − 1
    np.testing.assert_array_equal(pts, [[1, 2], [3, 4], [5, 6]])
    assert names == ("0", "1")


def test_first_row_with_a_missing_value_is_data_under_auto(tmp_path):
    f = _write(tmp_path / "p.csv", "1,NA\n3,4\n5,6\n")
    msg = _error(read_points_file, f)
    assert msg == (f"{f}: row 1, column '1' holds 'NA', a missing value (every value must be a finite number); "
                   "--data.drop_missing=true drops such rows")
    ds = load_dataset(str(f), drop_missing=True, standardize=False)
    np.testing.assert_array_equal(ds.points, [[3, 4], [5, 6]])
    assert ds.dropped_rows == 1 and ds.axis_names == ("0", "1")


def test_header_true_takes_a_numeric_first_row(tmp_path):
    f = _write(tmp_path / "p.csv", "10,20\n1,2\n3,4\n")
    pts, names = read_points_file(f, header="true")
    assert names == ("10", "20")
    np.testing.assert_array_equal(pts, [[1, 2], [3, 4]])
    pts, names = read_points_file(f, header=True)  # a YAML boolean
    assert names == ("10", "20") and len(pts) == 2
    pts, _ = read_points_file(f)  # auto: numbers are data
    assert len(pts) == 3


def test_header_false_refuses_a_text_first_row(tmp_path):
    f = _write(tmp_path / "p.csv", "x,y\n1,2\n")
    msg = _error(read_points_file, f, header="false")
    assert msg == f"{f}: row 1, column '0' holds 'x', which is not a number"
    assert "row 1" in _error(read_points_file, f, header=False)


@pytest.mark.parametrize("bad", ["maybe", "yes", 1, None])
def test_bad_header_option(tmp_path, bad):
    f = _write(tmp_path / "p.csv", "1,2\n3,4\n")
    assert _error(read_points_file, f, header=bad) == f"data.header must be auto, true or false, got {bad!r}"
    assert "data.header" in _error(load_dataset, "seed_mixture", header=bad)  # checked for every data set


def test_bad_drop_missing_option(tmp_path):
    f = _write(tmp_path / "p.csv", "1,2\n3,4\n")
    assert _error(read_points_file, f, drop_missing="yes") == "data.drop_missing must be true or false, got 'yes'"


# ---------------------------------------------------------------------------------------------
# line numbers


def test_line_numbers_after_blank_lines(tmp_path):
    f = _write(tmp_path / "p.csv", "x,y\n\n1,2\n   \n\n3,abc\n")
    assert _error(read_points_file, f) == f"{f}: row 6, column 'y' holds 'abc', which is not a number"
    f = _write(tmp_path / "q.csv", "\n\nx,y\n1,2\n\n3\n")
    assert _error(read_points_file, f) == f"{f}: line 6 has 1 field, expected 2"


def test_line_numbers_after_a_quoted_multiline_field(tmp_path):
    f = _write(tmp_path / "p.csv", 'x,y,note\n1,2,"two\nlines"\n3,oops,c\n')
    assert _error(read_points_file, f, ["x", "y"]) == f"{f}: row 4, column 'y' holds 'oops', which is not a number"
    pts, _ = read_points_file(_write(tmp_path / "q.csv", 'x,y,note\n1,2,"two\nlines"\n3,4,c\n'), ["x", "y"])
    np.testing.assert_array_equal(pts, [[1, 2], [3, 4]])


def test_crlf_line_numbers(tmp_path):
    f = tmp_path / "p.csv"
    f.write_bytes(b"x,y\r\n1,2\r\n\r\n3,zz\r\n")
    assert _error(read_points_file, f) == f"{f}: row 4, column 'y' holds 'zz', which is not a number"


# ---------------------------------------------------------------------------------------------
# missing values


@pytest.mark.parametrize("token", ["", " ", "NA", "na", "N/A", "n/a", "NaN", "nan", "-nan", "null", "NULL", "None", "none"])
def test_missing_tokens_refused_then_dropped(tmp_path, capsys, token):
    f = _write(tmp_path / "p.csv", f"x,y\n1,2\n3,{token}\n5,6\n7,8\n")
    msg = _error(read_points_file, f)
    assert msg.startswith(f"{f}: row 3, column 'y' holds {token.strip()!r}, a missing value")
    assert "--data.drop_missing=true" in msg
    capsys.readouterr()
    ds = load_dataset(str(f), drop_missing=True, standardize=False)
    np.testing.assert_array_equal(ds.points, [[1, 2], [5, 6], [7, 8]])
    assert ds.dropped_rows == 1
    assert capsys.readouterr().err == f"{f}: dropped 1 of 4 rows with a missing value in column(s) 'y'\n"


def test_drop_missing_counts_rows_and_names_the_columns(tmp_path, capsys):
    f = _write(tmp_path / "p.csv", "a,b\n1,\nNA,2\n,\n3,4\n5,n/a\n\n")  # ",": a row of two missing values
    pts, names = read_points_file(f, drop_missing=True)
    np.testing.assert_array_equal(pts, [[3, 4]])
    assert names == ("a", "b")
    assert capsys.readouterr().err == f"{f}: dropped 4 of 5 rows with a missing value in column(s) 'a', 'b'\n"
    assert load_dataset(str(f), drop_missing=True, standardize=False).dropped_rows == 4
    f = _write(tmp_path / "r.csv", "a,b\n1,2\n , \n3,4\n")  # refused by default, by its line
    assert _error(read_points_file, f) == (f"{f}: row 3, column 'a' holds '', a missing value (every value must be "
                                           "a finite number); --data.drop_missing=true drops such rows")
    assert load_dataset(str(_write(tmp_path / "q.csv", "a,b\n1,2\n3,4\n"))).dropped_rows == 0


def test_missing_value_in_an_unchosen_column_is_ignored(tmp_path, capsys):
    f = _write(tmp_path / "p.csv", "a,b,c\n1,,2\n3,NA,4\n5,x,6\n")
    pts, names = read_points_file(f, ["a", "c"])
    np.testing.assert_array_equal(pts, [[1, 2], [3, 4], [5, 6]])
    assert names == ("a", "c")
    assert load_dataset(str(f), columns=[0, 2], drop_missing=True).dropped_rows == 0
    assert capsys.readouterr().err == ""


def test_text_is_refused_even_with_drop_missing(tmp_path):
    f = _write(tmp_path / "p.csv", "x,y\n1,2\nNA,abc\n3,4\n")
    assert _error(read_points_file, f, drop_missing=True) == f"{f}: row 3, column 'y' holds 'abc', which is not a number"


def test_all_rows_missing(tmp_path):
    f = _write(tmp_path / "p.csv", "x,y\n1,NA\n,2\n")
    msg = _error(read_points_file, f, drop_missing=True)
    assert msg == f"{f}: every one of its 2 data rows has a missing value in column(s) 'x', 'y'; no points are left"


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e400"])
def test_infinite_values_stay_refused(tmp_path, value):
    f = _write(tmp_path / "p.csv", f"x,y\n1,2\n\n{value},4\n")
    for drop in (False, True):
        msg = _error(read_points_file, f, drop_missing=drop)
        assert msg == f"{f}: row 4, column 'x' holds {value!r}; every value must be finite"


def test_npy_drop_missing(tmp_path, capsys):
    arr = np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]])
    np.save(tmp_path / "p.npy", arr)
    assert "row 1, column 0 holds nan" in _error(read_points_file, tmp_path / "p.npy")
    ds = load_dataset(str(tmp_path / "p.npy"), drop_missing=True, standardize=False)
    np.testing.assert_array_equal(ds.points, [[0, 1], [3, 4]])
    assert ds.dropped_rows == 1
    assert capsys.readouterr().err == f"{tmp_path / 'p.npy'}: dropped 1 of 3 rows with a missing value (NaN)\n"


# ---------------------------------------------------------------------------------------------
# formats and files


@pytest.mark.parametrize("suffix", [".npz", ".xlsx", ".parquet", ".json", ".pkl", ".tsv"])
def test_unsupported_suffix(tmp_path, suffix):
    f = tmp_path / f"p{suffix}"
    if suffix == ".npz":
        np.savez(f, a=np.zeros((3, 2)))
    else:
        f.write_bytes(b"PK\x03\x04\x00\x00")
    assert _error(load_dataset, str(f)) == (
        f"{f}: unsupported file type {suffix!r}; give a .csv (or .txt) file of numbers, or a .npy array of shape (N, 2)"
    )


@pytest.mark.parametrize("name", ["p.txt", "p", "P.CSV"])
def test_csv_suffixes(tmp_path, name):
    pts, _ = read_points_file(_write(tmp_path / name, "1,2\n3,4\n"))
    np.testing.assert_array_equal(pts, [[1, 2], [3, 4]])


def test_binary_content_in_a_csv(tmp_path):
    f = tmp_path / "p.csv"
    f.write_bytes(b"x,y\n1,2\n\x00\x01\x02")
    assert _error(read_points_file, f) == f"{f}: not a text CSV file (binary content: a NUL byte at byte offset 8)"
    f.write_bytes(b"x,y\n1,\xff\xfe\n")
    assert _error(read_points_file, f) == (
        f"{f}: not a text CSV file (byte 0xff at byte offset 6 is not UTF-8); save it as UTF-8 text"
    )
    f.write_bytes(b"\xef\xbb\xbfx,y\n\xe9,2\n")  # the offset counts the byte-order mark
    assert "byte 0xe9 at byte offset 7" in _error(read_points_file, f)
    f.write_bytes("x,y\n1,2\n".encode("utf-16"))
    assert _error(read_points_file, f) == f"{f}: is UTF-16 text, not a UTF-8 CSV file; save it as UTF-8 (CSV UTF-8)"


def test_a_folder(tmp_path):
    d = tmp_path / "data.csv"
    d.mkdir()
    assert _error(load_dataset, str(d)) == f"{d} is a folder, not a data file"


def test_missing_file(tmp_path):
    assert _error(load_dataset, str(tmp_path / "nope.npz")) == f"data file not found: {tmp_path / 'nope.npz'}"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode")
@pytest.mark.parametrize("name", ["p.csv", "p.npy"])
def test_unreadable_file(tmp_path, name):
    f = tmp_path / name
    np.save(f, np.zeros((3, 2))) if name.endswith(".npy") else _write(f, "1,2\n3,4\n")
    f.chmod(0)
    try:
        assert _error(read_points_file, f) == f"{f}: cannot read the file (Permission denied)"
    finally:
        f.chmod(0o600)


# ---------------------------------------------------------------------------------------------
# large values


def test_values_too_large_to_standardise(tmp_path):
    f = _write(tmp_path / "p.csv", "x,y\n1e307,1\n-1e307,2\n5e306,3\n")
    tail = "too large to standardise; rescale the data"
    assert _error(load_dataset, str(f)) == f"{f}: row 2, column 'x' holds 1e+307, {tail}"
    f = _write(tmp_path / "q.csv", "1,1e200\n2,-1e200\n3,0\n")  # the mean is finite, the variance overflows
    assert _error(load_dataset, str(f)) == f"{f}: row 1, column '1' holds 1e+200, {tail}"
    np.save(tmp_path / "p.npy", np.array([[0.0, 1e308], [1.0, -1e308]]))
    assert _error(load_dataset, str(tmp_path / "p.npy")) == f"{tmp_path / 'p.npy'}: column 1 holds 1e+308, {tail}"


def test_moderate_large_values_still_read(tmp_path):
    f = _write(tmp_path / "p.csv", "x,y\n1e100,1\n-1e100,3\n")
    ds = load_dataset(str(f))
    np.testing.assert_allclose(ds.points, [[1, -1], [-1, 1]])
    np.testing.assert_allclose(ds.scale, [1e100, 1.0])
    np.testing.assert_allclose(ds.to_data_units(ds.points), [[1e100, 1], [-1e100, 3]])
    raw = load_dataset(str(_write(tmp_path / "q.csv", "1e17,1\n-1e17,3\n")), standardize=False)
    np.testing.assert_allclose(raw.points, [[1e17, 1], [-1e17, 3]], rtol=1e-7)


def test_unstandardised_values_must_fit_float32_training(tmp_path):
    f = _write(tmp_path / "p.csv", "x,y\n1,2\n\n3,-2e18\n")
    assert _error(load_dataset, str(f), standardize=False) == (
        f"{f}: row 4, column 'y' holds -2e+18, too large to train on without standardisation "
        "(|value| must stay below 1e+18 in float32); set data.standardize=true or rescale the data"
    )
    assert len(load_dataset(str(f))) == 2  # standardised, the same file is fine
    np.save(tmp_path / "p.npy", np.array([[0.0, 1.0], [1e20, 0.0]]))
    assert "row 1, column 0 holds 1e+20" in _error(load_dataset, str(tmp_path / "p.npy"), standardize=False)


# ---------------------------------------------------------------------------------------------
# the command-line options


def test_jax_fit_parser_options_reach_the_reader(tmp_path):
    """``--data.header`` and ``--data.drop_missing`` parse from the command line and YAML (the torch
    DSMDataModule has the same signature, so LightningCLI parses them alike)."""
    pytest.importorskip("jax")
    from jax_dsm.cli import fit_parser

    f = _write(tmp_path / "p.csv", "10,20\n1,2\n3,NA\n")
    parser = fit_parser()
    for arg, want in [("true", True), ("false", False), ("auto", "auto"), ("maybe", "maybe")]:
        assert parser.parse_args([f"--data.header={arg}"]).data.header == want
    cfg = parser.parse_args([f"--data.dataset={f}", "--data.header=true", "--data.drop_missing=true"])
    pts, names = read_points_file(cfg.data.dataset, header=cfg.data.header, drop_missing=cfg.data.drop_missing)
    assert names == ("10", "20")
    np.testing.assert_array_equal(pts, [[1, 2]])
    y = _write(tmp_path / "c.yaml", "data:\n  header: false\n  drop_missing: true\n")
    cfg = parser.parse_args(["--config", str(y)])
    assert cfg.data.header is False and cfg.data.drop_missing is True
    assert "data.header must be auto, true or false, got 'maybe'" in _error(
        read_points_file, f, header=parser.parse_args(["--data.header=maybe"]).data.header)


def test_data_module_twins_share_the_new_options():
    """Both DSMDataModule signatures list header and drop_missing right after standardize, alike."""
    import ast

    root = Path(__file__).resolve().parents[1]

    def params(path: Path) -> list[str]:
        tree = ast.parse(path.read_text())
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DSMDataModule")
        init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
        defaults = dict(zip([a.arg for a in init.args.args][-len(init.args.defaults):], init.args.defaults))
        return [f"{a.arg}: {ast.unparse(a.annotation)} = {ast.unparse(defaults[a.arg])}" for a in init.args.args[1:]]

    torch_p, jax_p = params(root / "torch_dsm" / "data.py"), params(root / "jax_dsm" / "data.py")
    i = torch_p.index("standardize: Optional[bool] = None")
    want = ["header: Union[bool, str] = 'auto'", "drop_missing: bool = False"]
    assert torch_p[i + 1: i + 3] == want and jax_p[jax_p.index("standardize: Optional[bool] = None") + 1:][:2] == want
