"""Quality against network evaluations (NFE) for every sampler of the project, on the seed mixture.

    python scripts/nfe_study.py                    # exact scores and trained models; writes docs/nfe.md's table and figure
    python scripts/nfe_study.py --quick --out DIR  # a small run (tests), nothing written into docs/

Every registered sampler runs at a ladder of budgets from about 10 to 10 000 NFE per chain:

* ``langevin``: n steps of ε = 0.1 at the smallest level (configs/ncsn.yaml's plain-Langevin comparison);
* ``annealed_langevin``: configs/ncsn.yaml's 20 levels × T steps, ε = 2e-5, final denoising step;
* ``heun`` and ``euler``: configs/edm.yaml's schedule (σ 80 → 0.002, ρ = 7) with N steps.

Each runs once with the exact scores of the seed mixture (what the sampler can do at best: the
score of Υ ∗ N(0, σ² I) at every σ, JAX), and once with each framework's trained model, sampled by
that framework: ``langevin`` and ``annealed_langevin`` on the ``configs/ncsn.yaml`` model,
``heun`` and ``euler`` on the ``configs/edm.yaml`` model (trained here through the command lines
into ``--runs`` unless already there), up to 4001 NFE (annealed Langevin's recommended budget).
Quality, from 10 000 chains: the left mode's weight error |w₁ − ⅓|, the gap mass P(|x₁| < 5),
the worst per-mode standard deviation error, and the energy distance to fresh target draws over
its expectation between two samples of the target of the same size (2 E‖X − X'‖/n). No sampler
here gives a likelihood (that needs the probability-flow ODE's divergence), so no NLL column.
A sampler meets the bars when the weight error is below 0.02, the gap mass at most 0.5 % and
every per-mode standard deviation within 10 % of 1. The script also times each framework's
sampler at its recommended NFE (Heun 39, annealed Langevin 4001) on the trained models.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsm_common.config import (  # noqa: E402
    AnnealedLangevinSettings,
    EulerSettings,
    HeunSettings,
    LangevinSettings,
    SamplerConfig,
    geometric_sigmas,
)
from dsm_common.datasets import largest_pairwise_distance, load_dataset  # noqa: E402
from dsm_common.files import atomic_path, write_text_atomic  # noqa: E402
from dsm_common.metrics import energy_distance, gap_mass, mode_weights, per_mode_moments  # noqa: E402
from dsm_common.mixtures import seed_mixture  # noqa: E402
from dsm_common.registry import SAMPLERS  # noqa: E402

SAMPLER_OBJECTIVE = {"langevin": "ncsn", "annealed_langevin": "ncsn", "heun": "edm", "euler": "edm"}
RECOMMENDED = {"annealed_langevin": AnnealedLangevinSettings(2e-5, 200, True), "heun": HeunSettings(num_steps=20)}
BARS = {"weight": 0.02, "gap": 0.005, "std": 0.10}
TRAINED_CAP = 4001  # NFE: the trained networks run up to annealed Langevin's recommended budget (time)
DOC = ROOT / "docs" / "nfe.md"
FIGURE = ROOT / "docs" / "figures" / "nfe_study.png"
BEGIN, END = "<!-- nfe-study: begin -->", "<!-- nfe-study: end -->"


def ladder(name: str, quick: bool) -> list:
    """The settings of sampler ``name`` at each budget, about 10 to 10 000 NFE (quick: up to ~400)."""
    if name == "langevin":
        steps = [10, 30, 100, 300, 1000, 3000, 10_000]
        return [LangevinSettings(0.1, n) for n in (steps[:4] if quick else steps)]
    if name == "annealed_langevin":
        each = [1, 2, 5, 10, 25, 50, 100, 200, 500]
        return [AnnealedLangevinSettings(2e-5, t, True) for t in (each[:4] if quick else each)]
    cls = HeunSettings if name == "heun" else EulerSettings
    steps = [3, 4, 6, 8, 10, 13, 16, 20, 30, 50, 100, 300, 1000, 5000] if name == "heun" else \
        [5, 10, 20, 40, 80, 160, 320, 1000, 3000, 10_000]
    return [cls(num_steps=n) for n in (steps[:6] if quick else steps)]


@dataclass
class Row:
    source: str  # "exact", "torch", "jax"
    sampler: str
    nfe: int
    weight_error: float
    gap: float
    std_error: float
    energy_ratio: float

    @property
    def meets(self) -> bool:
        return self.weight_error < BARS["weight"] and self.gap <= BARS["gap"] and self.std_error <= BARS["std"]


def grade(x: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(|w₁ − ⅓|, gap mass, worst |std − 1| over modes and axes, energy ratio) of samples (n, 2):
    the ratio is about 1 for samples of the target itself."""
    mix = seed_mixture()
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    w = mode_weights(x, mix)
    stds = [s for m in per_mode_moments(x, mix) if m["count"] > 1 for s in m["std"]]
    std_error = float(np.max(np.abs(np.asarray(stds) - 1))) if stds else float("inf")
    # Energy distance to fresh target draws over its expectation between two independent samples
    # of the target of the same size, 2 E‖X − X'‖ / n for the V-statistic: a stable reference (one
    # second draw's value swings by a factor of ten with its mode counts).
    target = mix.sample(len(x), rng)
    delta = float(cdist(target[:2000], mix.sample(2000, rng)).mean())
    ratio = energy_distance(x, target) / (2 * delta / len(x))
    return float(abs(w[0] - 1 / 3)), gap_mass(x), std_error, float(ratio)


def initial_states(name: str, n: int, seed: int = 0) -> np.ndarray:
    """configs/ncsn.yaml's uniform start on [−20, 20]² (Langevin samplers) or configs/edm.yaml's
    standard normal latents (EDM samplers)."""
    cfg = SamplerConfig(n_chains=n, seed=seed, init="normal" if SAMPLER_OBJECTIVE[name] == "edm" else "uniform",
                        init_scale=1.0 if SAMPLER_OBJECTIVE[name] == "edm" else 20.0)
    return cfg.initial_states(np.random.default_rng(seed))


def levels(objective: str) -> np.ndarray:
    """The model's levels: configs/ncsn.yaml's 20 (σ₁ the data's largest pairwise distance) or EDM's range."""
    if objective == "edm":
        return np.array([80.0, 0.002])
    return geometric_sigmas(largest_pairwise_distance(load_dataset("seed_mixture").points), 0.01, 20)


class ExactBackend:
    """The exact scores of the seed mixture as a σ-conditional network, sampled with jax_dsm."""

    def __init__(self, objective: str):
        import jax_dsm.mixtures as jm

        self.score = jm.mixture_score(seed_mixture())
        self.sigmas = levels(objective)

    def sample(self, name, x0, settings, keep_every, seed):
        import jax
        import jax.numpy as jnp

        from jax_dsm.sampling import SAMPLERS as JS

        x, _ = JS[name](self.score, jnp.asarray(x0), jnp.asarray(self.sigmas, jnp.float32), settings, 0, False,
                        rng=jax.random.PRNGKey(seed))
        return np.asarray(x), None


def trained(framework: str, objective: str, runs: Path, quick: bool):
    """The framework's backend of ``configs/<objective>.yaml`` trained into ``runs`` (trained now if missing)."""
    run = runs / f"{framework}-{objective}"
    weights = run / "weights.safetensors"
    if not weights.is_file():
        config = ROOT / "configs" / f"{objective}.yaml"
        cmd = [str(Path(sys.executable).parent / f"dsm-{framework}"), "fit", "--config", str(config),
               f"--trainer.default_root_dir={run}", "--model.sampler.n_chains=100", "--model.sampler.trajectory_steps=0",
               "--quiet=true", "--overwrite=true"]
        if quick:
            cmd.append("--trainer.max_epochs=100")
        print(f"training {framework} {objective}: {' '.join(cmd[1:])}", file=sys.stderr)
        subprocess.run(cmd, check=True)
    if framework == "torch":
        from torch_dsm.cli import load_backend
    else:
        from jax_dsm.cli import load_backend
    backend, _ = load_backend(str(weights))
    backend.progress = False
    return backend


def study(backend, source: str, names: list[str], n: int, quick: bool, seed: int = 0, cap: int | None = None) -> list[Row]:
    """Every budget of each sampler in ``names`` (up to ``cap`` NFE) on ``backend``, graded."""
    rows = []
    for name in names:
        x0 = initial_states(name, n, seed)
        for settings in ladder(name, quick):
            nfe = SAMPLERS[name].nfe(settings, len(backend.sigmas))
            if cap is not None and nfe > cap:
                continue
            x, _ = backend.sample(name, x0, settings, 0, seed)
            rows.append(Row(source, name, nfe, *grade(x, np.random.default_rng(seed + 1))))
            print(f"{source:>5} {name:>17} NFE {nfe:>6}: " + "  ".join(
                f"{k} {getattr(rows[-1], k):.4f}" for k in ("weight_error", "gap", "std_error", "energy_ratio")),
                file=sys.stderr)
    return rows


def timings(backends: dict, n: int, repeats: int = 3) -> list[tuple[str, str, int, float]]:
    """(framework, sampler, NFE, median seconds after a warm-up run) at each recommended NFE."""
    out = []
    for (framework, objective), backend in backends.items():
        for name, settings in RECOMMENDED.items():
            if SAMPLER_OBJECTIVE[name] != objective:
                continue
            x0 = initial_states(name, n)
            backend.sample(name, x0, settings, 0, 0)  # warm-up (JAX: compilation)
            times = []
            for r in range(repeats):
                t0 = time.perf_counter()
                backend.sample(name, x0, settings, 0, r)
                times.append(time.perf_counter() - t0)
            out.append((framework, name, SAMPLERS[name].nfe(settings, len(backend.sigmas)), float(np.median(times))))
    return out


def first_meeting(rows: list[Row]) -> dict[tuple[str, str], int | None]:
    out: dict[tuple[str, str], int | None] = {}
    for r in rows:
        key = (r.source, r.sampler)
        out.setdefault(key, None)
        if r.meets and out[key] is None:
            out[key] = r.nfe
    return out


def table(rows: list[Row], times: list, n: int) -> str:
    lines = [f"Seed mixture, {n} chains a run; bars: |w₁ − ⅓| < {BARS['weight']}, gap ≤ {BARS['gap']:.1%}, "
             f"per-mode stds within {BARS['std']:.0%} of 1.", "",
             "| source | sampler | first NFE meeting the bars | at the largest NFE: weight error, gap, std error, energy ratio |",
             "|---|---|---:|---|"]
    firsts = first_meeting(rows)
    for (source, sampler), nfe in firsts.items():
        last = [r for r in rows if r.source == source and r.sampler == sampler][-1]
        lines.append(f"| {source} | `{sampler}` | {nfe if nfe is not None else 'not met (to ' + str(last.nfe) + ')'} | "
                     f"NFE {last.nfe}: {last.weight_error:.3f}, {last.gap:.2%}, {last.std_error:.3f}, "
                     f"{last.energy_ratio:.2f} |")
    lines += ["", "Every run (energy ratio: the energy distance to target draws over its expectation between two "
              "samples of the target, 2E‖X − X'‖/n; about 1 for the target itself):", "",
              "| source | sampler | NFE | weight error | gap | std error | energy ratio | meets |",
              "|---|---|---:|---:|---:|---:|---:|:---:|"]
    lines += [f"| {r.source} | `{r.sampler}` | {r.nfe} | {r.weight_error:.3f} | {r.gap:.2%} | {r.std_error:.3f} | "
              f"{r.energy_ratio:.2f} | {'yes' if r.meets else ''} |" for r in rows]
    if times:
        lines += ["", f"Sampling time at the recommended NFE ({n} chains, median of 3 after a warm-up; this machine):", "",
                  "| framework | sampler | NFE | seconds |", "|---|---|---:|---:|"]
        lines += [f"| {f} | `{s}` | {nfe} | {sec:.3f} |" for f, s, nfe, sec in times]
        for fw in sorted({t[0] for t in times}):
            by = {s: sec for f, s, _, sec in times if f == fw}
            if "heun" in by and "annealed_langevin" in by:
                lines.append(f"\n{fw}: annealed Langevin (4001 NFE) takes {by['annealed_langevin'] / by['heun']:.0f}× "
                             "as long as Heun (39 NFE).")
    return "\n".join(lines) + "\n"


def figure(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    styles = {"exact": "-", "torch": "--", "jax": ":"}
    colours = {"langevin": "tab:gray", "annealed_langevin": "tab:blue", "heun": "tab:red", "euler": "tab:orange"}
    for (source, sampler) in first_meeting(rows):
        rs = [r for r in rows if r.source == source and r.sampler == sampler]
        nfe = [r.nfe for r in rs]
        for ax, key in zip(axes, ("weight_error", "gap", "std_error")):
            ax.plot(nfe, [max(getattr(r, key), 1e-4) for r in rs], styles[source], color=colours[sampler], marker="o",
                    markersize=3, label=f"{sampler} ({source})")
    for ax, key, title in zip(axes, ("weight", "gap", "std"), ("|w₁ − ⅓|", "gap mass P(|x₁| < 5)", "worst |std − 1| of a mode")):
        ax.axhline(BARS[key], color="k", lw=0.8, ls="-.", label="bar")
        ax.set(xscale="log", yscale="log", xlabel="network evaluations per chain (NFE)", title=title)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("seed mixture: quality against NFE (solid: exact scores; dashed: torch-trained; dotted: JAX-trained)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1000 chains, budgets up to a few hundred NFE, 100-epoch models")
    p.add_argument("--out", type=Path, default=None, help="folder for nfe.md and nfe_study.png (default: docs/)")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "nfe_study", help="trained models: RUNS/{torch,jax}-{ncsn,edm}")
    p.add_argument("--exact-only", action="store_true", help="skip the trained models")
    args = p.parse_args(argv)
    n = 1000 if args.quick else 10_000
    names = list(SAMPLERS)
    rows = []
    for objective in ("ncsn", "edm"):
        own = [s for s in names if SAMPLER_OBJECTIVE.get(s) == objective]
        rows += study(ExactBackend(objective), "exact", own, n, args.quick)
    times = []
    if not args.exact_only:
        backends = {(fw, obj): trained(fw, obj, args.runs, args.quick) for fw in ("torch", "jax") for obj in ("ncsn", "edm")}
        for (fw, obj), backend in backends.items():
            rows += study(backend, fw, [s for s in names if SAMPLER_OBJECTIVE.get(s) == obj], n, args.quick, cap=TRAINED_CAP)
        times = timings(backends, n)
    rows.sort(key=lambda r: (("exact", "torch", "jax").index(r.source), names.index(r.sampler), r.nfe))
    text = table(rows, times, n)
    print(text)
    if args.out is None:
        doc = DOC.read_text()
        write_text_atomic(DOC, doc[: doc.index(BEGIN) + len(BEGIN)] + "\n" + text + doc[doc.index(END):])
        figure(rows, FIGURE)
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out / "nfe.md", text)
        figure(rows, args.out / "nfe_study.png")
        write_text_atomic(args.out / "rows.json", json.dumps([r.__dict__ for r in rows], indent=1))


if __name__ == "__main__":
    main()
