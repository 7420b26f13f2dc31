"""What a run does after training, written once for both frameworks: weights, samples, report.

:func:`finish_run` takes a framework's :class:`~dsm_common.generate.Backend` and does the rest:
the weight file's metadata (what the network is conditioned on included), the samplers, the
per-level loss of a multi-level model, the metrics and the figures.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dsm_common.config import SamplerConfig
from dsm_common.datasets import Dataset2D
from dsm_common.files import run_phase, write_status
from dsm_common.generate import Backend, run_samplers
from dsm_common.transform import data_transform
from dsm_common.validation import DivergedError

__all__ = ["finish_run", "follow_run", "weights_config", "per_level_noise", "likelihood_report", "likelihood_points",
           "rademacher_probe", "DATA_KEYS"]

DATA_KEYS = ("dataset", "n_points", "columns", "standardize", "header", "drop_missing", "seed")


def weights_config(framework: str, model: dict[str, Any], conditioning: str, sigmas: np.ndarray,
                   data: dict[str, Any], sampler: SamplerConfig, epochs: int, dataset: Dataset2D,
                   preconditioning: dict[str, Any] | None = None, sde: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings stored beside the weights: enough to rebuild the network, sample from it and
    map its samples to data units with nothing else at hand.

    ``conditioning`` (``none`` or ``sigma``) says what the network takes besides x, so a reader
    need not infer it from the layer widths. ``data`` are the data options (to reload the data for
    grading); ``data_transform`` is the training space of ``dataset`` (``dsm_common.transform``);
    ``preconditioning`` (``{"name": "edm", "sigma_data": …}``, EDM networks) rebuilds the network
    around its MLP (``dsm_common.weights.network_options``); ``sde`` (score-SDE models:
    ``SDESettings.description``) is the SDE its samplers run on (``dsm_common.weights.stored_sde``)."""
    return {
        "framework": framework,
        "model": dict(model),
        "conditioning": conditioning,
        "sigmas": [float(s) for s in np.asarray(sigmas)],
        "data": {k: data.get(k) for k in DATA_KEYS},
        "data_transform": data_transform(dataset),
        "sampler": asdict(sampler),
        "epochs": int(epochs),
        **({"preconditioning": dict(preconditioning)} if preconditioning else {}),
        **({"sde": dict(sde)} if sde else {}),
    }


def per_level_noise(n_levels: int, n_points: int, seed: int = 0) -> np.ndarray:
    """Fixed standard normal draws (L, N, 2) float32 for the per-level loss report."""
    return np.random.default_rng(seed).standard_normal((n_levels, n_points, 2)).astype(np.float32)


def rademacher_probe(n: int, seed: int) -> np.ndarray:
    """(n, 2) float32 Rademacher ±1 draws of a numpy Generator: the Hutchinson probe both
    frameworks' likelihoods take (one a point, fixed for the solve)."""
    return np.random.default_rng(seed).choice(np.array([-1.0, 1.0], np.float32), size=(n, 2))


def likelihood_points(backend: Backend, dataset: Dataset2D, sampler: SamplerConfig) -> np.ndarray | None:
    """The (n, 2) float32 points ``likelihood_report`` scores (see there), or None where it scores none."""
    if getattr(backend, "sde", None) is None or not sampler.nll_points or not len(dataset):
        return None
    if dataset.mixture is not None:
        return dataset.mixture.sample(sampler.nll_points, np.random.default_rng(sampler.seed + 4)).astype(np.float32)
    return dataset.points.astype(np.float32)


def likelihood_report(backend: Backend, dataset: Dataset2D, sampler: SamplerConfig) -> dict[str, Any] | None:
    """A score-SDE model's negative log-likelihood, in nats per point in data units, through the
    probability-flow ODE (``model.sampler.ode``'s solver), beside the exact value where the data's
    law is known and the baseline of a cross-validated Gaussian KDE of the training points.

    Points: ``nll_points`` fresh draws of the data's law (seed ``model.sampler.seed + 4``) when it
    is known, else the training points (all of them; ``points: training`` says so, and the KDE is
    then scored on its own training points too). Data units: −log p_data(y) = −log p(x) + Σ_j log
    scale_j for the training space x = (y − shift)/scale. None: not an SDE model, no points, or
    ``nll_points = 0``.
    """
    import time

    from dsm_common.metrics import kde_nll

    points = likelihood_points(backend, dataset, sampler)
    if points is None:
        return None
    held_out = dataset.mixture is not None
    settings = sampler.settings("ode")
    t0 = time.perf_counter()
    log_p, nfe = backend.likelihood(points, settings, sampler.seed + 5)
    seconds = time.perf_counter() - t0
    log_scale = float(np.sum(np.log(np.asarray(dataset.scale, np.float64))))
    kde, bandwidth = kde_nll(dataset.points, points)
    finite = np.isfinite(log_p)
    return {
        "points": "held_out" if held_out else "training",
        "n": int(len(points)),
        "model": float(-np.mean(log_p[finite]) + log_scale) if finite.any() else None,
        "nonfinite": int((~finite).sum()),
        "exact": float(-np.mean(dataset.mixture.log_density(points)) + log_scale) if held_out else None,
        "kde": kde + log_scale,
        "kde_bandwidth": bandwidth,
        "solver": settings.solver,
        "divergence": "hutchinson" if settings.hutchinson else "exact",
        "nfe": int(nfe),
        "seconds": seconds,
    }


def follow_run(backend: Backend, sampler_name: str, dataset: Dataset2D, sampler: SamplerConfig) -> None:
    """What each other process of a multi-process run computes while the first runs
    :func:`finish_run` with the same arguments: the same ``backend.sample`` and
    ``backend.likelihood`` calls, in the same order, so that a backend whose chains span the
    processes' devices runs each computation on all of them. Nothing is written."""
    run_samplers(sampler, sampler_name, backend)
    points = likelihood_points(backend, dataset, sampler)
    if points is not None:
        backend.likelihood(points, sampler.settings("ode"), sampler.seed + 5)


def finish_run(run_dir: str | Path, backend: Backend, sampler_name: str, model_settings: dict[str, Any],
               data_settings: dict[str, Any], dataset: Dataset2D, sampler: SamplerConfig, info: dict[str, Any],
               loss_history=()) -> dict[str, Any]:
    """Save the weights (after training), sample, and write the run's files; return the metrics.

    Args:
        run_dir: the run (or ``sample``) folder.
        backend: the framework's trained network.
        sampler_name: the registered sampler to run.
        model_settings, data_settings: JSON-able settings stored with the weights.
        dataset: the data the run is graded against.
        sampler: ``model.sampler``.
        info: ``epochs``, ``steps``, ``train_seconds``, … for ``metrics.json``; ``weights_from``
            when sampling saved weights (nothing is saved then).
        loss_history: mean loss of each epoch.
    """
    from dsm_common.report import DIVERGED_REACH, write_run_outputs

    sigmas = np.asarray(backend.sigmas, np.float64)
    conditioning = "sigma" if backend.conditional else "none"
    if info.get("epochs") is not None and "weights_from" not in info:
        with run_phase(run_dir, "saving weights"):
            backend.save_weights(Path(run_dir) / "weights.safetensors",
                                 weights_config(backend.framework, model_settings, conditioning, sigmas, data_settings,
                                                sampler, info["epochs"], dataset, backend.preconditioning,
                                                getattr(backend, "sde", None)))
    with run_phase(run_dir, "sampling"):
        gen = run_samplers(sampler, sampler_name, backend)
        per_level = None
        if backend.conditional and len(dataset):
            losses = backend.per_level_loss(dataset.points, per_level_noise(len(sigmas), len(dataset.points)))
            per_level = {"sigma": [float(s) for s in sigmas], "loss": np.asarray(losses).tolist()}
        nll = likelihood_report(backend, dataset, sampler)
    target_sigma = float(sigmas[-1])
    label = f"σ_L = {target_sigma:.3g}" if backend.conditional else f"σ = {target_sigma:.3g}"
    info = dict(info, sample_seconds=gen.sample_seconds, sampler=gen.sampler, nfe=gen.nfe)
    if nll is not None:
        info["nll"] = nll
    objective = (model_settings or {}).get("objective") or ("ncsn" if backend.conditional else "dsm")
    sde = getattr(backend, "sde", None)
    kind = f" ({sde['kind'].upper()})" if sde else ""
    title = f"{backend.framework} · {objective}{kind} · {gen.describe}"
    shown = sigmas if len(sigmas) < 3 else sigmas[[0, len(sigmas) // 2, -1]]  # largest, middle, smallest
    if sde and sde["kind"] != "ve":  # x_t = α(t) x + σ(t) z: only at the smallest level is α ≈ 1, as the panels assume
        shown = sigmas[-1:]
    if gen.trajectory_sigma is not None:
        colour = (gen.trajectory_sigma, "noise level σ of the step", True)
        chain = f"one {gen.describe.split(',')[0]} chain from the origin, through its levels"
    else:
        colour = (gen.trajectory_step, "sampler step", False) if gen.trajectory_step is not None else None
        chain = f"one {gen.describe.split(',')[0]} chain from the origin"
    animation = None if gen.animation is None else (
        gen.animation, gen.animation_labels, f"{gen.animation.shape[1]} chains, {gen.describe}")
    with run_phase(run_dir, "writing outputs"):
        metrics = write_run_outputs(
            run_dir, framework=backend.framework, dataset=dataset, samples=gen.samples, target_sigma=target_sigma,
            noise_label=label, score_fn=backend.score_at(target_sigma), trajectory=gen.trajectory,
            loss_history=loss_history, per_level_loss=per_level, comparison=gen.comparison, info=info,
            title=title, score_at=backend.score_at if backend.conditional else None, score_sigmas=shown,
            noised_sigmas=shown[:2] if backend.conditional else (), trajectory_colour=colour, trajectory_title=chain,
            animation=animation, reverse=gen.reverse,
        )
    if metrics["diverged_samples"]:
        settings = sampler.settings(gen.sampler)
        weights = info.get("weights_from") or Path(run_dir) / "weights.safetensors"
        if hasattr(settings, "step_size"):
            option, change = f"model.sampler.{gen.sampler}.step_size", f"a smaller {{}} (now {settings.step_size:g})"
        else:  # the EDM samplers: more, smaller steps
            option, change = f"model.sampler.{gen.sampler}.num_steps", f"a larger {{}} (now {settings.num_steps})"
        write_status(run_dir, "diverged", "sampling")
        raise DivergedError(
            f"sampling diverged: {metrics['diverged_samples']} of {len(gen.samples)} samples are not finite or ran off "
            f"beyond {DIVERGED_REACH:g} times the data's reach (metrics count the others); try {change.format(option)}: "
            f"sample --weights {weights} --{option.replace('model.', '', 1)}=… reuses the trained weights"
        )
    write_status(run_dir, "complete", None)
    return metrics
