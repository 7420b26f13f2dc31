"""Regenerate the README's figures (``docs/figures/*.png``) from the code as it is.

    python scripts/make_figures.py              # full configs (JAX side: about 3 minutes on 2 cores)
    python scripts/make_figures.py --quick --out /tmp/figs   # tiny runs: checks the script works

Three runs of ``dsm-jax fit``, each as a user would start it: ``configs/seed.yaml`` (single-σ DSM
and Langevin: the notebook's recipe and its failure in the gap), ``configs/ncsn.yaml`` (the
multi-scale cure) and ``configs/sde_vp.yaml`` (a score SDE). Their figures are copied under
stable names:

* ``seed_samples.png``: the recipe's samples over the noised target;
* ``seed_trajectory.png``: one Langevin chain from the origin, coloured by step;
* ``ncsn_comparison.png``: plain Langevin against annealed Langevin on the same NCSN model;
* ``ncsn_score_field.png``: the learned score beside the exact one at three noise levels;
* ``sde_reverse_process.png``: the VP SDE's chains at five times from the prior to t_ε;
* ``sde_pc_vs_ode.png``: the probability-flow ODE against the PC sampler on the same model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {
    ("seed", "samples.png"): "seed_samples.png",
    ("seed", "trajectory.png"): "seed_trajectory.png",
    ("ncsn", "sampler_comparison.png"): "ncsn_comparison.png",
    ("ncsn", "score_field.png"): "ncsn_score_field.png",
    ("sde_vp", "reverse_process.png"): "sde_reverse_process.png",
    ("sde_vp", "sampler_comparison.png"): "sde_pc_vs_ode.png",
}
QUICK = {
    "seed": ["--trainer.max_epochs=3", "--model.sampler.n_chains=50", "--model.sampler.langevin.n_steps=50",
             "--model.sampler.trajectory_steps=500", "--model.sampler.trajectory_keep_every=10"],
    "ncsn": ["--trainer.max_epochs=3", "--model.sampler.n_chains=50", "--model.sampler.annealed_langevin.n_steps_each=5",
             "--model.sampler.trajectory_steps=200", "--model.sampler.trajectory_keep_every=5"],
    "sde_vp": ["--trainer.max_epochs=3", "--model.sampler.n_chains=50", "--model.sampler.pc.num_steps=20",
               "--model.sampler.nll_points=20", "--model.sampler.ode.rtol=1e-3", "--model.sampler.ode.atol=1e-3",
               "--model.sampler.trajectory_steps=0"],
}
# Full size: the configs as shipped, with the NCSN run's chains cut to 1000 (a readable figure).
FULL = {"seed": [], "ncsn": ["--model.sampler.n_chains=1000"], "sde_vp": ["--model.sampler.trajectory_steps=0"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "figures"), help="folder of the figures")
    p.add_argument("--quick", action="store_true", help="tiny runs (the figures only show that it works)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = QUICK if args.quick else FULL
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory(prefix="dsm-figures-") as work:
        for name in FULL:
            run = Path(work) / name
            cmd = [sys.executable, "-m", "jax_dsm.cli", "fit", "--config", str(ROOT / "configs" / f"{name}.yaml"),
                   f"--trainer.default_root_dir={run}", "--trainer.enable_progress_bar=false", *extra[name]]
            print(" ".join(cmd[2:]), flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT, env=env)
        for (name, src), dst in FIGURES.items():
            shutil.copyfile(Path(work) / name / src, out / dst)
            print(f"{out / dst}")


if __name__ == "__main__":
    main()
