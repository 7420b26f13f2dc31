"""The figures say what they show: read back from the matplotlib artists each one drew.

Each plot function is called on known arrays; the figure it would close is kept and inspected:
titles name the framework and method and each noise level, score fields share one colour scale
and show it, trajectories are coloured by step or by level with a colour bar, noised data get
their own axes, the loss shows its running mean, and sample panels have legends.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsm_common import plots
from dsm_common.mixtures import seed_mixture

LIMS = ((-20.0, 20.0), (-20.0, 20.0))
NAMES = ("x1", "x2")


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions draw, kept instead of closed."""
    kept = []
    monkeypatch.setattr(plots.plt, "close", lambda fig: kept.append(fig))
    yield kept
    for fig in kept:
        plots.plt.figure(fig.number)
        plots.plt.clf()
    plots.plt.close("all")


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_score_field_levels_share_one_colour_scale(figures, tmp_path):
    mix = seed_mixture()
    levels = [(f"σ = {s:g}", (lambda p, s=s: 0.9 * mix.convolve(s).score(p)), (lambda p, s=s: mix.convolve(s).score(p)))
              for s in (20.0, 2.0, 0.1)]
    plots.plot_score_field(levels, LIMS, NAMES, tmp_path / "f.png", suptitle="torch · ncsn · annealed Langevin")
    fig = figures[-1]
    panels = [ax for ax in fig.axes if ax.get_visible() and ax not in _colorbars(fig)]
    assert [ax.get_title() for ax in panels] == [f"{kind} score, σ = {s:g}" for s in (20, 2, 0.1)
                                                 for kind in ("learned", "exact")]
    quivers = [c for ax in panels for c in ax.collections]
    assert len(quivers) == 6
    assert len({(q.norm.vmin, q.norm.vmax) for q in quivers}) == 1  # one colour scale for every panel
    assert type(quivers[0].norm).__name__ == "LogNorm"
    (bar,) = _colorbars(fig)
    assert "score" in bar.get_ylabel()
    assert fig._suptitle.get_text() == "torch · ncsn · annealed Langevin"
    # arrows are directions: unit length wherever the field is non-zero
    u, v = quivers[0].U, quivers[0].V
    np.testing.assert_allclose(np.hypot(u, v), 1.0, rtol=1e-6)


def test_trajectory_is_coloured_by_level_with_a_colour_bar(figures, tmp_path):
    traj = np.array([[0.0, 0.0], [30.0, 0.0], [10.0, 1.0], [10.0, 0.5], [9.5, 0.2]])
    sig = np.array([20.0, 20.0, 2.0, 2.0, 0.1])
    plots.plot_trajectory(traj, np.zeros((0, 2)), "one annealed Langevin chain", LIMS, NAMES, tmp_path / "t.png",
                          sig, "noise level σ of the step", True, "jax · ncsn")
    fig = figures[-1]
    ax = fig.axes[0]
    assert ax.get_title() == "one annealed Langevin chain\n1 of 5 states outside these axes"
    assert ax.get_xlim() == LIMS[0] and ax.get_ylim() == LIMS[1]
    (bar,) = _colorbars(fig)
    assert bar.get_ylabel() == "noise level σ of the step"
    dots = ax.collections[-1]
    np.testing.assert_array_equal(dots.get_array(), sig)
    assert dots.norm.vmin == 0.1 and dots.norm.vmax == 20.0
    # the start (largest σ) is drawn black, the end red
    start, end = dots.to_rgba(np.array([20.0, 0.1]))
    np.testing.assert_allclose(start[:3], 0.0, atol=1e-6)
    np.testing.assert_allclose(end[:3], (1.0, 0.0, 0.0), atol=1e-6)


def test_trajectory_by_step(figures, tmp_path):
    traj = np.random.default_rng(0).standard_normal((11, 2))
    steps = np.arange(11) * 100
    plots.plot_trajectory(traj, np.zeros((0, 2)), "one Langevin chain", LIMS, NAMES, tmp_path / "t.png", steps,
                          "sampler step")
    fig = figures[-1]
    assert fig.axes[0].get_title() == "one Langevin chain"  # nothing outside the axes
    assert _colorbars(fig)[0].get_ylabel() == "sampler step"
    assert fig.axes[0].collections[-1].norm.vmax == 1000


def test_noised_data_get_their_own_axes(figures, tmp_path):
    data = np.random.default_rng(0).standard_normal((50, 2))
    noised = [("σ = 20", 20 * data), ("σ = 2", 2 * data)]
    plots.plot_data(data, noised, ((-3, 3), (-3, 3)), NAMES, tmp_path / "d.png", "torch · ncsn", ((-60, 60), (-60, 60)))
    fig = figures[-1]
    assert [ax.get_title() for ax in fig.axes] == ["data (50 points)", "noised data, σ = 20", "noised data, σ = 2"]
    assert fig.axes[0].get_xlim() == (-3, 3) and fig.axes[1].get_xlim() == (-60, 60)


def test_loss_shows_its_running_mean(figures, tmp_path):
    history = 1.0 + 0.3 * np.random.default_rng(0).standard_normal(500) ** 2
    plots.plot_loss(history, tmp_path / "l.png", {"sigma": [10.0, 1.0, 0.1], "loss": [1.0, 0.9, 0.8]}, "jax · ncsn")
    fig = figures[-1]
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["each epoch", "mean of 10 epochs"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata()[0], history[:10].mean())
    assert fig.axes[1].get_legend() is not None and fig.axes[1].get_xscale() == "log"


def test_sample_panels_have_legends(figures, tmp_path):
    s = np.random.default_rng(0).standard_normal((30, 2))
    plots.plot_sampler_comparison([("plain", s), ("annealed", s)], s, LIMS, NAMES, tmp_path / "c.png", "torch · ncsn")
    fig = figures[-1]
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["target", "30 samples"]
    assert fig._suptitle.get_text() == "torch · ncsn"


def test_make_figures_script_writes_the_readme_figures(tmp_path):
    """scripts/make_figures.py at its tiny size: both runs, the four figures the README shows."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import is_png

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "scripts" / "make_figures.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ncsn_comparison.png", "ncsn_score_field.png", "seed_samples.png", "seed_trajectory.png"]
    assert all(is_png(tmp_path / n) for n in names)
    readme = (root / "README.md").read_text()
    assert all(f"docs/figures/{n}" in readme for n in names)  # the README shows what the script makes
