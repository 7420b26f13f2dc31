"""scripts/nfe_study.py at its quick size with exact scores: every sampler at its ladder of
budgets, the NFE each row reports is the registry's, and a row re-computed here independently
(the sampler called directly, the metrics by hand) matches the script's."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from conftest import REPO, SUBPROCESS_ENV, is_png

from dsm_common.config import HeunSettings, SamplerConfig
from dsm_common.metrics import gap_mass, mode_weights
from dsm_common.mixtures import seed_mixture


def test_quick_exact_study(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "nfe_study.py"), "--quick", "--exact-only", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600, env=SUBPROCESS_ENV, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert {r["sampler"] for r in rows} == {"langevin", "annealed_langevin", "heun", "euler"}
    nfe = {(r["sampler"], r["nfe"]) for r in rows}
    assert ("heun", 2 * 13 - 1) in nfe and ("annealed_langevin", 20 * 10 + 1) in nfe and ("euler", 160) in nfe
    assert is_png(tmp_path / "nfe_study.png")
    table = (tmp_path / "nfe.md").read_text()
    assert "| exact | `heun` |" in table and "first NFE meeting the bars" in table

    # Heun, 13 steps, exact scores, the script's 1000 standard normal latents (seed 0): again, directly.
    x0 = SamplerConfig(n_chains=1000, init="normal", init_scale=1.0, seed=0).initial_states(np.random.default_rng(0))
    import jax_dsm.mixtures as jm
    from jax_dsm.sampling import run_heun

    x, _ = run_heun(jm.mixture_score(seed_mixture()), jnp.asarray(x0), jnp.asarray([80.0, 0.002]),
                    HeunSettings(num_steps=13), rng=jax.random.PRNGKey(0))
    x = np.asarray(x, np.float64)
    row = next(r for r in rows if r["sampler"] == "heun" and r["nfe"] == 25)
    assert row["weight_error"] == abs(mode_weights(x, seed_mixture())[0] - 1 / 3)
    assert row["gap"] == gap_mass(x)
    # Plain Langevin splits the chains between the modes by where they start: it never meets the bars.
    assert all(r["weight_error"] > 0.1 for r in rows if r["sampler"] == "langevin")
