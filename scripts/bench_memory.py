"""Peak memory of one Langevin run, in a process of its own (a helper of ``benchmark.py``).

    python scripts/bench_memory.py {jax,torch} CHAINS STEPS HIDDEN KEEP_EVERY [KEEP_EVERY ...]

For each ``KEEP_EVERY``: one untimed warm-up run with the same arguments (compiles, allocates
the working set), then the peak RSS is reset (Linux: ``/proc/self/clear_refs``) and the run is
repeated. Prints one JSON line: a list with, per run, the RSS before it, the growth of the peak
RSS during it, the bytes of the states it returned, and what keeping every state would hold.
Only the framework asked for is imported.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    return 1024 * (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def reset_peak() -> bool:
    """Reset the peak RSS (VmHWM) of this process; False where the OS does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    kb = _status_kb("VmHWM")
    return 1024 * (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def sampler(framework: str, chains: int, hidden: int):
    """``run(steps, keep_every) -> (x, kept)`` as numpy-convertible arrays, waiting for the result."""
    x0 = np.random.default_rng(0).standard_normal((chains, 2)).astype(np.float32)
    if framework == "jax":
        os.environ["JAX_PLATFORMS"] = "cpu"
        import jax
        import jax.numpy as jnp
        from jax.tree_util import Partial

        from jax_dsm.models import ScoreMLP
        from jax_dsm.sampling import langevin

        model = ScoreMLP((hidden, hidden))
        score = Partial(model.apply, model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2))))
        xj = jnp.asarray(x0)

        def run(steps, keep_every):
            return jax.block_until_ready(langevin(score, xj, 0.01, steps, rng=jax.random.PRNGKey(1), keep_every=keep_every))

        return run
    import torch

    from torch_dsm.models import ScoreMLP
    from torch_dsm.sampling import langevin

    if os.environ.get("BENCH_TORCH_THREADS"):  # benchmark.py --torch-threads
        torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))
    torch.manual_seed(0)
    model, xt = ScoreMLP((hidden, hidden)).eval(), torch.from_numpy(x0)

    def run(steps, keep_every):
        return langevin(model, xt, 0.01, steps, keep_every=keep_every, rng=torch.Generator().manual_seed(1))

    return run


def nbytes(a) -> int:
    return 0 if a is None else int(np.asarray(a).nbytes)


def main(argv: list[str]) -> None:
    framework, chains, steps, hidden, *keeps = argv
    chains, steps, hidden = int(chains), int(steps), int(hidden)
    run = sampler(framework, chains, hidden)
    results = []
    for keep_every in map(int, keeps):
        run(steps, keep_every)  # warm-up: compile, allocate the working set
        gc.collect()
        before = rss_bytes()
        resettable = reset_peak()
        x, kept = run(steps, keep_every)
        peak = peak_bytes()
        results.append({
            "framework": framework, "chains": chains, "steps": steps, "hidden": hidden, "keep_every": keep_every,
            "rss_before_bytes": before, "peak_growth_bytes": max(peak - before, 0),
            "returned_bytes": nbytes(x) + nbytes(kept), "all_states_bytes": steps * chains * 2 * 4,
            "peak_source": "VmHWM after clear_refs" if resettable else "peak since process start",
        })
        del x, kept
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
