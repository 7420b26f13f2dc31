"""PNG figures of a run, drawn with matplotlib (Agg backend), in data units."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap, LogNorm, Normalize  # noqa: E402

from dsm_common.files import atomic_path  # noqa: E402

__all__ = [
    "axis_limits",
    "plot_data",
    "plot_samples",
    "plot_trajectory",
    "plot_score_field",
    "plot_loss",
    "plot_sampler_comparison",
    "animate_chains",
]

_BLACK_TO_RED = LinearSegmentedColormap.from_list("black_red", ["black", "red"])


def axis_limits(points: np.ndarray, margin: float = 0.3) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits around ``points`` (n, 2), widened by ``margin`` × the range on each side."""
    lo, hi = points.min(0), points.max(0)
    pad = margin * np.maximum(hi - lo, 1e-9)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def _limits(ax_list, lims, names) -> None:
    for ax in ax_list:
        ax.set_xlim(*lims[0])
        ax.set_ylim(*lims[1])
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_aspect("auto")


def _titled(fig, title: str, path) -> Path:
    """Lay out ``fig`` under ``title`` (framework and method: every figure says whose it is) and save it."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _finish(fig, ax_list, lims, names, path, title: str = "") -> Path:
    _limits(ax_list, lims, names)
    return _titled(fig, title, path)


def _save(fig, path) -> Path:
    """Write ``fig`` to ``path`` atomically (a reader never sees half a PNG) and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def plot_data(data: np.ndarray, noised: Sequence[tuple[str, np.ndarray]], lims, names, path, title: str = "",
              noised_lims=None) -> Path:
    """The data Υ beside noised copies Υ_σ, one panel per ``(σ label, points)`` (all (n, 2), data units).

    ``noised_lims``: axis limits of the noised panels (default ``lims``): noise spreads the data
    beyond its own axes."""
    fig, axes = plt.subplots(1, 1 + len(noised), figsize=(5 * (1 + len(noised)), 4.5), squeeze=False)
    axes = axes[0]
    axes[0].scatter(data[:, 0], data[:, 1], s=6, c="tab:blue")
    axes[0].set_title(f"data ({len(data)} points)")
    for ax, (label, pts) in zip(axes[1:], noised):
        ax.scatter(pts[:, 0], pts[:, 1], s=6, c="tab:orange")
        ax.set_title(f"noised data, {label}")
    _limits(axes[:1], lims, names)
    _limits(axes[1:], noised_lims or lims, names)
    return _titled(fig, title, path)


def plot_samples(samples: np.ndarray, target: np.ndarray, title: str, lims, names, path, suptitle: str = "") -> Path:
    """Samples (red) over draws of the target (grey), both (n, 2) in data units."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if len(target):
        ax.scatter(target[:, 0], target[:, 1], s=4, c="0.7", label="target")
    ax.scatter(samples[:, 0], samples[:, 1], s=6, c="tab:red", label="samples")
    ax.legend(loc="upper left")
    ax.set_title(title, fontsize=10)
    return _finish(fig, [ax], lims, names, path, suptitle)


def plot_trajectory(traj: np.ndarray, target: np.ndarray, title: str, lims, names, path, colour: np.ndarray | None = None,
                    colour_label: str = "step", log_colour: bool = False, suptitle: str = "") -> Path:
    """One chain (T, 2) over target draws, coloured by ``colour`` (T,) (default: the state's index)
    with a colour bar named ``colour_label`` (log scale with ``log_colour``: noise levels). The
    axes stay at ``lims``; the title says how many states fall outside them."""
    fig, ax = plt.subplots(figsize=(6.2, 5))
    if len(target):
        ax.scatter(target[:, 0], target[:, 1], s=4, c="0.8", label="target")
    values = np.arange(len(traj), dtype=np.float64) if colour is None else np.asarray(colour, np.float64)
    if log_colour:  # noise levels: they fall as the chain goes, so the largest is black (the start)
        norm, cmap = LogNorm(values.min(), max(values.max(), values.min() * 1.0001)), _BLACK_TO_RED.reversed()
    else:
        norm, cmap = Normalize(values.min(), max(values.max(), values.min() + 1)), _BLACK_TO_RED
    segs = np.stack([traj[:-1], traj[1:]], axis=1)
    ax.add_collection(LineCollection(segs, cmap=cmap, norm=norm, array=values[1:], linewidths=1.0))
    dots = ax.scatter(traj[:, 0], traj[:, 1], c=values, cmap=cmap, norm=norm, s=10, zorder=3)
    fig.colorbar(dots, ax=ax, label=colour_label)
    (x0, x1), (y0, y1) = lims
    outside = int(np.sum((traj[:, 0] < x0) | (traj[:, 0] > x1) | (traj[:, 1] < y0) | (traj[:, 1] > y1)))
    ax.set_title(title + (f"\n{outside} of {len(traj)} states outside these axes" if outside else ""), fontsize=10)
    return _finish(fig, [ax], lims, names, path, suptitle)


def plot_score_field(
    levels: Sequence[tuple[str, Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray] | None]],
    lims,
    names,
    path,
    grid: int = 21,
    suptitle: str = "",
) -> Path:
    """The learned score beside the exact one (where there is one), one row per noise level.

    ``levels``: ``(σ label, learned, exact or None)``, the callables taking and returning (n, 2)
    arrays in the plotting coordinates. Arrows show the direction; their colour the norm, on one
    logarithmic colour scale shared by every panel, with its colour bar.
    """
    gx, gy = np.meshgrid(np.linspace(*lims[0], grid), np.linspace(*lims[1], grid))
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    panels = []
    for label, learned, exact in levels:
        panels.append((f"learned score, {label}", np.asarray(learned(pts), dtype=np.float64)))
        if exact is not None:
            panels.append((f"exact score, {label}", np.asarray(exact(pts), dtype=np.float64)))
    cols = 2 if any(exact is not None for _, _, exact in levels) else 1
    rows = len(levels)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols + 1.2, 4.6 * rows), squeeze=False)
    norms = np.concatenate([np.linalg.norm(v, axis=1) for _, v in panels])
    norms = norms[np.isfinite(norms) & (norms > 0)]
    # The colour range of the middle 96 % of norms: the exact score vanishes at a mode's centre,
    # which would stretch a logarithmic scale over dozens of decades.
    lo, hi = (float(np.percentile(norms, 2)), float(np.percentile(norms, 98))) if len(norms) else (1e-3, 1.0)
    norm = LogNorm(lo, max(hi, lo * 1.0001))
    quiver = None
    for ax, (title, v) in zip(axes.ravel(), panels):
        length = np.linalg.norm(v, axis=1, keepdims=True)
        unit = np.divide(v, length, out=np.zeros_like(v), where=length > 0)
        quiver = ax.quiver(pts[:, 0], pts[:, 1], unit[:, 0], unit[:, 1], np.clip(length[:, 0], lo, hi), cmap="viridis",
                           norm=norm, angles="xy", pivot="mid")
        ax.set_title(title, fontsize=10)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    if quiver is not None:
        fig.colorbar(quiver, ax=axes.ravel().tolist(), label="‖score‖ (data units, log scale)")
    _limits(axes.ravel()[: len(panels)], lims, names)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return _save(fig, path)


def plot_loss(history: Sequence[float], path, per_level: dict | None = None, suptitle: str = "") -> Path:
    """Mean training loss per epoch, thin, with its running mean over a fiftieth of the run, thick
    (log scale); beside it the loss per noise level if given."""
    n = 2 if per_level else 1
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4), squeeze=False)
    ax = axes[0][0]
    h = np.asarray(history, dtype=np.float64)
    epochs = np.arange(1, len(h) + 1)
    ax.plot(epochs, h, lw=0.8, alpha=0.4, color="tab:blue", label="each epoch")
    window = max(1, len(h) // 50)
    if window > 1:
        smooth = np.convolve(h, np.ones(window) / window, mode="valid")
        ax.plot(epochs[window - 1:], smooth, lw=2, color="tab:blue", label=f"mean of {window} epochs")
    ax.legend(loc="upper right")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss per batch")
    if len(h) and np.all(h > 0):
        ax.set_yscale("log")
    ax.set_title("training loss", fontsize=10)
    if per_level:
        ax2 = axes[0][1]
        sig = np.array(per_level["sigma"])
        ax2.semilogx(sig, per_level["loss"], "o-", label="trained model, fixed noise")
        ax2.set_xlabel("σ")
        ax2.set_ylabel("‖σ s(x̃, σ) + z‖², mean")
        ax2.set_title("loss per noise level", fontsize=10)
        ax2.legend(loc="upper right")
    return _titled(fig, suptitle, path)


def plot_sampler_comparison(panels: Sequence[tuple[str, np.ndarray]], target: np.ndarray, lims, names, path,
                            suptitle: str = "") -> Path:
    """Side-by-side sample sets (e.g. plain against annealed Langevin) over target draws."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    for ax, (title, s) in zip(axes[0], panels):
        if len(target):
            ax.scatter(target[:, 0], target[:, 1], s=4, c="0.7", label="target")
        ax.scatter(s[:, 0], s[:, 1], s=5, c="tab:red", label=f"{len(s)} samples")
        ax.legend(loc="upper left")
        ax.set_title(title, fontsize=10)
    return _finish(fig, axes[0], lims, names, path, suptitle)


def animate_chains(frames: np.ndarray, labels: Sequence[str], target: np.ndarray, lims, names, path, title: str = "",
                   suptitle: str = "", fps: int = 8, dpi: int = 60) -> Path:
    """A GIF of chains moving: frame f shows the states ``frames[f]`` (m, 2) over target draws,
    titled ``title`` and ``labels[f]`` (the step or noise level), on fixed axes ``lims``; the count
    of states outside them is in the title. Written with matplotlib's ``FuncAnimation`` and the
    Pillow writer, atomically; small by default (``dpi`` 60: 300 × 300 pixels, ``fps`` frames a second).

    Args:
        frames: (F, m, 2) states, data units.
        labels: F strings.
        target: (k, 2) target draws (grey), may be empty.

    Raises:
        ValueError: ``labels`` and ``frames`` differ in length.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter

    frames = np.asarray(frames, np.float64)
    if len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
    fig, ax = plt.subplots(figsize=(5, 5.5))
    if len(target):
        ax.scatter(target[:, 0], target[:, 1], s=3, c="0.85")
    dots = ax.scatter(frames[0][:, 0], frames[0][:, 1], s=6, c="tab:red")
    _limits([ax], lims, names)
    head = f"{suptitle}\n{title}" if suptitle else title
    (x0, x1), (y0, y1) = lims

    def draw(f: int):
        x = frames[f]
        dots.set_offsets(np.clip(x, [x0, y0], [x1, y1]))  # off the axes: drawn on its edge, counted in the title
        out = int(np.sum(~((x[:, 0] >= x0) & (x[:, 0] <= x1) & (x[:, 1] >= y0) & (x[:, 1] <= y1))))
        ax.set_title(f"{head}\n{labels[f]}" + (f", {out} outside these axes" if out else ""), fontsize=8)
        return (dots,)

    draw(0)
    fig.tight_layout()  # around the three title lines
    anim = FuncAnimation(fig, draw, frames=len(frames), blit=False)
    path = Path(path)
    with atomic_path(path) as tmp:
        anim.save(tmp, writer=PillowWriter(fps=fps), dpi=dpi)
    plt.close(fig)
    return path
