"""Bad input through the real command line: one line ``dsm-torch: error: …``, exit status 2, no traceback.

Each case is a separate process running ``torch_dsm.cli.main()`` on its own ``sys.argv``, as the
``dsm-torch`` script does. Starting python and importing torch + Lightning costs ~6 s of CPU, so a
driver process imports ``torch_dsm.cli`` once and forks one child per case (a real process with
its own exit status and stderr; an uncaught exception prints a traceback and exits 1, as the
interpreter does). Two cases also run as plain ``python -m torch_dsm.cli`` subprocesses, and must
give the same status and message as under the driver.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SEED_CONFIG, SUBPROCESS_ENV, run_subprocess

DRIVER = r"""
import json, os, sys, traceback
import torch_dsm.cli as cli

cases, out_dir = json.load(open(sys.argv[1])), sys.argv[2]
codes = {}
for name, args in cases.items():
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.path.join(out_dir, name + ".out"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(os.open(os.path.join(out_dir, name + ".err"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        sys.argv = ["dsm-torch", *args]
        try:
            cli.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    codes[name] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
json.dump(codes, open(os.path.join(out_dir, "codes.json"), "w"))
"""


CASE_NAMES = [
    "missing_file", "missing_column", "text_cell", "nan_cell", "inf_value", "fewer_than_batch", "not_2d",
    "sigma_zero", "sigma_negative", "lr_negative", "step_size_negative", "batch_size_zero", "n_steps_zero",
    "sample_missing_weights", "resume_without_checkpoint",
]


def _fit(root: Path, name: str, *extra: str) -> list[str]:
    # A tiny run in case a check is missing and training starts: the test then fails, quickly.
    return ["fit", "--config", str(SEED_CONFIG), f"--trainer.default_root_dir={root / name}", "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false", "--model.sampler.langevin.n_steps=5", "--model.sampler.trajectory_steps=0",
            *extra]


def _cases(d: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name → (arguments, fragments the error line must contain)."""
    (d / "three_cols.csv").write_text("x,y,z\n1,2,3\n4,5,6\n")
    (d / "text.csv").write_text("x,y\n" + "1,2\n" * 10 + "5,abc\n")  # line 12
    (d / "nan.csv").write_text("x,y\n1,2\nnan,4\n" + "1,2\n" * 10)  # line 3
    np.save(d / "inf.npy", np.array([[0.0, 1.0]] * 2 + [[2.0, np.inf]] + [[0.0, 1.0]] * 9))  # row 2, column 1
    (d / "five.csv").write_text("0,0\n1,0\n0,1\n1,1\n2,2\n")
    np.save(d / "three_d.npy", np.zeros((10, 3)))
    return {
        "missing_file": (_fit(d, "a", f"--data.dataset={d / 'nope.csv'}"), ["data file not found", str(d / "nope.csv")]),
        "missing_column": (_fit(d, "b", f"--data.dataset={d / 'three_cols.csv'}", "--data.columns=[x,w]"),
                           [str(d / "three_cols.csv"), "no column named 'w'"]),
        "text_cell": (_fit(d, "c", f"--data.dataset={d / 'text.csv'}"),
                      [str(d / "text.csv"), "row 12", "column 'y'", "'abc'", "not a number"]),
        "nan_cell": (_fit(d, "d", f"--data.dataset={d / 'nan.csv'}"), [str(d / "nan.csv"), "row 3", "column 'x'", "'nan'"]),
        "inf_value": (_fit(d, "e", f"--data.dataset={d / 'inf.npy'}"), [str(d / "inf.npy"), "row 2", "column 1", "holds inf"]),
        "fewer_than_batch": (_fit(d, "f", f"--data.dataset={d / 'five.csv'}"),
                             [str(d / "five.csv"), "5 points", "data.batch_size=8"]),
        "not_2d": (_fit(d, "g", f"--data.dataset={d / 'three_d.npy'}"), [str(d / "three_d.npy"), "(N, 2)", "(10, 3)"]),
        "sigma_zero": (_fit(d, "h", "--model.dsm.sigma=0"), ["model.dsm.sigma must be a positive number, got 0.0"]),
        "sigma_negative": (_fit(d, "i", "--model.dsm.sigma=-3"), ["model.dsm.sigma must be a positive number, got -3.0"]),
        "lr_negative": (_fit(d, "j", "--model.lr=-0.001"), ["model.lr must be a positive number, got -0.001"]),
        "step_size_negative": (_fit(d, "k", "--model.sampler.langevin.step_size=-1"),
                               ["model.sampler.langevin.step_size must be a positive number, got -1"]),
        "batch_size_zero": (_fit(d, "l", "--data.batch_size=0"), ["data.batch_size must be a positive integer, got 0"]),
        "n_steps_zero": (_fit(d, "m", "--model.sampler.langevin.n_steps=0"),
                         ["model.sampler.langevin.n_steps must be a positive integer, got 0"]),
        "sample_missing_weights": (["sample", "--weights", str(d / "none.safetensors")],
                                   ["weights file not found", str(d / "none.safetensors")]),
        "resume_without_checkpoint": (_fit(d, "n", "--ckpt_path=last"),
                                      ["checkpoint not found", str(d / "n" / "checkpoints" / "last.ckpt")]),
    }


def _check(name: str, code: int, stderr: str, fragments: list[str]):
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == 2, f"{name}: exit status {code}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, f"{name}:\n{stderr[-3000:]}"
    last = lines[-1]
    assert last.startswith("dsm-torch: error: "), f"{name}: {last!r}"
    assert sum(ln.startswith("dsm-torch: error") for ln in lines) == 1  # one line, once
    for frag in fragments:
        assert frag in last, f"{name}: {frag!r} not in {last!r}"


PLAIN = ["missing_file", "sigma_zero"]


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    cases = _cases(d)
    (d / "cases.json").write_text(json.dumps({k: v[0] for k, v in cases.items()}))
    # The plain `python -m torch_dsm.cli` runs go side by side with the driver (2 cores).
    plain = {k: subprocess.Popen([sys.executable, "-m", "torch_dsm.cli", *cases[k][0]], cwd=REPO, env=SUBPROCESS_ENV,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in PLAIN}
    proc = run_subprocess([sys.executable, "-c", DRIVER, str(d / "cases.json"), str(d)], timeout=600)
    plain_out = {k: (p.wait(timeout=600), p.communicate()[1]) for k, p in plain.items()}
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads((d / "codes.json").read_text())
    assert sorted(codes) == sorted(CASE_NAMES)
    return {k: (codes[k], (d / f"{k}.err").read_text(), cases[k][1]) for k in cases}, plain_out


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_one_line_error(error_runs, name):
    results, _ = error_runs
    code, stderr, fragments = results[name]
    _check(name, code, stderr, fragments)


@pytest.mark.parametrize("name", PLAIN)
def test_plain_subprocess_agrees_with_driver(error_runs, name):
    """``python -m torch_dsm.cli`` as a user runs it: same status and the same error line."""
    results, plain_out = error_runs
    code, stderr = plain_out[name]
    _check(name, code, stderr, results[name][2])
    assert stderr.strip().splitlines()[-1] == results[name][1].strip().splitlines()[-1]
