"""Runs of the data-parallel parity tests (``test_data_parallel.py``), one process each.

A device count is fixed when a framework starts (JAX's host devices by ``XLA_FLAGS``; a Lightning
DDP run spawns its own processes), so each run here is a fresh process that writes its result
to an ``.npz`` file, and the tests compare the files:

    python -m parity_tests.data_parallel jax-train OUT --devices N [--num-nodes M]
    python -m parity_tests.data_parallel jax-sample OUT --devices N [--num-nodes M] [--weights FILE]
    python -m parity_tests.data_parallel torch-train OUT --devices N [--batches-per-step K] [--batch-size B] [--reduction R]
    python -m parity_tests.data_parallel torch-sample OUT   # under torch.distributed's env:// settings
    python -m parity_tests.data_parallel torch-reference OUT --devices N [--same-noise] [--batch-size B] [--reduction R]

Training: the score SDE (VP) objective, which draws both a time and a noise vector per point,
Adam 1e-3, 300 points in batches of 30, 10 epochs (100 updates), the same seed; the weights
after the run are written. The torch runs also take other batch sizes (uneven slices, a last
batch with fewer points than ranks) and the ``sum`` reduction (with SGD 1e-4, which unlike Adam
would show a wrongly scaled gradient). ``torch-train`` is Lightning's Trainer (DDP over N gloo processes
for N > 1); ``torch-reference`` is a plain torch loop in one process that computes what N ranks
would: every global batch split by ``rank_slice``, rank r's noise from a generator seeded
``rank_noise_seed(seed, r)`` (``--same-noise``: every slice from rank 0's seed, what DDP would compute had each
rank the same stream), the slices' losses weighed by their share of the batch.

Sampling: a network trained for 2000 full-batch updates on one device (``--weights``: the
network a one-device run wrote to ``OUT.weights``, for a multi-process run, which cannot train on
one device), 64 chains, the PC sampler (Euler–Maruyama, 1000 steps) drawing its own noise,
1000 Langevin steps with the noise given, and the probability-flow ODE's log-density of 64 points;
with ``--num-nodes`` the chains span the processes' devices and the first process writes.
``torch-sample``: the torch backend on every rank of a gloo process group (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``; one process without them), a network trained for
1000 full-batch updates in each process alike; 10 000 chains of the PC sampler (Euler–Maruyama,
250 steps, its own noise: each rank draws its own), 64 of the PC sampler with the Langevin corrector (chains
that interact: run whole on every rank), 2000 of the fixed-step probability-flow ODE (Heun, 500
steps, no noise), and the adaptive ODE's log-density of 64 points; rank 0 writes.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

TRAIN = dict(batch_size=30, epochs=10, lr=1e-3, seed=0)  # 100 updates
N_CHAINS, N_STEPS = 64, 1000
TORCH_CHAINS = 10_000  # the torch PC run's chains: enough for the two-sample battery


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


TORCH_OPTIMISERS = {"mean": ("adam", TRAIN["lr"]), "sum": ("sgd", 1e-4)}  # SGD: a wrong weight would show


def _torch_module(reduction: str):
    from dsm_common.config import SDESettings
    from torch_dsm.module import DSMModule

    optimizer, lr = TORCH_OPTIMISERS[reduction]
    return DSMModule(objective="sde", sde=SDESettings(kind="vp"), optimizer=optimizer, lr=lr, reduction=reduction)


def torch_train(out: str, devices: int, batches_per_step: int, batch_size: int, reduction: str) -> None:
    import lightning as L
    import torch

    from torch_dsm.data import DSMDataModule

    torch.set_num_threads(1)
    L.seed_everything(TRAIN["seed"], verbose=False)
    dm = DSMDataModule(batch_size=batch_size, batches_per_step=batches_per_step)
    module = _torch_module(reduction)
    trainer = L.Trainer(max_epochs=TRAIN["epochs"], accelerator="cpu", devices=devices,
                        strategy="ddp" if devices > 1 else "auto", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out + ".run")
    trainer.fit(module, dm)
    if trainer.is_global_zero:
        np.savez(out, devices=np.int32(trainer.world_size), steps=np.int32(trainer.global_step),
                 **_flat(p.detach().numpy() for p in module.model.parameters()))


def torch_reference(out: str, devices: int, same_noise: bool, batch_size: int, reduction: str) -> None:
    import lightning as L
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    from torch_dsm.data import DSMDataModule, rank_slice
    from torch_dsm.losses import OBJECTIVES
    from torch_dsm.module import rank_noise_seed

    torch.set_num_threads(1)
    L.seed_everything(TRAIN["seed"], verbose=False)
    dm = DSMDataModule(batch_size=batch_size)
    module = _torch_module(reduction)
    module.sigmas.copy_(torch.as_tensor(module.methods.noise_levels(dm.data.points), dtype=torch.float32))
    methods = module.methods.resolved(dm.data.points)
    optimizer, lr = TORCH_OPTIMISERS[reduction]
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(module.model.parameters(), lr=lr)
    seed = torch.initial_seed()
    if devices > 1:  # each DDP process re-seeds as it sets up (Lightning's reset_seed), after building the model
        torch.manual_seed(seed)
    gens = [torch.Generator().manual_seed(rank_noise_seed(seed, 0 if same_noise else r)) for r in range(devices)]
    # The epoch's global batches of indices, drawn as a DataLoader draws them (its iterator's seed,
    # then the RandomSampler's, from the default generator), as in every DDP process
    indices = TensorDataset(torch.arange(len(dm.points)))
    loader = DataLoader(indices, sampler=BatchSampler(RandomSampler(indices), batch_size, False), batch_size=None)
    steps = 0
    for _ in range(TRAIN["epochs"]):
        for (batch,) in loader:
            batch = batch.tolist()
            opt.zero_grad()
            loss = 0.0
            for r in range(devices):  # the global batch's loss, slice by slice (an empty slice adds nothing)
                x = dm.points[rank_slice(batch, devices, r)]
                if len(x):
                    part = OBJECTIVES[methods.objective](module.model, x, module.sigmas, methods.settings, reduction,
                                                         rng=gens[r])
                    loss = loss + (part * (len(x) / len(batch)) if reduction == "mean" else part)
            loss.backward()
            opt.step()
            steps += 1
    np.savez(out, devices=np.int32(devices), steps=np.int32(steps),
             **_flat(p.detach().numpy() for p in module.model.parameters()))


def jax_sample(out: str, devices: int, num_nodes: int, weights: str | None) -> None:
    from jax_dsm.trainer import start_processes

    start_processes(num_nodes)  # first: a multi-process run joins before any computation
    import jax
    import jax.numpy as jnp
    from flax import serialization

    from dsm_common.config import SamplerConfig, SDESettings
    from jax_dsm.cli import JaxBackend
    from jax_dsm.data import DSMDataModule
    from jax_dsm.module import DSMModule
    from jax_dsm.trainer import Trainer

    # A network trained briefly on one device (an untrained one's field pushes chains apart)
    module = DSMModule(objective="sde", sde=SDESettings(kind="vp"), optimizer="adam", lr=3e-3, reduction="mean")
    if weights is None:
        trainer = Trainer(max_epochs=2000, default_root_dir=out + ".run", enable_progress_bar=False, logger=False)
        variables = {"params": jax.device_get(trainer.fit(module, DSMDataModule(batch_size=300), seed=0).params)}
        with open(out + ".weights", "wb") as f:
            f.write(serialization.msgpack_serialize(variables))
    else:
        with open(weights, "rb") as f:
            variables = serialization.msgpack_restore(f.read())
        module.setup(DSMDataModule(batch_size=300).data)  # the noise levels, as the Trainer fixes them
    backend = JaxBackend(module.model, variables, module.sigmas, progress=False, sde=module.methods.sde(),
                         devices=devices, num_nodes=num_nodes if num_nodes > 1 else None)
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
    spread_l = len(x_l.sharding.device_set)
    from jax_dsm.trainer import shard_rows

    spread = len(shard_rows(jnp.asarray(x0), backend.mesh).sharding.device_set)  # how JaxBackend places chains
    points = np.random.default_rng(4).standard_normal((N_CHAINS, 2)).astype(np.float32) * 3
    log_p, nfe = backend.likelihood(points, cfg.settings("ode"), seed=5)
    x_l = backend.gather(x_l)
    if jax.process_index() == 0:
        np.savez(out, devices=np.int32(1 if backend.mesh is None else backend.mesh.size),
                 processes=np.int32(jax.process_count()), spread=np.int32(spread_l),
                 backend_spread=np.int32(spread), pc=x_pc, langevin=x_l, log_p=log_p, nfe=np.int32(nfe))


def torch_sample(out: str) -> None:
    import os

    import torch

    from dsm_common.config import SamplerConfig
    from torch_dsm.cli import TorchBackend
    from torch_dsm.data import DSMDataModule
    from torch_dsm.losses import OBJECTIVES

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        torch.distributed.init_process_group("gloo")
    torch.manual_seed(0)
    dm = DSMDataModule(batch_size=300)
    module = _torch_module("mean")
    module.sigmas.copy_(torch.as_tensor(module.methods.noise_levels(dm.data.points), dtype=torch.float32))
    methods = module.methods.resolved(dm.data.points)
    opt = torch.optim.Adam(module.model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(1000):  # the same updates in every process: no collective
        opt.zero_grad()
        OBJECTIVES[methods.objective](module.model, dm.points, module.sigmas, methods.settings, "mean", rng=gen).backward()
        opt.step()
    backend = TorchBackend(module.model, module.sigmas.numpy(), progress=False, threads=1, sde=module.methods.sde(),
                           world_size=world)
    x0 = np.random.default_rng(1).standard_normal((TORCH_CHAINS, 2)).astype(np.float32)
    cfg = SamplerConfig()
    pc = replace(cfg.settings("pc"), num_steps=250, predictor="euler_maruyama", corrector="none")
    corrected = replace(cfg.settings("pc"), num_steps=100)  # reverse diffusion + Langevin
    ode = replace(cfg.settings("ode"), solver="heun", num_steps=500)
    results = {"pc": backend.sample("pc", x0, pc, 0, seed=3)[0],
               "corrected": backend.sample("pc", x0[:64], corrected, 0, seed=3)[0],
               "ode": backend.sample("ode", x0[:2000], ode, 0, seed=3)[0]}
    points = np.random.default_rng(4).standard_normal((N_CHAINS, 2)).astype(np.float32) * 3
    log_p, nfe = backend.likelihood(points, cfg.settings("ode"), seed=5)
    if backend.rank == 0:
        np.savez(out, ranks=np.int32(world), log_p=log_p, nfe=np.int32(nfe),
                 split=np.int32(backend.splits(len(x0), "pc", pc)), **results)
    if world > 1:  # leave the group together: a gloo rank that exits inside it can abort
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


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
    parser.add_argument("run", choices=["jax-train", "jax-sample", "torch-train", "torch-sample", "torch-reference"])
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--batches-per-step", type=int, default=1)
    parser.add_argument("--same-noise", action="store_true")
    parser.add_argument("--batch-size", type=int, default=TRAIN["batch_size"])
    parser.add_argument("--reduction", choices=["mean", "sum"], default="mean")
    parser.add_argument("--weights", default=None, help="jax-sample: the network a one-device run wrote")
    args = parser.parse_args()
    if args.run == "jax-train":
        jax_train(args.out, args.devices, args.num_nodes)
    elif args.run == "jax-sample":
        jax_sample(args.out, args.devices, args.num_nodes, args.weights)
    elif args.run == "torch-sample":
        torch_sample(args.out)
    elif args.run == "torch-train":
        torch_train(args.out, args.devices, args.batches_per_step, args.batch_size, args.reduction)
    else:
        torch_reference(args.out, args.devices, args.same_noise, args.batch_size, args.reduction)


if __name__ == "__main__":
    main()
