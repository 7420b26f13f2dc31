"""A run directory is always either complete or marked unfinished and resumable, on both sides.

Each run is killed (``os._exit``, what SIGKILL leaves: no handler, no clean-up) in one phase: in
training (after a checkpoint), while writing the weights, while sampling, and while writing the
metrics (the atomic writers' temporary file is written, the rename has not happened). The folder
must then hold no half-written file, say in ``status.json`` that it is not complete and in which
phase it stopped, refuse a fresh start over it, and finish with ``--ckpt_path last``. Ctrl-C
(KeyboardInterrupt) gives one line saying how to resume and exit status 130.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_subprocess, tiny_fit_args

# Runs main() of a command line with one fault injected; argv: PHASE FRAMEWORK FAULT ARGS...
FAULTY_RUN = r"""
import os, sys
phase, framework, fault, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def fault_now(*a, **k):
    if fault == "kill":
        os._exit(137)
    raise KeyboardInterrupt

if phase == "training":
    if framework == "torch":
        import torch_dsm.module as m
        start = m.DSMModule.on_train_epoch_start
        def on_train_epoch_start(self):
            if self.current_epoch == 11:  # after the epoch-10 checkpoint
                fault_now()
            start(self)
        m.DSMModule.on_train_epoch_start = on_train_epoch_start
    else:
        import jax_dsm.trainer as t
        save, calls = t.Trainer._save, []
        def _save(self, *a):
            save(self, *a)
            calls.append(1)
            if len(calls) == 2:  # after the second checkpoint
                fault_now()
        t.Trainer._save = _save
elif phase in ("saving weights", "writing outputs"):
    target = "weights.safetensors" if phase == "saving weights" else "metrics.json"
    real_replace = os.replace
    def replace(src, dst):
        if str(dst).endswith(target):  # its temporary file is written, not yet renamed
            fault_now()
        real_replace(src, dst)
    os.replace = replace
elif phase == "sampling":
    import dsm_common.finish as fin
    fin.run_samplers = fault_now
elif phase == "start-up":  # before the run folder is touched
    import dsm_common.commands as commands
    commands.check_run_dir = fault_now
    import torch_dsm.cli, jax_dsm.cli
    torch_dsm.cli.check_run_dir = jax_dsm.cli.check_run_dir = fault_now
if framework == "torch":
    import torch
    torch.set_num_threads(1)
    from torch_dsm.cli import main
else:
    from jax_dsm.cli import main
sys.argv[0] = f"dsm-{framework}"
main(args)
"""

EPOCHS = 12


def _faulty(phase: str, framework: str, fault: str, args: list[str]):
    return run_subprocess([sys.executable, "-c", FAULTY_RUN, phase, framework, fault, *args])


def _cli(framework: str, args: list[str]):
    return run_subprocess([sys.executable, "-m", f"{framework}_dsm.cli", *args])


def _status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def _check_whole_files(run: Path) -> None:
    """Every output present is whole: the weights load, metrics.json parses, samples.npy reads,
    and no temporary file of the atomic writers is left under a final name."""
    from dsm_common.weights import load_canonical

    if (run / "weights.safetensors").exists():
        load_canonical(run / "weights.safetensors")
    if (run / "metrics.json").exists():
        json.loads((run / "metrics.json").read_text())
    if (run / "samples.npy").exists():
        np.load(run / "samples.npy")


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("phase", ["training", "saving weights", "sampling", "writing outputs"])
def test_a_killed_run_is_marked_unfinished_and_resumes(framework, phase, tmp_path):
    run = tmp_path / "run"
    args = tiny_fit_args(run, epochs=EPOCHS)
    proc = _faulty(phase, framework, "kill", args)
    assert proc.returncode == 137, proc.stderr[-3000:]

    status = _status(run)
    assert status["status"] == "running" and status["phase"] == phase, status
    assert status["framework"] == framework and status["command"] == "fit"
    _check_whole_files(run)
    assert not (run / "metrics.json").exists()  # metrics are the last file: none of a half-finished run
    assert (run / "weights.safetensors").exists() == (phase in ("sampling", "writing outputs"))

    fresh = _cli(framework, args)  # a fresh start over it is refused, the folder left as it was
    assert fresh.returncode == 2
    assert f"holds an unfinished run (running, {phase})" in fresh.stderr.strip().splitlines()[-1]
    assert _status(run) == status

    resumed = _cli(framework, [*args, "--ckpt_path", "last"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _status(run)["status"] == "complete"
    m = json.loads((run / "metrics.json").read_text())
    assert m["epochs"] == EPOCHS and m["n_samples"] > 0
    _check_whole_files(run)


def test_a_killed_overwrite_leaves_nothing_of_the_old_run_beside_the_new(tmp_path):
    """Re-running with --overwrite=true over a finished run, killed while sampling: the old run's
    metrics and figures are gone (not left beside the new weights) and the folder says unfinished."""
    run = tmp_path / "run"
    args = tiny_fit_args(run, epochs=2)
    assert _cli("jax", args).returncode == 0
    old_weights = (run / "weights.safetensors").read_bytes()
    proc = _faulty("sampling", "jax", "kill", [*args, "--overwrite=true", "--seed_everything=5"])
    assert proc.returncode == 137, proc.stderr[-3000:]
    assert _status(run)["status"] == "running"
    assert not (run / "metrics.json").exists() and not (run / "samples.png").exists()
    assert (run / "weights.safetensors").read_bytes() != old_weights  # the new run's


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("phase", ["training", "sampling"])
def test_ctrl_c_is_one_line_saying_how_to_resume(framework, phase, tmp_path):
    run = tmp_path / "run"
    proc = _faulty(phase, framework, "interrupt", tiny_fit_args(run, epochs=EPOCHS))
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"dsm-{framework}: interrupted; the run folder is marked unfinished (status.json); "
                    "the same command with --ckpt_path last resumes it from its last checkpoint")
    assert _status(run)["status"] == "interrupted" and _status(run)["phase"] == phase


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_a_finished_run_is_marked_complete(framework, tmp_path):
    run = tmp_path / "run"
    proc = _cli(framework, tiny_fit_args(run, epochs=1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = _status(run)
    assert status["status"] == "complete" and status["phase"] is None
    assert status["framework"] == framework and status["command"] == "fit"
    leftovers = [p.name for p in run.rglob(".*.tmp*")]
    assert leftovers == []  # the atomic writers leave no temporary file behind


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_ctrl_c_before_the_run_starts_says_so(framework, tmp_path):
    run = tmp_path / "run"
    proc = _faulty("start-up", framework, "interrupt", tiny_fit_args(run, epochs=1))
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"dsm-{framework}: interrupted before the run started"
    assert not run.exists()


def test_a_run_stopped_before_its_first_checkpoint_starts_afresh(tmp_path, capsys):
    """Nothing of it is worth keeping (no checkpoint, no weights): the same command starts again."""
    from dsm_common.files import write_status
    from jax_dsm.cli import main

    run = tmp_path / "run"
    write_status(run, "interrupted", "training", framework="jax", command="fit")
    (run / "config.yaml").write_text("old: settings\n")
    main(tiny_fit_args(run, epochs=1))
    assert _status(run)["status"] == "complete" and "old: settings" not in (run / "config.yaml").read_text()


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_overwrite_and_resume_together_are_refused(framework, tmp_path, capsys):
    from conftest import fails_in_one_line

    run = tmp_path / "run"
    line = fails_in_one_line(framework, [*tiny_fit_args(run, epochs=1), "--overwrite=true", "--ckpt_path", "last"], capsys)
    assert line.endswith("--overwrite=true replaces a run and --ckpt_path resumes one: pass one of them, not both")
    assert not run.exists()


def test_output_files_have_the_users_usual_permissions(tmp_path):
    """Atomic writes go through a private temporary file; the files in place are as open() makes them."""
    import os

    from dsm_common.files import atomic_path, write_text_atomic

    mask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
        with atomic_path(tmp_path / "b.npy") as tmp:
            np.save(tmp, np.zeros(2))
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "b.npy").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(mask)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_ctrl_c_while_the_framework_is_imported_is_one_line(framework, monkeypatch, capsys):
    """The console script imports its command line inside its own Ctrl-C handling: a
    KeyboardInterrupt during that import (torch or JAX loading) is answered like a later one."""
    import importlib
    import importlib.abc

    class InterruptingImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == f"{framework}_dsm.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, f"{framework}_dsm.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptingImport(), *sys.meta_path])
    console = importlib.import_module(f"{framework}_dsm.console")
    with pytest.raises(SystemExit) as exit_:
        console.main()
    assert exit_.value.code == 130
    assert capsys.readouterr().err == f"dsm-{framework}: interrupted before the run started\n"
