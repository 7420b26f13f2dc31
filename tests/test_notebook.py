"""The talk as a notebook (``notebooks/talk.ipynb``): committed without outputs, and executed here
from start to end (nbclient, the Python kernel of this environment) so that it cannot rot.

The executed notebook's printed numbers are checked against values worked out independently of
it: the weight file read across frameworks gives the same score, annealed Langevin on the exact
scores leaves no chain in the gap, and plain Langevin leaves many there (the talk's point).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "talk.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> str:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    work = tmp_path_factory.mktemp("notebook")
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", out
            text.append(out.get("text", ""))
    assert sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})) >= 5
    return "".join(text)


def _numbers(text: str, pattern: str) -> tuple[float, ...]:
    match = re.search(pattern, text)
    assert match, pattern
    return tuple(float(v) for v in match.groups())


def test_notebook_runs_and_tells_the_story(executed):
    (diff,) = _numbers(executed, r"torch weights read by JAX: largest score difference ([0-9.e+-]+)")
    assert diff < 1e-5  # the shared weight file: float32 rounding only
    w1, w2, gap = _numbers(executed, r"exact scores, annealed Langevin .*?\(([0-9.]+), ([0-9.]+)\); gap mass ([0-9.]+)")
    assert gap == 0 and abs(w1 - 1 / 3) < 0.05 and abs(w1 + w2 - 1) < 1e-3
    (target_gap,) = _numbers(executed, r"target Υ_σ: .*gap mass ([0-9.]+)")
    # P(|x₁| < 5) under Υ_σ: Φ(−5/√10) − Φ(−15/√10) = 0.0569 for either component (x₁ ~ N(±10, 1 + σ²))
    assert target_gap == pytest.approx(0.0569, abs=0.003)
    (plain_gap,) = _numbers(executed, r"learned score: mode weights .*gap mass ([0-9.]+)")
    assert plain_gap > 3 * target_gap  # plain Langevin leaves chains in the gap
    for fw in ("torch", "jax"):
        _, _, trained_gap = _numbers(executed, rf"{fw}, trained NCSN, annealed Langevin: mode weights \(([0-9.]+), ([0-9.]+)\); "
                                               r"gap mass ([0-9.]+)")
        assert trained_gap < 0.01
