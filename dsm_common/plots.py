"""PNG figures of a run, drawn with matplotlib (Agg backend), in data units."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402

from dsm_common.files import atomic_path  # noqa: E402

__all__ = [
    "axis_limits",
    "plot_data",
    "plot_samples",
    "plot_trajectory",
    "plot_score_field",
    "plot_loss",
    "plot_sampler_comparison",
]

_BLACK_TO_RED = LinearSegmentedColormap.from_list("black_red", ["black", "red"])


def axis_limits(points: np.ndarray, margin: float = 0.3) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits around ``points`` (n, 2), widened by ``margin`` × the range on each side."""
    lo, hi = points.min(0), points.max(0)
    pad = margin * np.maximum(hi - lo, 1e-9)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def _finish(fig, ax_list, lims, names, path) -> Path:
    for ax in ax_list:
        ax.set_xlim(*lims[0])
        ax.set_ylim(*lims[1])
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_aspect("auto")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path) -> Path:
    """Write ``fig`` to ``path`` atomically (a reader never sees half a PNG) and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def plot_data(data: np.ndarray, noised: np.ndarray, sigma_label: str, lims, names, path) -> Path:
    """Scatter of the data Υ beside the noised data Υ_σ (both (n, 2), data units)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    axes[0].scatter(data[:, 0], data[:, 1], s=6, c="tab:blue")
    axes[0].set_title(f"data ({len(data)} points)")
    axes[1].scatter(noised[:, 0], noised[:, 1], s=6, c="tab:orange")
    axes[1].set_title(f"noised data, {sigma_label}")
    return _finish(fig, axes, lims, names, path)


def plot_samples(samples: np.ndarray, target: np.ndarray, title: str, lims, names, path) -> Path:
    """Samples (red) over draws of the target (grey), both (n, 2) in data units."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(target[:, 0], target[:, 1], s=4, c="0.7", label="target")
    ax.scatter(samples[:, 0], samples[:, 1], s=6, c="tab:red", label="samples")
    ax.legend(loc="upper left")
    ax.set_title(title)
    return _finish(fig, [ax], lims, names, path)


def plot_trajectory(traj: np.ndarray, target: np.ndarray, title: str, lims, names, path) -> Path:
    """One Langevin chain (T, 2) coloured from black (start) to red (end), over target draws."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(target[:, 0], target[:, 1], s=4, c="0.8")
    t = np.linspace(0, 1, len(traj))
    segs = np.stack([traj[:-1], traj[1:]], axis=1)
    ax.add_collection(LineCollection(segs, colors=_BLACK_TO_RED(t[:-1]), linewidths=1.0))
    ax.scatter(traj[:, 0], traj[:, 1], c=t, cmap=_BLACK_TO_RED, s=10, zorder=3)
    ax.set_title(title)
    return _finish(fig, [ax], lims, names, path)


def plot_score_field(
    learned: Callable[[np.ndarray], np.ndarray],
    exact: Callable[[np.ndarray], np.ndarray] | None,
    lims,
    names,
    path,
    grid: int = 25,
) -> Path:
    """Quiver plots of the learned score beside the exact one (where one exists).

    Both callables take and return (n, 2) arrays in the plotting coordinates.
    """
    gx, gy = np.meshgrid(np.linspace(*lims[0], grid), np.linspace(*lims[1], grid))
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    panels = [("learned score", learned)] + ([("exact score", exact)] if exact is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    for ax, (title, fn) in zip(axes[0], panels):
        v = np.asarray(fn(pts), dtype=np.float64)
        ax.quiver(pts[:, 0], pts[:, 1], v[:, 0], v[:, 1], np.linalg.norm(v, axis=1), cmap="viridis")
        ax.set_title(title)
    return _finish(fig, axes[0], lims, names, path)


def plot_loss(history: Sequence[float], path, per_level: dict | None = None) -> Path:
    """Mean training loss per epoch (log scale); beside it the loss per noise level if given."""
    n = 2 if per_level else 1
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot(np.arange(1, len(history) + 1), history)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss per batch")
    if len(history) and min(history) > 0:
        ax.set_yscale("log")
    ax.set_title("training loss")
    if per_level:
        ax2 = axes[0][1]
        sig = np.array(per_level["sigma"])
        ax2.semilogx(sig, per_level["loss"], "o-")
        ax2.set_xlabel("σ")
        ax2.set_ylabel("‖σ s(x̃, σ) + z‖², mean")
        ax2.set_title("loss per noise level")
    fig.tight_layout()
    return _save(fig, path)


def plot_sampler_comparison(panels: Sequence[tuple[str, np.ndarray]], target: np.ndarray, lims, names, path) -> Path:
    """Side-by-side sample sets (e.g. plain against annealed Langevin) over target draws."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    for ax, (title, s) in zip(axes[0], panels):
        ax.scatter(target[:, 0], target[:, 1], s=4, c="0.7")
        ax.scatter(s[:, 0], s[:, 1], s=5, c="tab:red")
        ax.set_title(title)
    return _finish(fig, axes[0], lims, names, path)
