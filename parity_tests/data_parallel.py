"""Runs of the data-parallel parity tests (``test_data_parallel.py``), one process each.

A device count is fixed when a framework starts (JAX's host devices by ``XLA_FLAGS``; a Lightning
DDP run spawns its own processes), so each run here is a fresh process that writes its result
to an ``.npz`` file, and the tests compare the files:

    python -m parity_tests.data_parallel jax-train OUT --devices N [--num-nodes M]
    python -m parity_tests.data_parallel jax-sample OUT --devices N
    python -m parity_tests.data_parallel torch-train OUT --devices N

Training: the score SDE (VP) objective, which draws both a time and a noise vector per point,
Adam 1e-3, 300 points in batches of 30, 10 epochs (100 updates), the same seed; the weights
after the run are written. Sampling: a network trained for 2000 full-batch updates on one device (the
same weights on every run), 64 chains, the PC sampler (Euler–Maruyama, 1000 steps) drawing its own noise, and
1000 Langevin steps with the noise given.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

TRAIN = dict(batch_size=30, epochs=10, lr=1e-3, seed=0)  # 100 updates
N_CHAINS, N_STEPS = 64, 1000


def _flat(leaves) -> dict[str, np.ndarray]:
    return {f"w{i}": np.asarray(v, np.float32) for i, v in enumerate(leaves)}


def jax_train(out: str, devices: int, num_nodes: int) -> None:
    from jax_dsm.trainer import Trainer  # first: a multi-process run joins before any computation

    trainer = Trainer(max_epochs=TRAIN["epochs"], default_root_dir=out + ".run", enable_progress_bar=False,
                      logger=False, devices=devices, num_nodes=num_nodes)
    import jax

    from dsm_common.config import SDESettings
    from jax_dsm.data import DSMDataModule
    from jax_dsm.module import DSMModule

    dm = DSMDataModule(batch_size=TRAIN["batch_size"])
    module = DSMModule(objective="sde", sde=SDESettings(kind="vp"), optimizer="adam", lr=TRAIN["lr"],
                       reduction="mean")
    state = trainer.fit(module, dm, seed=TRAIN["seed"])
    params = jax.device_get(state.params)
    sharding = state.params["dense_0"]["kernel"].sharding
    if trainer.is_global_zero:
        np.savez(out, devices=np.int32(len(sharding.device_set)), steps=np.int32(int(state.step)),
                 **_flat(jax.tree_util.tree_leaves(params)))


def jax_sample(out: str, devices: int) -> None:
    import jax

    from dsm_common.config import SamplerConfig, SDESettings
    from jax_dsm.cli import JaxBackend
    from jax_dsm.data import DSMDataModule
    from jax_dsm.module import DSMModule
    from jax_dsm.trainer import Trainer

    # A network trained briefly on one device (an untrained one's field pushes chains apart)
    module = DSMModule(objective="sde", sde=SDESettings(kind="vp"), optimizer="adam", lr=3e-3, reduction="mean")
    trainer = Trainer(max_epochs=2000, default_root_dir=out + ".run", enable_progress_bar=False, logger=False)
    variables = {"params": jax.device_get(trainer.fit(module, DSMDataModule(batch_size=300), seed=0).params)}
    backend = JaxBackend(module.model, variables, module.sigmas, progress=False, sde=module.methods.sde(),
                         devices=devices)
    x0 = np.random.default_rng(1).standard_normal((N_CHAINS, 2)).astype(np.float32)
    cfg = SamplerConfig()
    pc = replace(cfg.settings("pc"), num_steps=N_STEPS, predictor="euler_maruyama", corrector="none")
    x_pc, _ = backend.sample("pc", x0, pc, 0, seed=3)

    from jax.tree_util import Partial

    from jax_dsm.sampling import langevin

    noise = np.random.default_rng(2).standard_normal((N_STEPS, N_CHAINS, 2)).astype(np.float32)
    score = backend._score()
    x_l = langevin(Partial(_at_sigma, score), backend_rows(backend, x0), 1e-3, N_STEPS,
                   noise=backend_rows(backend, noise, axis=1))[0]
    np.savez(out, devices=np.int32(1 if backend.mesh is None else backend.mesh.size),
             spread=np.int32(len(x_l.sharding.device_set)), pc=np.asarray(x_pc), langevin=np.asarray(x_l))


def _at_sigma(score, x):
    import jax.numpy as jnp

    return score(x, jnp.full(x.shape[:1], 0.1, x.dtype))


def backend_rows(backend, x: np.ndarray, axis: int = 0):
    """``x`` split along ``axis`` (the chains) across the backend's devices, as its samplers do."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    if backend.mesh is None:
        return jax.numpy.asarray(x)
    spec = [None] * np.ndim(x)
    spec[axis] = "data"
    return jax.device_put(x, NamedSharding(backend.mesh, P(*spec)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", choices=["jax-train", "jax-sample"])
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--num-nodes", type=int, default=1)
    args = parser.parse_args()
    if args.run == "jax-train":
        jax_train(args.out, args.devices, args.num_nodes)
    else:
        jax_sample(args.out, args.devices)


if __name__ == "__main__":
    main()
