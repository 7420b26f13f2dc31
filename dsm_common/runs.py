"""What both command lines do around training: sample, report, and read saved runs.

The framework packages supply two small functions that run their own samplers on numpy inputs
(:class:`Samplers`); everything else a run does after training (which chains to run, timing,
the weight file's settings, the sample command's arguments, one-line errors) is written once here.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, get_type_hints

import numpy as np

from dsm_common.config import SamplerConfig
from dsm_common.datasets import Dataset2D, load_dataset
from dsm_common.validation import DSMInputError

__all__ = ["Samplers", "Generated", "run_samplers", "weights_config", "dataset_from_config", "cli_errors"]

DATA_KEYS = ("dataset", "n_points", "columns", "standardize", "seed")


class Samplers(Protocol):
    """A framework's samplers on numpy inputs; each returns ``(final (n, 2), kept or None)``."""

    def plain(self, x0: np.ndarray, step_size: float, n_steps: int, keep_every: int, seed: int,
              sigma: float | None) -> tuple[np.ndarray, np.ndarray | None]: ...

    def annealed(self, x0: np.ndarray, step_size: float, n_steps_each: int, keep_every: int,
                 denoise: bool, seed: int) -> tuple[np.ndarray, np.ndarray | None]: ...


@dataclass
class Generated:
    """Sampler outputs in training space: final states, the trajectory demo, comparisons."""

    samples: np.ndarray
    trajectory: np.ndarray | None
    comparison: list[tuple[str, np.ndarray]] | None
    sample_seconds: float
    kind: str


def sampler_kind(cfg: SamplerConfig, conditional: bool) -> str:
    """``annealed`` or ``langevin``: the configured kind, else annealed for multi-scale models."""
    kind = cfg.kind or ("annealed" if conditional else "langevin")
    if kind == "annealed" and not conditional:
        raise DSMInputError("sampler.kind=annealed needs a multi-scale model (model.num_scales > 1)")
    return kind


def run_samplers(cfg: SamplerConfig, sigmas: np.ndarray, conditional: bool, samplers: Samplers) -> Generated:
    """Run the configured sampler, the one-chain trajectory demo and, for NCSN, plain Langevin.

    * Main run: ``cfg.n_chains`` chains from ``cfg.initial_states`` (numpy, seed ``cfg.seed``),
      timed (``sample_seconds``, compilation included for JAX).
    * Trajectory demo (docs/method.md §1): one chain from the origin, ``trajectory_steps`` steps of size
      ``trajectory_step_size`` (annealed: split evenly over the levels), every
      ``trajectory_keep_every``-th state kept, origin first.
    * Multi-scale models: plain Langevin with ``s(x, σ_L)`` from the same initial states, step
      ``plain_step_size`` (default ε) and the same total number of steps, for the side-by-side
      figure.
    """
    cfg.validate()
    kind = sampler_kind(cfg, conditional)
    x0 = cfg.initial_states(np.random.default_rng(cfg.seed))
    sigma_l = float(sigmas[-1]) if conditional else None
    t0 = time.perf_counter()
    if kind == "annealed":
        samples, _ = samplers.annealed(x0, cfg.step_size, cfg.n_steps, 0, cfg.denoise, cfg.seed)
    else:
        samples, _ = samplers.plain(x0, cfg.step_size, cfg.n_steps, 0, cfg.seed, sigma_l)
    seconds = time.perf_counter() - t0

    trajectory = None
    if cfg.trajectory_steps:
        origin = np.zeros((1, 2), np.float32)
        if kind == "annealed":
            per_level = max(cfg.trajectory_steps // len(sigmas), 1)
            keep = min(cfg.trajectory_keep_every, per_level)
            _, kept = samplers.annealed(origin, cfg.trajectory_step_size, per_level, keep, False, cfg.seed + 1)
        else:
            keep = min(cfg.trajectory_keep_every, cfg.trajectory_steps)
            _, kept = samplers.plain(origin, cfg.trajectory_step_size, cfg.trajectory_steps, keep, cfg.seed + 1, sigma_l)
        trajectory = np.concatenate([origin, np.asarray(kept)[:, 0, :]]) if kept is not None else origin

    comparison = None
    if kind == "annealed":
        total = cfg.n_steps * len(sigmas)
        eps_plain = cfg.plain_step_size or cfg.step_size
        plain, _ = samplers.plain(x0, eps_plain, total, 0, cfg.seed + 2, sigma_l)
        comparison = [
            (f"plain Langevin, s(x, σ_L), {total} steps, ε = {eps_plain:.3g}", np.asarray(plain)),
            (f"annealed Langevin, {len(sigmas)} levels × {cfg.n_steps} steps, ε = {cfg.step_size:.3g}",
             np.asarray(samples)),
        ]
    return Generated(np.asarray(samples), trajectory, comparison, seconds, kind)


def weights_config(framework: str, model: dict[str, Any], sigmas: np.ndarray, data: dict[str, Any],
                   sampler: SamplerConfig, epochs: int) -> dict[str, Any]:
    """The settings stored beside the weights, enough to rebuild the model and its data."""
    return {
        "framework": framework,
        "model": dict(model),
        "sigmas": [float(s) for s in np.asarray(sigmas)],
        "data": {k: data.get(k) for k in DATA_KEYS},
        "sampler": asdict(sampler),
        "epochs": int(epochs),
    }


def dataset_from_config(data: dict[str, Any], override: Optional[str] = None) -> Dataset2D:
    """Reload the training data described by a weight file's ``data`` settings."""
    kw = {k: data.get(k) for k in DATA_KEYS if data.get(k) is not None}
    if override:
        kw["dataset"] = override
    return load_dataset(**kw)


def add_sample_arguments(parser) -> None:
    """Arguments of ``dsm-torch sample`` / ``dsm-jax sample`` on a jsonargparse parser."""
    parser.add_argument("--weights", type=str, required=True, help="a weights.safetensors file (either framework)")
    parser.add_argument("--out", type=Optional[str], default=None, help="output folder (default: WEIGHTS_DIR/sample)")
    parser.add_argument("--data.dataset", type=Optional[str], default=None,
                        help="grade against this data set instead of the one stored with the weights")
    hints = get_type_hints(SamplerConfig)
    for f in fields(SamplerConfig):
        parser.add_argument(f"--sampler.{f.name}", type=Optional[hints[f.name]], default=None,
                            help=f"override the stored sampler.{f.name}")


def sample_settings(args, stored: dict[str, Any]) -> SamplerConfig:
    """The stored sampler settings with the command line's overrides applied."""
    base = dict(stored.get("sampler") or {})
    for f in fields(SamplerConfig):
        value = args.get(f"sampler.{f.name}") if hasattr(args, "get") else None
        if value is not None:
            base[f.name] = value
    return SamplerConfig(**base).validate()


def cli_errors(prog: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; turn a DSMInputError into one line on stderr and exit status 2."""
    try:
        return fn()
    except DSMInputError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def check_run_dir(run_dir: str | Path, framework: str) -> Path:
    """Refuse a run directory that holds another framework's run, so nothing is overwritten.

    Raises:
        DSMInputError: ``run_dir/weights.safetensors`` was written by the other framework.
    """
    import json

    from safetensors import safe_open

    run_dir = Path(run_dir)
    weights = run_dir / "weights.safetensors"
    if weights.is_file():
        try:
            with safe_open(str(weights), framework="numpy") as fh:
                owner = json.loads((fh.metadata() or {}).get("dsm_config", "{}")).get("framework")
        except Exception:
            owner = None
        if owner and owner != framework:
            raise DSMInputError(
                f"{run_dir} holds a {owner} run; give this {framework} run its own folder, "
                f"e.g. --trainer.default_root_dir={run_dir}-{framework}"
            )
    return run_dir


def summary_line(m: dict[str, Any]) -> str:
    """One line of a run's headline metrics, for the terminal."""
    keys = ("final_loss", "mode_weights", "gap_mass", "energy_distance", "energy_distance_reference",
            "fisher_divergence", "train_seconds", "sample_seconds")
    parts = []
    for k in keys:
        v = m.get(k)
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, list):
            v = "[" + ", ".join(f"{a:.3f}" for a in v) + "]"
        parts.append(f"{k}={v}")
    return "  ".join(parts)


def sample_command(prog: str, argv: list[str], load: Callable, finish: Callable) -> dict[str, Any]:
    """``PROG sample``: sample from a weight file written by either framework.

    Args:
        prog: program name for messages.
        argv: the arguments after ``sample``.
        load: framework loader, ``path → (model, stored settings)``.
        finish: framework ``(out_dir, model, sigmas, stored, dataset, sampler, info) → metrics``.
    """
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog=f"{prog} sample", description="Sample from saved weights (either framework).")
    add_sample_arguments(parser)
    args = parser.parse_args(argv)
    model, stored = load(args.weights)
    sigmas = np.asarray(stored.get("sigmas") or [stored.get("model", {}).get("sigma", 3.0)], dtype=np.float64)
    cfg = sample_settings(args, stored)
    dataset = dataset_from_config(stored.get("data") or {}, args.get("data.dataset"))
    out = Path(args.out) if args.out else Path(args.weights).resolve().parent / "sample"
    info = {"epochs": stored.get("epochs"), "weights_from": str(args.weights), "trained_with": stored.get("framework")}
    metrics = finish(out, model, sigmas, stored, dataset, cfg, info)
    print(f"run directory: {out.resolve()}")
    print(summary_line(metrics))
    return metrics


def report_generated(
    run_dir: str | Path,
    framework: str,
    dataset: Dataset2D,
    gen: Generated,
    sigmas: np.ndarray,
    conditional: bool,
    score_at_target: Callable[[np.ndarray], np.ndarray],
    info: dict[str, Any],
    loss_history=(),
    per_level_loss: dict | None = None,
) -> dict[str, Any]:
    """Write samples, metrics and figures of ``gen`` (see ``report.write_run_outputs``)."""
    from dsm_common.report import write_run_outputs

    target_sigma = float(sigmas[-1])
    label = f"σ_L = {target_sigma:.3g}" if conditional else f"σ = {target_sigma:.3g}"
    info = dict(info, sample_seconds=gen.sample_seconds, sampler_kind=gen.kind)
    return write_run_outputs(
        run_dir, framework=framework, dataset=dataset, samples=gen.samples, target_sigma=target_sigma,
        noise_label=label, score_fn=score_at_target, trajectory=gen.trajectory, loss_history=loss_history,
        per_level_loss=per_level_loss, comparison=gen.comparison, info=info,
    )


def per_level_noise(n_levels: int, n_points: int, seed: int = 0) -> np.ndarray:
    """Fixed standard normal draws (L, N, 2) float32 for the per-level loss report."""
    return np.random.default_rng(seed).standard_normal((n_levels, n_points, 2)).astype(np.float32)
