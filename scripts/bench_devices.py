"""One timed run in a process of its own (a helper of ``benchmark.py``'s devices and whole-job tables).

    python scripts/bench_devices.py jax-train DEVICES EPOCHS        # Trainer.fit, compilation included
    python scripts/bench_devices.py jax-sample DEVICES CHAINS STEPS  # compiled Langevin, cold and warm
    python scripts/bench_devices.py torch-train DEVICES EPOCHS       # Lightning, dsm-torch fit defaults (DDP for 2+)
    python scripts/bench_devices.py torch-sample DEVICES CHAINS STEPS  # the torch backend's Langevin on gloo ranks
    python scripts/bench_devices.py notebook-train EPOCHS           # the notebook's training loop
    python scripts/bench_devices.py notebook-sample CHAINS STEPS    # the notebook's sampler, compilation included
    python scripts/bench_devices.py notebook-job EPOCHS CHAINS STEPS OUT_DIR
    python scripts/bench_devices.py jax-imports                     # what a dsm-jax job imports, and JAX's start

A device count is fixed when a framework starts (JAX's host devices by ``XLA_FLAGS``; DDP
launches its own processes), hence one process a run. The others print one JSON line with
the seconds of the timed part (after the imports, as ``benchmark.py``'s main table times it);
with ``BENCH_COMPILATION_CACHE=1`` the JAX runs use the command line's persistent compilation
cache (``jax_dsm.cli.use_compilation_cache``, in ``JAX_COMPILATION_CACHE_DIR``).
``notebook-job`` is the notebook's code run as a script, for the whole-job rows (timed from the
outside, interpreter start and imports included): the notebook's way of ``notebook_way.py`` (its
imports, training one ``jax.jit`` step per batch fed by a torch ``DataLoader``, sampling one
jitted Langevin step per step with every state kept) on the 300 points, and a scatter plot of
the samples saved as a PNG. ``jax-imports`` is the part of a ``dsm-jax fit`` job that no
optimisation of this project's code can remove (timed from the outside too): the interpreter's
start, the imports of the command line and of what it loads on the way (JAX, Flax, Optax,
jsonargparse, matplotlib), and JAX's start on its CPU device.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _maybe_cache() -> None:
    import os

    if os.environ.get("BENCH_COMPILATION_CACHE") == "1":
        from jax_dsm.cli import use_compilation_cache

        use_compilation_cache()


def jax_train(devices: int, epochs: int) -> dict:
    import tempfile

    import jax

    from jax_dsm.data import DSMDataModule
    from jax_dsm.module import DSMModule
    from jax_dsm.trainer import Trainer

    _maybe_cache()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer = Trainer(max_epochs=epochs, enable_progress_bar=False, default_root_dir=tmp, devices=devices)
        state = trainer.fit(DSMModule(), DSMDataModule())
        jax.block_until_ready(state.params)
        return {"seconds": time.perf_counter() - t0}


def jax_sample(devices: int, chains: int, steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.tree_util import Partial

    from jax_dsm.models import ScoreMLP
    from jax_dsm.sampling import langevin
    from jax_dsm.trainer import device_mesh, replicate, shard_rows

    _maybe_cache()
    mesh = device_mesh(devices, None)
    model = ScoreMLP((256, 256))
    variables = replicate(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2))), mesh)
    x0 = shard_rows(jnp.asarray(np.random.default_rng(0).standard_normal((chains, 2)), jnp.float32), mesh)
    score = Partial(model.apply, variables)
    times = []
    for _ in range(2):  # cold (compilation included), then warm
        t0 = time.perf_counter()
        x, _ = langevin(score, x0, 0.01, steps, rng=jax.random.PRNGKey(1))
        jax.block_until_ready(x)
        times.append(time.perf_counter() - t0)
    return {"cold": times[0], "warm": times[1], "spread": len(x.sharding.device_set)}


def _rank_threads(ranks: int) -> int:
    """torch threads for each of ``ranks`` processes: benchmark.py's count (``BENCH_TORCH_THREADS``,
    1 if unset) shared among them, at least one each, as Lightning shares a CPU's cores among DDP
    processes. More threads than cores in all would have the ranks' threads wait for each other."""
    import os

    return max(1, int(os.environ.get("BENCH_TORCH_THREADS") or 1) // ranks)


def torch_train(devices: int, epochs: int) -> dict | None:
    import logging
    import os
    import tempfile
    import warnings

    import lightning as L
    import torch

    import torch_dsm.cli
    from torch_dsm.data import DSMDataModule
    from torch_dsm.module import DSMModule

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    if os.environ.get("BENCH_TORCH_THREADS"):  # benchmark.py's torch thread count, shared by the ranks
        torch.set_num_threads(_rank_threads(devices))
    L.seed_everything(0, verbose=False)
    root = tempfile.mkdtemp()
    trainer = L.Trainer(**torch_dsm.cli.trainer_defaults(), max_epochs=epochs, accelerator="cpu", devices=devices,
                        strategy="ddp" if devices > 1 else "auto", default_root_dir=root)
    module, dm = DSMModule(), DSMDataModule(**torch_dsm.cli.data_defaults())
    t0 = time.perf_counter()
    trainer.fit(module, dm)  # DDP: the launch of the other process is inside, as a user pays it
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "world_size": trainer.world_size} if trainer.is_global_zero else None


def _torch_sample_rank(rank: int, world: int, chains: int, steps: int, port: int, queue) -> dict:
    import os
    from dataclasses import replace

    import numpy as np
    import torch

    from dsm_common.config import SamplerConfig
    from torch_dsm.cli import TorchBackend
    from torch_dsm.models import ScoreMLP

    threads = _rank_threads(world)
    torch.set_num_threads(threads)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    backend = TorchBackend(ScoreMLP((256, 256)), np.ones(1), progress=False, threads=threads, world_size=world)
    x0 = np.random.default_rng(0).standard_normal((chains, 2)).astype(np.float32)
    settings = replace(SamplerConfig().settings("langevin"), step_size=0.01, n_steps=steps)
    if world > 1:
        torch.distributed.barrier()  # both ranks ready: the time is the sampling's, gather included
    t0 = time.perf_counter()
    x, _ = backend.sample("langevin", x0, settings, 0, seed=1)
    result = {"seconds": time.perf_counter() - t0, "world_size": world, "split": backend.splits(chains)}
    if queue is not None and rank == 0:
        queue.put(result)
    if world > 1:  # leave the group together: a gloo rank that exits inside it can abort
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result


def torch_sample(devices: int, chains: int, steps: int) -> dict:
    """The torch backend's Langevin sampler, its chains split across ``devices`` gloo ranks
    (``torch.multiprocessing`` processes; their start is outside the time)."""
    if devices == 1:
        return _torch_sample_rank(0, 1, chains, steps, 0, None)
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_torch_sample_rank, args=(devices, chains, steps, port, queue), nprocs=devices)
    return queue.get()


def notebook_train(epochs: int) -> dict:
    import numpy as np
    from notebook_way import notebook_train as train

    from dsm_common.datasets import load_dataset

    points = np.asarray(load_dataset("seed_mixture").points)
    t0 = time.perf_counter()
    train(points, epochs)
    return {"seconds": time.perf_counter() - t0}


def notebook_sample(chains: int, steps: int) -> dict:
    """The notebook's sampler (one jitted Langevin step per step, every state kept) on an untrained
    network, compilation included, as ``jax-sample``'s cold run."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from notebook_way import NotebookMLP
    from notebook_way import notebook_sample as sample

    params = NotebookMLP().init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    x0 = np.random.default_rng(0).standard_normal((chains, 2)).astype(np.float32)
    t0 = time.perf_counter()
    sample(params, x0, steps)
    return {"seconds": time.perf_counter() - t0}


def notebook_job(epochs: int, chains: int, steps: int, out_dir: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from notebook_way import notebook_sample, notebook_train

    from dsm_common.datasets import load_dataset

    points = load_dataset("seed_mixture").points  # the 300 points
    state = notebook_train(points, epochs)
    x0 = np.random.default_rng(0).standard_normal((chains, 2)).astype(np.float32)
    samples = np.asarray(notebook_sample({"params": state.params}, x0, steps))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.4, label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=4, label="samples")
    ax.legend()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(out_dir) / "samples.png", dpi=100)


def jax_imports() -> None:
    import flax.serialization  # noqa: F401  (the weights' files)
    import jax
    import jsonargparse  # noqa: F401
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import optax  # noqa: F401

    import jax_dsm.cli  # noqa: F401

    jax.block_until_ready(jax.numpy.zeros(2) + 1)  # JAX's CPU client started, one op run


def main() -> None:
    run, *rest = sys.argv[1:]
    if run == "notebook-job":
        notebook_job(int(rest[0]), int(rest[1]), int(rest[2]), rest[3])
        return
    if run == "jax-imports":
        jax_imports()
        return
    ints = [int(v) for v in rest]
    result = {"jax-train": jax_train, "jax-sample": jax_sample, "torch-train": torch_train,
              "torch-sample": torch_sample, "notebook-train": notebook_train,
              "notebook-sample": notebook_sample}[run](*ints)
    if result is not None:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
