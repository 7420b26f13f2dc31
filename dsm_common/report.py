"""What a finished run writes: ``samples.npy``, ``metrics.json`` and the PNG figures.

Both command lines call :func:`write_run_outputs` with numpy arrays and a numpy score function,
so the files of a torch run and a JAX run are made by the same code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dsm_common import metrics, plots
from dsm_common.datasets import Dataset2D
from dsm_common.files import atomic_path, write_text_atomic

__all__ = ["write_run_outputs", "sample_metrics", "usable_rows", "SEED_LIMITS", "DIVERGED_REACH"]

SEED_LIMITS = {"data": ((-15.0, 15.0), (-15.0, 15.0)), "samples": ((-20.0, 20.0), (-20.0, 20.0))}
FISHER_DRAWS = 10_000
# A final state farther from the origin than this many times the data's reach (training space) is a
# diverged chain, not a sample: samplers that blow up end at 1e30 and beyond, not at 1e4.
DIVERGED_REACH = 1e4


def usable_rows(samples: np.ndarray, ds: Dataset2D) -> np.ndarray:
    """(n,) bool: samples (n, 2), training space, that are finite and within ``DIVERGED_REACH``
    × max(1, the largest |coordinate| of the training points) of the origin."""
    samples = np.asarray(samples, np.float64)
    reach = max(1.0, float(np.abs(ds.points).max())) if len(ds) else 1.0
    with np.errstate(invalid="ignore"):
        return np.isfinite(samples).all(axis=1) & (np.abs(samples).max(axis=1, initial=0.0) <= DIVERGED_REACH * reach)


def _data_units_mixture(ds: Dataset2D, sigma: float):
    mix = ds.target_mixture(sigma)
    return None if mix is None else mix.transformed(-ds.shift / ds.scale, 1.0 / ds.scale)


def sample_metrics(
    ds: Dataset2D,
    samples: np.ndarray,
    target_sigma: float,
    rng: np.random.Generator,
    score_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metrics of docs/method.md §5 for ``samples`` (n, 2), training space, against ``p ∗ N(0, σ² I)``.

    Computed on the usable samples only (``n_samples`` of them, :func:`usable_rows`):
    ``nonfinite_samples`` counts the chains that ended NaN or ±inf, ``diverged_samples`` those and
    the finite ones that ran off beyond ``DIVERGED_REACH`` times the data's reach; with none usable
    every sample metric is None.

    Energy distances are in data units, against ``n`` fresh target draws, beside the distance
    between two independent sets of ``n`` target draws. For data with no known law (Old
    Faithful, the scikit-learn sets, files), ``split_half_energy`` compares the samples with
    random halves of the data (``metrics.split_half_energy_check``; ratio ≤ 2 passes). Mode weights, gap mass and per-mode
    moments need a mixture law (else None); the gap mass is defined for the seed mixture only.
    The relative Fisher divergence needs both a mixture law and ``score_fn`` (training space).
    """
    finite_rows = np.isfinite(samples).all(axis=1)
    n_bad = int(np.sum(~finite_rows))
    kept = usable_rows(samples, ds)
    n_far = int(np.sum(finite_rows & ~kept))
    samples = samples[kept]  # a diverged chain is no sample: every metric counts the usable ones only
    n = len(samples)
    data_units = ds.to_data_units(samples)
    out: dict[str, Any] = {
        "n_samples": int(n),
        "target_sigma": float(target_sigma),
        "energy_distance": None,
        "energy_distance_reference": None,
        "mode_weights": None,
        "gap_mass": None,
        "per_mode": None,
        "fisher_divergence": None,
        "nonfinite_samples": n_bad,
        "diverged_samples": n_bad + n_far,
        "split_half_energy": None,
    }
    if n == 0:
        return out
    if len(ds) == 0:  # only the transform is known (sample, without the training data): nothing to grade against
        out["sample_mean"] = data_units.mean(axis=0).tolist()
        out["sample_std"] = data_units.std(axis=0).tolist()
        return out
    t1 = ds.to_data_units(ds.target_sample(n, target_sigma, rng))
    t2 = ds.to_data_units(ds.target_sample(n, target_sigma, rng))
    out["energy_distance"] = metrics.energy_distance(data_units, t1)
    out["energy_distance_reference"] = metrics.energy_distance(t2, t1)
    if ds.mixture is None and n >= len(ds) // 2 >= 2 and np.isfinite(data_units).all():
        # Data with no known law: samples against random halves of the data (docs/method.md §5), own stream.
        out["split_half_energy"] = metrics.split_half_energy_check(data_units, ds.to_data_units(ds.points))
    mix = _data_units_mixture(ds, target_sigma)
    if mix is not None:
        out["mode_weights"] = metrics.mode_weights(data_units, mix).tolist()
        out["true_mode_weights"] = mix.weights.tolist()
        out["per_mode"] = metrics.per_mode_moments(data_units, mix)
        if ds.name == "seed_mixture":
            out["gap_mass"] = metrics.gap_mass(data_units)
        if score_fn is not None:
            out["fisher_divergence"] = metrics.fisher_divergence(
                score_fn, ds.target_mixture(target_sigma), FISHER_DRAWS, rng
            )
    return out


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def _clean(obj):
    """Replace NaN/inf by None so metrics.json stays valid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_run_outputs(
    run_dir: str | Path,
    *,
    framework: str,
    dataset: Dataset2D,
    samples: np.ndarray,
    target_sigma: float,
    noise_label: str,
    score_fn: Callable[[np.ndarray], np.ndarray] | None,
    trajectory: np.ndarray | None = None,
    loss_history: Sequence[float] = (),
    per_level_loss: dict | None = None,
    comparison: Sequence[tuple[str, np.ndarray]] | None = None,
    info: dict[str, Any] | None = None,
    seed: int = 0,
    title: str = "",
    score_at: Callable[[float], Callable[[np.ndarray], np.ndarray]] | None = None,
    score_sigmas: Sequence[float] = (),
    noised_sigmas: Sequence[float] = (),
    trajectory_colour: tuple[np.ndarray, str, bool] | None = None,
    trajectory_title: str = "one Langevin chain from the origin",
    animation: tuple[np.ndarray, Sequence[str], str] | None = None,
    reverse: Sequence[tuple[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Write a run's samples, metrics and figures into ``run_dir``; return the metrics dict.

    Args:
        run_dir: output folder (created).
        framework: ``"torch"`` or ``"jax"``.
        dataset: the training data set (points in training space).
        samples: (n, 2) final sampler states, training space. Saved in data units.
        target_sigma: σ of the law the sampler targets (the model's σ, or σ_L for NCSN).
        noise_label: how the figures name that law's noise, e.g. ``"σ = 3"``.
        score_fn: learned score at ``target_sigma``, (n, 2) → (n, 2) numpy, training space.
        trajectory: (T, 2) states of the trajectory demo, training space, or None.
        loss_history: mean training loss of each epoch.
        per_level_loss: ``{"sigma": [...], "loss": [...]}`` for multi-scale models.
        comparison: (title, samples) pairs for the side-by-side sampler figure.
        info: further entries for ``metrics.json`` (epochs, timings, settings).
        seed: seed of the numpy Generator drawing target points for the metrics.
        title: what every figure is headed with (framework and method).
        score_at: the learned score at any level, ``σ → score_fn``, for the score-field figure
            at each of ``score_sigmas`` (default: ``score_fn`` at ``target_sigma``).
        noised_sigmas: levels of the noised-data panels (default: ``target_sigma``).
        trajectory_colour: ``(values (T,), label, log scale)`` colouring the trajectory's states
            (default: their index).
        trajectory_title: the trajectory figure's title.
        animation: ``(frames (F, m, 2) training space, F labels, title)`` for ``animation.gif``.
        reverse: ``(label, states (m, 2) training space)`` along a score SDE's reverse process,
            for ``reverse_process.png``.

    Returns:
        The dict written to ``metrics.json``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples = np.asarray(samples, dtype=np.float64)
    report: dict[str, Any] = {"framework": framework, "dataset": dataset.name, "units": dataset.units,
                              "dropped_rows": dataset.dropped_rows}
    report.update(info or {})
    report["final_loss"] = float(loss_history[-1]) if len(loss_history) else report.get("final_loss")
    report.update(sample_metrics(dataset, samples, target_sigma, rng, score_fn))
    if per_level_loss is not None:
        report["per_level_loss"] = per_level_loss

    with atomic_path(run_dir / "samples.npy") as tmp:
        np.save(tmp, dataset.to_data_units(samples))
    write_text_atomic(run_dir / "metrics.json", json.dumps(_clean(report), indent=2, default=_json_default) + "\n")

    # Figures, all in data units.
    finite = samples[usable_rows(samples, dataset)]
    names = tuple(f"{a} [{dataset.units}]" if dataset.units else a for a in dataset.axis_names)
    seed_set = dataset.name == "seed_mixture" and np.all(dataset.scale == 1)
    if len(dataset):
        data = dataset.to_data_units(dataset.points)
        noised = dataset.to_data_units(dataset.target_sample(len(dataset), target_sigma, rng))
        target = dataset.to_data_units(dataset.target_sample(max(len(samples), 1000), target_sigma, rng))
        data_lims = SEED_LIMITS["data"] if seed_set else plots.axis_limits(data)
        sample_lims = SEED_LIMITS["samples"] if seed_set else plots.axis_limits(np.concatenate([data, noised]))
        panels = [(noise_label, noised)] if not len(noised_sigmas) else [
            (f"σ = {s:.3g}", dataset.to_data_units(dataset.target_sample(len(dataset), float(s), rng)))
            for s in noised_sigmas]
        spread = np.concatenate([data, *[p for _, p in panels]])
        noised_lims = None if seed_set and not len(noised_sigmas) else plots.axis_limits(spread)
        plots.plot_data(data, panels, data_lims, names, run_dir / "data.png", title, noised_lims)
    else:  # no data at hand: the samples alone, around themselves (or training space's ±3)
        target = np.zeros((0, 2))
        around = finite if len(finite) else np.array([[-3.0, -3.0], [3.0, 3.0]])
        sample_lims = plots.axis_limits(dataset.to_data_units(around))
    plots.plot_samples(
        dataset.to_data_units(finite), target,
        (f"{len(finite)} samples over the target ({noise_label})" if len(dataset)
         else f"{len(finite)} samples ({noise_label}; no data at hand to compare)")
        + (f", {len(samples) - len(finite)} diverged" if len(finite) < len(samples) else ""),
        sample_lims, names, run_dir / "samples.png", title,
    )
    if trajectory is not None and len(trajectory):
        colour, label, log = trajectory_colour or (None, "kept state", False)
        plots.plot_trajectory(dataset.to_data_units(trajectory), target, trajectory_title, sample_lims, names,
                              run_dir / "trajectory.png", colour, label, log, title)
    if score_fn is not None:
        def to_train(p):
            return (p - dataset.shift) / dataset.scale

        def level(sigma, fn):
            mix = dataset.target_mixture(sigma)
            # Scores in data units: ∇_y log p(y) = ∇_x log p(x) / scale for y = x·scale + shift.
            return (f"σ = {sigma:.3g}", lambda p: np.asarray(fn(to_train(p).astype(np.float32))) / dataset.scale,
                    None if mix is None else (lambda p: mix.score(to_train(p)) / dataset.scale))

        levels = [level(float(s), score_at(float(s))) for s in score_sigmas] if score_at and len(score_sigmas) \
            else [level(target_sigma, score_fn)]
        plots.plot_score_field(levels, sample_lims, names, run_dir / "score_field.png", suptitle=title)
    if len(loss_history):
        plots.plot_loss(loss_history, run_dir / "loss.png", per_level_loss, title)
    if animation is not None:
        frames, labels, what = animation
        frames = dataset.to_data_units(np.asarray(frames, np.float64).reshape(-1, 2)).reshape(np.shape(frames))
        # The samples' axes, widened (by at most their span on each side) to hold nearly all states
        # of every frame: annealed chains start wide.
        lo0, hi0 = np.array([sample_lims[0][0], sample_lims[1][0]]), np.array([sample_lims[0][1], sample_lims[1][1]])
        inner = frames[np.isfinite(frames).all(axis=-1)]
        lo, hi = (np.quantile(inner, 0.002, axis=0), np.quantile(inner, 0.998, axis=0)) if len(inner) else (lo0, hi0)
        lo, hi = np.clip(lo, 2 * lo0 - hi0, lo0), np.clip(hi, hi0, 2 * hi0 - lo0)
        lims = ((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])))
        plots.animate_chains(frames, labels, target, lims, names, run_dir / "animation.gif", what, title)
    if reverse:
        plots.plot_sampler_comparison(
            [(t, dataset.to_data_units(s[usable_rows(s, dataset)])) for t, s in reverse],
            target, sample_lims, names, run_dir / "reverse_process.png", title + " · along the reverse process",
        )
    if comparison:
        plots.plot_sampler_comparison(
            [(t, dataset.to_data_units(s[usable_rows(s, dataset)])) for t, s in comparison],
            target, sample_lims, names, run_dir / "sampler_comparison.png", title,
        )
    return report
