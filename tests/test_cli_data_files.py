"""The file-reading policy through both command lines: the same file gets the same answer.

Every bad file stops ``fit`` with exit status 2 and one line naming the file and the line, column
and value at fault, before anything is written; a file the policy accepts (a byte-order mark, a
first row of numbers, missing values with ``--data.drop_missing=true``) trains on exactly the
points it holds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import fails_in_one_line, run_torch_cli_inprocess, tiny_fit_args

FRAMEWORKS = ["torch", "jax"]


def _write(path, text: str | bytes):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


LINES = [f"{i * 0.37:.2f},{(i % 7) * 1.3:.2f}\n" for i in range(40)]  # 40 points
ROWS = "".join(LINES)


def rows(a: int, b: int | None = None) -> str:
    return "".join(LINES[a:b])


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name,content,expected", [
    ("missing.csv", "x,y\n" + rows(0, 30) + "1.0,NA\n" + rows(30),
     "row 32, column 'y' holds 'NA', a missing value"),
    ("text.csv", "x,y\n\n\n" + rows(0, 5) + "1.0,abc\n" + rows(5),
     "row 9, column 'y' holds 'abc', which is not a number"),  # blank lines counted
    ("inf.csv", ROWS + "inf,1\n", "row 41, column '0' holds 'inf'; every value must be finite"),
    ("fields.csv", "x,y\n" + rows(0, 10) + "1,2,3\n" + rows(10), "line 12 has 3 fields, expected 2"),
    ("huge.csv", "x,y\n" + ROWS + "1e307,1\n", "row 42, column 'x' holds 1e+307, too large to standardise"),
    ("comma.csv", "x,y\n" + rows(0, 3) + ",\n" + rows(3), "row 5, column 'x' holds '', a missing value"),
    ("binary.csv", b"x,y\n1,2\n\x00\x01\x02", "not a text CSV file (binary content: a NUL byte at byte offset 8)"),
    ("points.npz", b"PK\x03\x04", "unsupported file type '.npz'"),
])
def test_bad_data_files_are_one_line(framework, name, content, expected, tmp_path, capsys):
    path = _write(tmp_path / name, content)
    run = tmp_path / "run"
    line = fails_in_one_line(framework, tiny_fit_args(run, f"--data.dataset={path}", epochs=1), capsys)
    assert str(path) in line and expected in line, line
    assert not run.exists()  # nothing written


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_folder_and_bad_header_option_are_one_line(framework, tmp_path, capsys):
    run = tmp_path / "run"
    line = fails_in_one_line(framework, tiny_fit_args(run, f"--data.dataset={tmp_path}", epochs=1), capsys)
    assert line.endswith(f"{tmp_path} is a folder, not a data file"), line
    path = _write(tmp_path / "p.csv", ROWS)
    line = fails_in_one_line(framework, tiny_fit_args(run, f"--data.dataset={path}", "--data.header=maybe", epochs=1),
                             capsys)
    assert line.endswith("data.header must be auto, true or false, got 'maybe'"), line
    assert not run.exists()


def _fit(framework, args):
    if framework == "torch":
        run_torch_cli_inprocess(args)
    else:
        from jax_dsm.cli import main

        main(args)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_accepted_files_train_on_every_point_they_hold(framework, tmp_path, capsys):
    """A byte-order mark before a first row of numbers (no header): all 40 points are data. Missing
    values dropped on request: 40 points left of 43 rows, and the count is reported."""
    bom = _write(tmp_path / "bom.csv", b"\xef\xbb\xbf" + ROWS.encode())
    run = tmp_path / "bom-run"
    _fit(framework, tiny_fit_args(run, f"--data.dataset={bom}", epochs=1))
    m = json.loads((run / "metrics.json").read_text())
    assert m["dropped_rows"] == 0
    from dsm_common.weights import load_canonical

    _, stored = load_canonical(run / "weights.safetensors")
    assert stored["data_transform"]["n_points"] == 40
    assert stored["data_transform"]["axis_names"] == ["0", "1"]
    raw = np.loadtxt(ROWS.splitlines(), delimiter=",")
    np.testing.assert_allclose(stored["data_transform"]["shift"], raw.mean(0), rtol=1e-12)

    gaps = _write(tmp_path / "gaps.csv", "x,y\n" + rows(0, 20) + ",1\n2,NA\nN/A,\n" + rows(20))
    run = tmp_path / "gaps-run"
    capsys.readouterr()
    _fit(framework, tiny_fit_args(run, f"--data.dataset={gaps}", "--data.drop_missing=true", epochs=1))
    err = capsys.readouterr().err
    assert f"{gaps}: dropped 3 of 43 rows with a missing value in column(s) 'x', 'y'" in err
    m = json.loads((run / "metrics.json").read_text())
    assert m["dropped_rows"] == 3
    _, stored = load_canonical(run / "weights.safetensors")
    assert stored["data_transform"]["n_points"] == 40 and stored["data_transform"]["axis_names"] == ["x", "y"]
    np.testing.assert_allclose(stored["data_transform"]["shift"], raw.mean(0), rtol=1e-12)
