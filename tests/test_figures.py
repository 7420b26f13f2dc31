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
    """scripts/make_figures.py at its tiny size: its three runs, the six figures the README shows."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import is_png

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "scripts" / "make_figures.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ncsn_comparison.png", "ncsn_score_field.png", "sde_pc_vs_ode.png", "sde_reverse_process.png",
                     "seed_samples.png", "seed_trajectory.png"]
    assert all(is_png(tmp_path / n) for n in names)
    readme = (root / "README.md").read_text()
    assert all(f"docs/figures/{n}" in readme for n in names)  # the README shows what the script makes


def _red_centroid(frame) -> tuple[float, float]:
    """Mean (column, row) of the chains' red pixels in one GIF frame."""
    rgb = np.asarray(frame.convert("RGB"), np.int32)
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 120) & (rgb[..., 2] < 120)
    rows, cols = np.nonzero(red)
    assert len(cols), "no chain drawn"
    return float(cols.mean()), float(rows.mean())


def test_animation_draws_each_frame_where_the_chains_are(figures, tmp_path):
    """A GIF read back with Pillow: one frame per state, small, the chains' dots moving left to
    right and up as the states do, the last label in the title, states off the axes counted."""
    from PIL import Image

    xs = np.linspace(-15.0, 15.0, 6)
    frames = np.stack([np.stack([[x, 0.5 * x], [x, 0.5 * x + 0.3]]) for x in xs])  # (6, 2 chains, 2)
    frames[-1, 1] = [100.0, 0.0]  # one chain leaves the axes in the last frame
    labels = [f"step {10 * i} of 50" for i in range(6)]
    path = plots.animate_chains(frames, labels, np.zeros((0, 2)), LIMS, NAMES, tmp_path / "a.gif",
                                "2 chains, Langevin", "jax · dsm · Langevin")
    im = Image.open(path)
    assert im.format == "GIF" and im.n_frames == 6 and im.size == (300, 330)
    centres = []
    for f in range(im.n_frames):
        im.seek(f)
        centres.append(_red_centroid(im))
    cols, rows = np.array(centres).T
    assert np.all(np.diff(cols[:-1]) > 20)  # moving right, about 40 px a frame at 300 px for 40 units
    assert np.all(np.diff(rows[:-1]) < -5)  # and up (image rows grow downwards)
    title = figures[-1].axes[0].get_title()
    assert title == "jax · dsm · Langevin\n2 chains, Langevin\nstep 50 of 50, 1 outside these axes"
    with pytest.raises(ValueError, match="5 labels for 6 frames"):
        plots.animate_chains(frames, labels[:5], np.zeros((0, 2)), LIMS, NAMES, tmp_path / "b.gif")


@pytest.mark.parametrize("name", ["langevin", "annealed_langevin"])
def test_run_samplers_animation_is_the_samplers_own_run(name):
    """Frames: the initial states, every k-th state of the sampler's full run from them (within
    each level for annealed Langevin), and the final states where they differ (after denoising);
    the final frame is what the sampler returns from the same states and seed."""
    import torch

    from dsm_common.config import SamplerConfig
    from dsm_common.generate import run_samplers
    from torch_dsm.cli import TorchBackend
    from torch_dsm.models import ScoreMLP

    torch.manual_seed(0)
    conditional = name == "annealed_langevin"
    sigmas = np.array([8.0, 4.0, 2.0, 1.0]) if conditional else np.array([1.0])
    backend = TorchBackend(ScoreMLP((16,), conditional=conditional), sigmas, progress=False, threads=1)
    cfg = SamplerConfig.from_dict({"name": name, "n_chains": 30, "trajectory_steps": 0, "animation_frames": 8,
                                   "animation_chains": 7, "langevin": {"n_steps": 40, "step_size": 0.01},
                                   "annealed_langevin": {"n_steps_each": 20, "step_size": 1e-3}})
    gen = run_samplers(cfg, name, backend)
    x0 = cfg.initial_states(np.random.default_rng(cfg.seed))[:7]
    final, _ = backend.sample(name, x0, cfg.settings(name), 0, cfg.seed + 3)
    np.testing.assert_array_equal(gen.animation[0], x0)
    np.testing.assert_allclose(gen.animation[-1], final, rtol=1e-6, atol=1e-6)
    assert len(gen.animation_labels) == len(gen.animation)
    if conditional:  # k = round(4 levels × 20 steps / 8 frames) = 10: two frames a level, then the denoised states
        assert gen.animation.shape == (1 + 8 + 1, 7, 2)
        assert gen.animation_labels[1:9] == [f"level σ = {s:g}" for s in (8, 8, 4, 4, 2, 2, 1, 1)]
        assert gen.animation_labels[-1] == "final states, after 81 evaluations"
    else:  # k = 40 // 8 = 5: the last kept state is the final one
        assert gen.animation.shape == (1 + 8, 7, 2)
        assert gen.animation_labels == ["initial states"] + [f"step {5 * i} of 40" for i in range(1, 9)]


def test_fit_writes_the_animation(tmp_path):
    from conftest import cli_main, refresh_log_streams, tiny_fit_args
    from PIL import Image

    refresh_log_streams()
    cli_main("jax")(tiny_fit_args(tmp_path, "--model.sampler.animation_frames=5", epochs=1))
    im = Image.open(tmp_path / "animation.gif")
    assert im.n_frames == 6  # the initial states and 5 kept ones (50 steps, every 10th)
