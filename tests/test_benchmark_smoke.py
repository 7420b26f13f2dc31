"""Smoke test of ``scripts/benchmark.py`` at its smallest size (``--quick``).

It checks that the script runs and that its Markdown tables are well formed: header, separator,
one row per expected method, numbers where numbers belong, positive ratios. It never asserts a
time (docs/speed.md). The main table runs in CI; memory and scaling (two more processes, more
compilation) are marked slow.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark.py"

MAIN_HEADER = ["task", "method", "compile", "total s (median)", "compile s", "µs/step", "× notebook", "% of ceiling"]
TRAIN_METHODS = {
    "notebook's way (jit step per batch, torch DataLoader)",
    "jax_dsm Trainer.fit",
    "jax_dsm compiled loop only",
    "Lightning, dsm-torch fit defaults",
    "Lightning, one mini-batch per step",
    "plain torch loop",
}
OPTIONAL_TRAIN_METHODS = {"plain torch loop, 1 thread"}  # only when torch runs on more than one thread
SAMPLE_METHODS = {
    "notebook's way (jit step per Langevin step)",
    "jax_dsm langevin, cold",
    "jax_dsm langevin, warm",
    "torch_dsm langevin (eager)",
}
MEMORY_HEADER = ["framework", "chains", "steps", "keep_every", "hidden", "returned MB", "all states MB",
                 "RSS before MB", "peak growth MB", "growth / all states"]
SCALING_HEADER = ["curve", "size", "steps timed", "jax_dsm µs/step", "torch µs/step", "torch / jax",
                  "jax % of ceiling", "torch % of ceiling"]


def run_benchmark(*args: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def tables(text: str) -> dict[str, list[list[str]]]:
    """Markdown tables of ``text``, keyed by their first header cell: rows of cells, header first."""
    found, block = {}, []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            for row in block:
                assert row.endswith("|"), row
            cells = [[c.strip() for c in row.strip("|").split("|")] for row in block]
            assert cells[0][0] not in found, f"two tables start with {cells[0][0]!r}"
            found[cells[0][0]] = cells
            block = []
    return found


def check_shape(table: list[list[str]], header: list[str]) -> list[dict[str, str]]:
    """Header, separator, equal row lengths; the rows as dicts."""
    assert table[0] == header
    assert len(table[1]) == len(header) and all(c == "---" for c in table[1])
    assert len(table) > 2, "no rows"
    for row in table[2:]:
        assert len(row) == len(header), row
    return [dict(zip(header, row)) for row in table[2:]]


def number(cell: str) -> float:
    value = float(cell)
    assert math.isfinite(value), cell
    return value


def test_quick_main_table(tmp_path):
    out_file = tmp_path / "bench.md"
    stdout = run_benchmark("--only", "train", "sample", "--out", str(out_file))
    found = tables(stdout)
    assert set(found) == {"task"}, f"unexpected tables: {sorted(found)}"
    rows = check_shape(found["task"], MAIN_HEADER)

    train = {r["method"] for r in rows if r["task"] == "train"}
    sample = {r["method"] for r in rows if r["task"] == "sample"}
    assert TRAIN_METHODS <= train <= TRAIN_METHODS | OPTIONAL_TRAIN_METHODS
    assert sample == SAMPLE_METHODS
    assert len(rows) == len(train) + len(sample), "a method appears twice, or an unknown task"

    for r in rows:
        assert r["compile"] in {"included", "excluded", "eager"}, r
        assert number(r["total s (median)"]) > 0, r
        assert number(r["µs/step"]) > 0, r
        assert number(r["× notebook"]) > 0, r
        assert number(r["% of ceiling"]) > 0, r
        if r["compile"] == "included":
            assert number(r["compile s"]) >= 0, r
        else:
            assert r["compile s"] == "—", r
        if r["method"].startswith("notebook"):
            assert number(r["× notebook"]) == 1.0, r
            assert r["compile"] == "included", r

    assert "GFLOP/s" in stdout  # the measured ceiling is printed
    assert out_file.read_text().strip() == stdout.strip()  # --out writes the same report


@pytest.mark.slow
def test_quick_memory_and_scaling(tmp_path):
    png = tmp_path / "scaling.png"
    stdout = run_benchmark("--only", "memory", "scaling", "--scaling-png", str(png))
    found = tables(stdout)
    assert set(found) == {"framework", "curve"}, f"unexpected tables: {sorted(found)}"

    memory = check_shape(found["framework"], MEMORY_HEADER)
    assert {r["framework"] for r in memory} == {"jax", "torch"}
    for r in memory:
        for key in MEMORY_HEADER[1:]:
            assert number(r[key]) >= 0, r
        assert number(r["all states MB"]) > 0, r
        if r["keep_every"] == "0":  # final states only: chains × 2 float32
            assert number(r["returned MB"]) == pytest.approx(number(r["chains"]) * 8 / 2**20, abs=0.05)

    scaling = check_shape(found["curve"], SCALING_HEADER)
    assert {r["curve"].split(":")[0] for r in scaling} == {"sample", "train"}
    for r in scaling:
        for key in SCALING_HEADER[1:]:
            assert number(r[key]) > 0, r

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_thread_table():
    """The thread-count table: each work at 1 thread and at torch's default, quiet and busy, and
    what dsm-torch picks for it (one thread below 1000 rows unless OMP_NUM_THREADS is set)."""
    import os

    stdout = run_benchmark("--only", "threads")
    found = tables(stdout)
    assert set(found) == {"machine"}, f"unexpected tables: {sorted(found)}"
    header = found["machine"][0]
    assert header[:3] == ["machine", "work", "1 thread s"] and header[-1] == "dsm-torch picks"
    default = header[3].split()[0]
    rows = check_shape(found["machine"], header)
    assert [r["machine"] for r in rows] == ["quiet"] * 3 + ["busy"] * 3
    assert [r["work"] for r in rows[:3]] == ["train, batch 8 (Lightning, dsm-torch defaults)", "sample, 100 chains",
                                            "sample, 2000 chains"]
    for r in rows:
        assert number(r["1 thread s"]) > 0 and number(r[header[3]]) > 0, r
        one, many, ratio = number(r["1 thread s"]), number(r[header[3]]), number(r[header[4]])
        # the times are printed to 3 decimals, the ratio (of the unrounded times) to 2
        assert (many - 5e-4) / (one + 5e-4) - 5e-3 <= ratio <= (many + 5e-4) / max(one - 5e-4, 1e-9) + 5e-3, r
        small = not r["work"].endswith("2000 chains")
        expected = default if os.environ.get("OMP_NUM_THREADS") or not small else "1"
        assert r["dsm-torch picks"] == expected, r


DEVICES_HEADER = ["work", "method", "devices", "compile", "total s (median)", "× 1 device", "× notebook"]
JOB_HEADER = ["job", "total s (median)", "× notebook"]
NOTEBOOK_ROWS = {"notebook's way (jit step per batch, torch DataLoader)", "notebook's way (jit step per Langevin step)"}


@pytest.mark.slow
def test_quick_devices_and_jobs():
    """One device against two on both sides, and the whole jobs: every row present, 1-device
    rows at ratio 1, the notebook's rows and job at ratio 1 to the notebook, each row's ratio to
    the notebook's way of its task. Slow: a dozen fresh processes, DDP among them."""
    text = run_benchmark("--only", "train", "sample", "devices", "jobs")
    found = tables(text)
    assert set(found) == {"task", "work", "job"}, f"unexpected tables: {sorted(found)}"
    devices = check_shape(found["work"], DEVICES_HEADER)
    assert sorted((r["method"], r["devices"]) for r in devices) == sorted(
        [(m, "1") for m in NOTEBOOK_ROWS]
        + [(m, n) for m in ("jax_dsm Trainer.fit", "jax_dsm langevin, cold", "jax_dsm langevin, warm",
                            "Lightning, dsm-torch fit defaults (DDP on 2)", "torch_dsm langevin (2 gloo ranks on 2)")
           for n in ("1", "2")])
    notebook = {r["work"]: number(r["total s (median)"]) for r in devices if r["method"] in NOTEBOOK_ROWS}
    for r in devices:
        t = number(r["total s (median)"])
        assert t > 0, r
        if r["method"] in NOTEBOOK_ROWS:
            assert r["× 1 device"] == "—" and number(r["× notebook"]) == 1.0, r
            continue
        assert number(r["× 1 device"]) > 0, r
        if r["devices"] == "1":
            assert number(r["× 1 device"]) == 1.0, r
        # both printed to 3 decimals, the ratio (of the unrounded times) to 2
        nb = notebook[r["work"]]
        assert (nb - 5e-4) / (t + 5e-4) - 5e-3 <= number(r["× notebook"]) <= (nb + 5e-4) / max(t - 5e-4, 1e-9) + 5e-3, r
    jobs = check_shape(found["job"], JOB_HEADER)
    assert [r["job"].split(":")[0] for r in jobs] == ["train"] * 3 + ["sample"] * 3 + ["job"] * 5
    notebook = {r["job"].split(":")[0]: number(r["total s (median)"]) for r in jobs if "notebook" in r["job"]}
    for r in jobs:
        t = number(r["total s (median)"])
        assert t > 0, r
        if "notebook" in r["job"]:
            assert number(r["× notebook"]) == 1.0, r
        nb = notebook[r["job"].split(":")[0]]  # both printed to 2 decimals, the ratio to 2
        assert (nb - 5e-3) / (t + 5e-3) - 5e-3 <= number(r["× notebook"]) <= (nb + 5e-3) / max(t - 5e-3, 1e-9) + 5e-3, r
    # The floor line adds this run's imports row to the main table's compiled loop and warm sampler.
    main = {r["method"]: number(r["total s (median)"]) for r in check_shape(found["task"], MAIN_HEADER)}
    imports = next(number(r["total s (median)"]) for r in jobs if "only imports" in r["job"])
    m = re.search(r"The floor of a dsm-jax job in this run: imports and JAX's start ([0-9.]+) s \+ the compiled "
                  r"training loop ([0-9.]+) s \+ the warm sampler ([0-9.]+) s = ([0-9.]+) s, .* at most ([0-9.]+)× "
                  r"the notebook's job \(([0-9.]+) s\)", text)
    assert m, text
    parts = [float(v) for v in m.groups()]
    assert parts[0] == imports and parts[5] == notebook["job"]
    # the main table prints 3 decimals and the floor line 2, both rounding the same unrounded time
    assert abs(parts[1] - main["jax_dsm compiled loop only"]) <= 0.0051
    assert abs(parts[2] - main["jax_dsm langevin, warm"]) <= 0.0051
    assert abs(parts[3] - sum(parts[:3])) <= 0.015 and abs(parts[4] - parts[5] / parts[3]) <= 0.01 + 0.02 * parts[4]
    # The second floor: the same imports + the fresh-process Trainer.fit and sampler rows, warm cache.
    m = re.search(r"imports ([0-9.]+) s \+ Trainer.fit ([0-9.]+) s \+ the sampler ([0-9.]+) s \(the fresh-process "
                  r"rows, warm cache\) = ([0-9.]+) s, at most ([0-9.]+)×", text)
    assert m, text
    start = [float(v) for v in m.groups()]
    fresh = {r["job"]: number(r["total s (median)"]) for r in jobs}  # 2 decimals, as the floor line
    assert start[0] == imports
    assert start[1] == fresh["train: jax_dsm Trainer.fit, warm compilation cache"]
    assert start[2] == fresh["sample: jax_dsm langevin, warm compilation cache"]
    assert abs(start[3] - sum(start[:3])) <= 0.015 and abs(start[4] - parts[5] / start[3]) <= 0.01 + 0.02 * start[4]
