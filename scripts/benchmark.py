"""Speed of the reference recipe (docs/method.md §1) in every way this project offers, side by side.

    python scripts/benchmark.py                        # full recipe, 5 repeats after 1 warm-up
    python scripts/benchmark.py --scaling --scaling-png scaling.png --out table.md
    python scripts/benchmark.py --only sample --steps 2000 --repeats 3    # a quick look
    python scripts/benchmark.py --quick                # tiny sizes (the smoke test runs this)

One invocation, one machine, one process (plus one small process per framework for the memory
check), CPU only (JAX_PLATFORMS=cpu, Lightning accelerator="cpu"). Following docs/speed.md it prints
Markdown tables of medians over ``--repeats`` rounds after ``--warmup`` untimed rounds (the rows
of a task take turns within each round, so a drifting machine skews no ratio), ratios to
the notebook's way measured in the same run, and the fraction of the arithmetic ceiling (MLP
FLOPs over the float32 matmul rate of numpy, measured here). Every row says whether JAX
compilation is inside its time; the compile column is measured on its own (trace, lower and
XLA compile, after ``jax.clear_caches()``).

Rows of the main table (training: ``--epochs`` epochs of batch 8 on the 300-point seed mixture,
38 steps an epoch, the last of 4 points; sampling: ``--chains`` chains x ``--steps`` steps, eps 0.01):

- notebook's way: a Flax MLP and ``optax.sgd``, one ``jax.jit`` step per batch fed by a torch
  ``DataLoader(shuffle=True)``, a key split in Python each step; one jitted Langevin step per
  step, called from Python, every state kept in a list (as the notebook does). Cold: the caches
  are cleared before each repeat, so its compilation is included, as in a fresh notebook.
- jax_dsm Trainer.fit: ``jax_dsm.trainer.Trainer(...).fit(DSMModule(), DSMDataModule())`` as
  shipped (compiled scans, a checkpoint per chunk), cold (compilation included).
- jax_dsm compiled loop only: the same ``make_train_chunk`` calls, already compiled, no checkpoints.
- Lightning, dsm-torch fit defaults: ``lightning.Trainer(**torch_dsm.cli.trainer_defaults())``
  with its progress bar (its output goes to /dev/null, its cost stays) on
  ``DSMDataModule(**torch_dsm.cli.data_defaults())`` (64 mini-batches a Lightning step): what
  ``dsm-torch fit`` runs, and the settings the README recommends.
- Lightning, one mini-batch per step: the same with ``batches_per_step=1``, Lightning's usual loop.
- plain torch loop: randperm each epoch, index batches of 8, ``torch_dsm.losses.dsm_loss``, SGD.
- jax_dsm langevin cold / warm: ``jax_dsm.sampling.langevin`` with and without compilation.
- torch_dsm langevin: ``torch_dsm.sampling.langevin``, eager.

Two more tables run each measurement in a fresh process (scripts/bench_devices.py): one device
against two (JAX's ``Trainer.fit`` and compiled Langevin on 1 and 2 XLA host devices, Lightning on
1 process and DDP on 2, the torch backend's Langevin on 1 process and 2 gloo ranks, beside the
notebook's way in fresh processes too), and training, sampling and whole jobs with JAX's
persistent compilation cache cold and warm (the whole jobs: the notebook's code as a script
against ``dsm-jax fit`` and ``dsm-torch fit`` on configs/seed.yaml without the one-chain trajectory
demo, which the notebook's job does not compute, interpreter start, imports and outputs included,
and a process that only imports what ``dsm-jax fit`` imports). With the main table, that gives the
floor of a ``dsm-jax`` job on the machine: the imports, the compiled training loop and the warm
sampler, nothing else; and a second floor with the start-up that ``Trainer.fit`` and the sampler
still pay in a fresh process with a warm compilation cache.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ["JAX_PLATFORMS"] = "cpu"  # CPU benchmark: set before jax is imported
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import flax
import jax
import jax.numpy as jnp
import lightning
import numpy as np
import optax
import torch
from jax.tree_util import Partial
from notebook_way import (  # the notebook's way (scripts/notebook_way.py), also the whole-job script's
    BATCH,
    EPS,
    LR,
    SIGMA,
    NotebookMLP,
    notebook_langevin_step,
    notebook_sample,
    notebook_state,
    notebook_train,
    notebook_train_step,
)

import jax_dsm.sampling
import torch_dsm.cli
from dsm_common.datasets import load_dataset
from jax_dsm.data import DSMDataModule as JaxDataModule
from jax_dsm.models import ScoreMLP as JaxScoreMLP
from jax_dsm.module import DSMModule as JaxDSMModule
from jax_dsm.sampling import chunk_length
from jax_dsm.sampling import langevin as jax_langevin
from jax_dsm.trainer import Trainer as JaxTrainer
from jax_dsm.trainer import make_train_chunk
from torch_dsm.data import DSMDataModule as TorchDataModule
from torch_dsm.losses import dsm_loss as torch_dsm_loss
from torch_dsm.models import ScoreMLP as TorchScoreMLP
from torch_dsm.module import DSMModule as TorchDSMModule
from torch_dsm.sampling import langevin as torch_langevin

HIDDEN = (256, 256)  # the recipe's widths (docs/method.md §1)
NOTEBOOK_SECONDS = {"train": 12.5, "sample": 2.7}  # docs/method.md §1: the unchanged notebook, 2-core CPU

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- measuring


def timeit(fn, repeats: int, warmup: int, setup=None) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls.

    ``setup()`` runs, untimed, before every call; ``fn`` must wait for its results itself.
    """
    return timeit_rounds([("fn", None, fn, setup)], repeats, warmup)["fn"]


def timeit_rounds(cases, repeats: int, warmup: int) -> dict[str, float]:
    """Median wall time (s) of each case over ``repeats`` rounds after ``warmup`` untimed rounds.

    ``cases``: ``(name, compile, fn, setup)``; ``setup()`` runs untimed before each call of
    ``fn``, which must wait for its results itself. The cases take turns within every round, so
    a slow drift of a shared machine's speed hits every row alike instead of skewing the ratios.
    """
    times: dict[str, list[float]] = {name: [] for name, *_ in cases}
    for i in range(warmup + repeats):
        for name, _, fn, setup in cases:
            if setup is not None:
                setup()
            gc.collect()
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[name].append(dt)
    return {name: statistics.median(t) for name, t in times.items()}


def mlp_flops(hidden=HIDDEN, dim: int = 2) -> int:
    """Multiply-adds x 2 of one forward pass of the score MLP on one point (biases, ReLU ignored)."""
    widths = [dim, *hidden, dim]
    return 2 * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def train_flops(points: int, hidden=HIDDEN) -> float:
    """A training step on ``points`` points: forward + backward ≈ 3 forward passes."""
    return 3.0 * mlp_flops(hidden) * points


def peak_gflops(n: int, repeats: int) -> float:
    """float32 matmul rate of numpy on this machine (its BLAS, all its threads)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return 2 * n**3 / timeit(lambda: a @ b, repeats, warmup=1) / 1e9


def clear_jax_caches() -> None:
    """Forget every compiled JAX function: the next call compiles as in a fresh process."""
    jax.clear_caches()


def time_compile(lower) -> float:
    """Seconds to trace, lower and compile, from empty caches: ``lower()`` returns a ``Lowered``."""
    clear_jax_caches()
    t0 = time.perf_counter()
    lower().compile()
    return time.perf_counter() - t0


@contextlib.contextmanager
def silenced():
    """Send stdout/stderr (Lightning's progress bar and messages) to /dev/null; the cost stays."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield


@dataclass
class Row:
    task: str  # "train" or "sample"
    method: str
    compile: str  # "included", "excluded" or "eager" (torch: nothing to compile)
    total_s: float  # median
    compile_s: float | None  # measured on its own
    steps: int  # optimiser steps, or Langevin steps
    flops: float  # useful arithmetic of the whole run


# ----------------------------------------------------------------------------- the notebook's way


def notebook_train_compile_s(points: np.ndarray) -> float:
    """Both shapes the notebook compiles: full batches of 8 and the short last batch."""
    state, key = notebook_state(), jax.random.PRNGKey(0)
    shapes = sorted({BATCH, len(points) % BATCH} - {0}, reverse=True)
    return time_compile(lambda: notebook_train_step.lower(state, jnp.zeros((shapes[0], 2)), key)) + sum(
        time_compile(lambda s=s: notebook_train_step.lower(state, jnp.zeros((s, 2)), key)) for s in shapes[1:]
    )


# ----------------------------------------------------------------------------- jax_dsm


def jax_dsm_fit(epochs: int, workdir: str) -> None:
    trainer = JaxTrainer(max_epochs=epochs, enable_progress_bar=False, default_root_dir=tempfile.mkdtemp(dir=workdir))
    state = trainer.fit(JaxDSMModule(), JaxDataModule())
    jax.block_until_ready(state.params)


def jax_dsm_loop(epochs: int, batch: int = BATCH, hidden=HIDDEN, n_points: int | None = None):
    """``(run, lower, steps)``: the compiled training loop of ``Trainer.fit`` (same chunks), no
    checkpoints; ``run()`` trains from the same initial state each call."""
    module, data = JaxDSMModule(hidden_dims=list(hidden)), JaxDataModule(batch_size=batch, n_points=n_points)
    module.setup(data.data)
    init_key, key = jax.random.split(jax.random.PRNGKey(0))
    state0 = module.init_state(init_key)
    sigmas = jnp.asarray(module.sigmas, jnp.float32)
    chunk = chunk_length(epochs, 0, 20)  # as Trainer.fit picks it
    train_chunk = make_train_chunk(module, len(data.data), batch, True)

    def run():
        state, k = state0, key
        for _ in range(epochs // chunk):
            k, sub = jax.random.split(k)
            state, losses = train_chunk(state, sub, data.points, sigmas, chunk)
            np.asarray(losses)  # Trainer.fit reads the losses of each chunk
        jax.block_until_ready(state.params)

    def lower():
        return train_chunk.lower(state0, key, data.points, sigmas, n_epochs=chunk)

    return run, lower, epochs * data.steps_per_epoch


def jax_sampler(hidden=HIDDEN):
    model = JaxScoreMLP(tuple(hidden))
    return Partial(model.apply, model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2))))


def jax_dsm_sample(score, x0, steps: int, keep_every: int = 0):
    x, kept = jax_langevin(score, x0, EPS, steps, keep_every, rng=jax.random.PRNGKey(1))
    return jax.block_until_ready((x, kept))


def jax_dsm_sample_compile_s(score, x0, steps: int) -> float | None:
    """Compile time of the scan ``langevin`` runs (a private function of jax_dsm.sampling);
    None when it cannot be reached, and the caller falls back on cold minus warm."""
    scan = getattr(jax_dsm.sampling, "_langevin_scan", None)
    try:
        return time_compile(lambda: scan.lower(score, x0, jnp.asarray(EPS, x0.dtype), steps, 0, key=jax.random.PRNGKey(1)))
    except (AttributeError, TypeError):
        return None


# ----------------------------------------------------------------------------- torch


def lightning_fit(epochs: int, workdir: str, trainer_kwargs: dict, module_kwargs: dict, data_kwargs: dict) -> None:
    """``Trainer.fit`` as ``dsm-torch fit`` runs it: ``logger=True`` becomes its CSVLogger in the
    run folder and, unless a progress bar is given, its ``EpochProgressBar`` (into /dev/null)."""
    kwargs = {**trainer_kwargs, "max_epochs": epochs, "default_root_dir": tempfile.mkdtemp(dir=workdir)}
    kwargs.setdefault("accelerator", "cpu")
    kwargs, extra = torch_dsm.cli.run_logger_and_bar(kwargs, [])
    kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), *extra]
    with silenced():
        trainer = lightning.Trainer(**kwargs)
        trainer.fit(TorchDSMModule(**module_kwargs), TorchDataModule(**data_kwargs))


def plain_torch_train(points: torch.Tensor, epochs: int, batch: int = BATCH, hidden=HIDDEN, seed: int = 0) -> None:
    torch.manual_seed(seed)
    model = TorchScoreMLP(hidden)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    n, history = len(points), []
    for _ in range(epochs):
        perm, total = torch.randperm(n), torch.zeros(())
        for i in range(0, n, batch):
            loss = torch_dsm_loss(model, points[perm[i : i + batch]], SIGMA, rng=torch.default_generator)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach()
        history.append(total.item() / math.ceil(n / batch))  # the epoch's loss, as DSMModule logs it


def torch_sampler(hidden=HIDDEN):
    torch.manual_seed(0)
    return TorchScoreMLP(hidden).eval()


def torch_dsm_sample(model, x0: torch.Tensor, steps: int, keep_every: int = 0):
    return torch_langevin(model, x0, EPS, steps, keep_every, rng=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- the main table


def bench_train(args, workdir: str) -> list[Row]:
    points_np = load_dataset("seed_mixture").points  # (300, 2) float32
    points = torch.from_numpy(points_np)
    steps = args.epochs * math.ceil(len(points_np) / BATCH)
    flops = args.epochs * train_flops(len(points_np))
    run, lower, _ = jax_dsm_loop(args.epochs)
    defaults = torch_dsm.cli.data_defaults()
    threads = torch.get_num_threads()

    def plain_one_thread():  # does torch's intra-op parallelism help or hurt batch-8 steps here?
        torch.set_num_threads(1)
        try:
            plain_torch_train(points, args.epochs)
        finally:
            torch.set_num_threads(threads)

    notebook = "notebook's way (jit step per batch, torch DataLoader)"
    cases = [
        (notebook, "included", lambda: notebook_train(points_np, args.epochs), clear_jax_caches),
        ("jax_dsm Trainer.fit", "included", lambda: jax_dsm_fit(args.epochs, workdir), clear_jax_caches),
        ("jax_dsm compiled loop only", "excluded", run, run),  # set-up: one untimed run compiles it
        ("Lightning, dsm-torch fit defaults", "eager",
         lambda: lightning_fit(args.epochs, workdir, torch_dsm.cli.trainer_defaults(), {}, defaults), None),
        ("Lightning, one mini-batch per step", "eager",
         lambda: lightning_fit(args.epochs, workdir, torch_dsm.cli.trainer_defaults(), {},
                               {**defaults, "batches_per_step": 1}), None),
        ("plain torch loop", "eager", lambda: plain_torch_train(points, args.epochs), None),
    ]
    if threads > 1:
        cases.append(("plain torch loop, 1 thread", "eager", plain_one_thread, None))
    medians = timeit_rounds(cases, args.repeats, args.warmup)
    compiles = {notebook: notebook_train_compile_s(points_np), "jax_dsm Trainer.fit": time_compile(lower)}
    rows = []
    for method, compile, *_ in cases:
        rows.append(Row("train", method, compile, medians[method], compiles.get(method), steps, flops))
        log(f"  train  {method:<45} {medians[method]:8.3f} s"
            + (f"  (compile {compiles[method]:.3f} s)" if method in compiles else ""))
    return rows


def bench_sample(args) -> list[Row]:
    x0 = np.random.default_rng(0).standard_normal((args.chains, 2)).astype(np.float32)
    flops = float(mlp_flops()) * args.chains * args.steps
    params = NotebookMLP().init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    xj = jnp.asarray(x0)
    score = jax_sampler()
    model, xt = torch_sampler(), torch.from_numpy(x0)

    def jax_run():
        jax_dsm_sample(score, xj, args.steps)

    notebook = "notebook's way (jit step per Langevin step)"
    cases = [
        (notebook, "included", lambda: notebook_sample(params, x0, args.steps), clear_jax_caches),
        ("jax_dsm langevin, cold", "included", jax_run, clear_jax_caches),
        ("jax_dsm langevin, warm", "excluded", jax_run, jax_run),  # set-up: one untimed run compiles it
        ("torch_dsm langevin (eager)", "eager", lambda: torch_dsm_sample(model, xt, args.steps), None),
    ]
    medians = timeit_rounds(cases, args.repeats, args.warmup)
    cold, warm = medians["jax_dsm langevin, cold"], medians["jax_dsm langevin, warm"]
    compile_s = jax_dsm_sample_compile_s(score, xj, args.steps)
    compiles = {
        notebook: time_compile(lambda: notebook_langevin_step.lower(params, xj, jax.random.PRNGKey(0))),
        "jax_dsm langevin, cold": max(cold - warm, 0.0) if compile_s is None else compile_s,
    }
    rows = []
    for method, compile, *_ in cases:
        rows.append(Row("sample", method, compile, medians[method], compiles.get(method), args.steps, flops))
        log(f"  sample {method:<45} {medians[method]:8.3f} s"
            + (f"  (compile {compiles[method]:.3f} s)" if method in compiles else ""))
    return rows


@contextlib.contextmanager
def busy_machine(n: int):
    """``n`` processes spinning on the CPU for the block: a machine shared with other work."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them start
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def bench_threads(args) -> str:
    """torch's intra-op thread count, by work size, on a quiet and on a busy machine.

    Rows: ``dsm-torch fit``'s training (Lightning with its defaults, batch 8, ``--thread-epochs``
    epochs) and ``torch_dsm.sampling.langevin`` at several chain counts (``--thread-steps`` steps),
    each at one thread and at torch's default (the machine's cores), in alternation. "busy": as many
    spinning processes as cores run meanwhile. The last column is what ``dsm-torch`` picks
    (``torch_dsm.cli.choose_threads``)."""
    default = torch_dsm.cli.DEFAULT_THREADS
    points = load_dataset("seed_mixture").points
    model = torch_sampler()
    defaults = torch_dsm.cli.data_defaults()

    def at(threads, fn):
        def run():
            torch.set_num_threads(threads)
            try:
                fn()
            finally:
                torch.set_num_threads(default)
        return run

    work = [("train, batch 8 (Lightning, dsm-torch defaults)", 8,
             lambda: lightning_fit(args.thread_epochs, tempfile.mkdtemp(), torch_dsm.cli.trainer_defaults(), {}, defaults))]
    for chains in args.thread_chains:
        x0 = torch.from_numpy(np.random.default_rng(0).standard_normal((chains, 2)).astype(np.float32))
        work.append((f"sample, {chains} chains", chains, lambda x0=x0: torch_dsm_sample(model, x0, args.thread_steps)))
    rows = []
    for load in ("quiet", "busy"):
        log(f"  threads: {load} machine ...")
        with busy_machine(os.cpu_count() or 1) if load == "busy" else contextlib.nullcontext():
            for name, size, fn in work:
                cases = [("1", "eager", at(1, fn), None), (str(default), "eager", at(default, fn), None)]
                medians = timeit_rounds(cases, args.repeats, args.warmup)
                one, many = medians["1"], medians[str(default)]
                rows.append([load, name, f"{one:.3f}", f"{many:.3f}", f"{many / one:.2f}",
                             str(torch_dsm.cli.choose_threads(size))])
    del points
    return markdown_table(["machine", "work", "1 thread s", f"{default} threads s", f"{default} threads / 1",
                           "dsm-torch picks"], rows)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


MAIN_HEADER = ["task", "method", "compile", "total s (median)", "compile s", "µs/step", "× notebook", "% of ceiling"]


def main_table(rows: list[Row], peak: float) -> str:
    """Ratios are notebook time / row time for the same task (above 1: faster than the notebook)."""
    base = {r.task: r.total_s for r in rows if r.method.startswith("notebook")}
    cells = []
    for r in rows:
        cells.append([
            r.task, r.method, r.compile, f"{r.total_s:.3f}", "—" if r.compile_s is None else f"{r.compile_s:.3f}",
            f"{r.total_s / r.steps * 1e6:.1f}", f"{base[r.task] / r.total_s:.2f}" if r.task in base else "—",
            f"{100 * r.flops / r.total_s / (peak * 1e9):.2f}",
        ])
    return markdown_table(MAIN_HEADER, cells)


# ----------------------------------------------------------------------------- memory


MEMORY_HEADER = ["framework", "chains", "steps", "keep_every", "hidden", "returned MB", "all states MB",
                 "RSS before MB", "peak growth MB", "growth / all states"]


def bench_memory(args) -> str:
    """Each framework in its own process (scripts/bench_memory.py): peak RSS of a sampler run."""
    keeps = [0] + ([args.mem_steps // 10] if args.mem_steps >= 10 else [])
    cells = []
    for framework in ("jax", "torch"):
        cmd = [sys.executable, str(Path(__file__).with_name("bench_memory.py")), framework, str(args.mem_chains),
               str(args.mem_steps), str(args.mem_hidden), *map(str, keeps)]
        # A fixed mmap threshold (32 MiB, glibc's adaptive maximum) turns off the adaptive one:
        # blocks of 32 MiB and more are always mmapped and given back when freed, so the RSS before
        # a run holds none of the warm-up's large blocks. (Smaller blocks, e.g. one step's
        # activations, may be reused from the heap: the growth measures the large allocations.)
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "BENCH_TORCH_THREADS": str(torch.get_num_threads())}
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
        for res in json.loads(out.strip().splitlines()[-1]):
            mb = 1 / 2**20
            cells.append([
                framework, str(res["chains"]), str(res["steps"]), str(res["keep_every"]), str(res["hidden"]),
                f"{res['returned_bytes'] * mb:.1f}", f"{res['all_states_bytes'] * mb:.1f}",
                f"{res['rss_before_bytes'] * mb:.1f}", f"{res['peak_growth_bytes'] * mb:.1f}",
                f"{res['peak_growth_bytes'] / res['all_states_bytes']:.3f}",
            ])
            log(f"  memory {framework} keep_every={res['keep_every']}: peak growth {res['peak_growth_bytes'] * mb:.1f} MB"
                f" (all states {res['all_states_bytes'] * mb:.1f} MB; peak from {res['peak_source']})")
    return markdown_table(MEMORY_HEADER, cells)


# ----------------------------------------------------------------------------- devices and whole jobs

DEVICES_HEADER = ["work", "method", "devices", "compile", "total s (median)", "× 1 device", "× notebook"]
JOB_HEADER = ["job", "total s (median)", "× notebook"]
JAX_IMPORTS = ("job: a process that only imports what dsm-jax fit imports (JAX, Flax, Optax, jsonargparse, "
               "matplotlib) and starts JAX")


def _worker(*args: str, devices: int = 1) -> dict:
    """One run of scripts/bench_devices.py in a fresh process; its JSON line."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}" if devices > 1 else "",
           "BENCH_TORCH_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, str(Path(__file__).with_name("bench_devices.py")), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_devices(args) -> str:
    """One and two devices on both sides, each run a fresh process (scripts/bench_devices.py), the
    rows taking turns within every round: JAX ``Trainer.fit`` on 1 device and on 2 forced host
    devices (compilation included), JAX's compiled Langevin with its chains on 1 and 2 devices
    (cold and warm), Lightning with the ``dsm-torch fit`` defaults on 1 process and DDP on 2 gloo
    processes (the launch of the second inside the time), and the torch backend's Langevin with its
    chains on 1 process and split across 2 gloo ranks (their start outside the time, the gather
    inside). The notebook's way runs in the same rounds, a fresh process each time too, so every
    row also has its ratio to the notebook's way of its task measured the same way."""
    epochs, steps, chains = str(args.epochs), str(args.steps), str(args.chains)
    cases = [("notebook train", 1, lambda: _worker("notebook-train", epochs)),
             ("notebook sample", 1, lambda: _worker("notebook-sample", chains, steps))]
    cases += [("jax train", n, lambda n=n: _worker("jax-train", str(n), epochs, devices=n)) for n in (1, 2)]
    cases += [("jax sample", n, lambda n=n: _worker("jax-sample", str(n), chains, steps, devices=n)) for n in (1, 2)]
    cases += [("torch train", n, lambda n=n: _worker("torch-train", str(n), epochs)) for n in (1, 2)]
    cases += [("torch sample", n, lambda n=n: _worker("torch-sample", str(n), chains, steps)) for n in (1, 2)]
    results: dict[tuple[str, int], list[dict]] = {(name, n): [] for name, n, _ in cases}
    for i in range(args.warmup + args.repeats):
        for name, n, fn in cases:
            res = fn()
            if i >= args.warmup:
                results[(name, n)].append(res)
            log(f"  devices {name} on {n}: {res}")

    def median(name, n, key):
        return statistics.median(r[key] for r in results[(name, n)])

    notebook = {"train": median("notebook train", 1, "seconds"), "sample": median("notebook sample", 1, "seconds")}
    rows = [["train", "notebook's way (jit step per batch, torch DataLoader)", "1", "included",
             f"{notebook['train']:.3f}", "—", "1.00"],
            ["sample", "notebook's way (jit step per Langevin step)", "1", "included", f"{notebook['sample']:.3f}", "—",
             "1.00"]]
    specs = [("jax train", "seconds", "train", "jax_dsm Trainer.fit", "included"),
             ("jax sample", "cold", "sample", "jax_dsm langevin, cold", "included"),
             ("jax sample", "warm", "sample", "jax_dsm langevin, warm", "excluded"),
             ("torch train", "seconds", "train", "Lightning, dsm-torch fit defaults (DDP on 2)", "eager"),
             ("torch sample", "seconds", "sample", "torch_dsm langevin (2 gloo ranks on 2)", "eager")]
    for name, key, task, method, compile in specs:
        one = median(name, 1, key)
        for n in (1, 2):
            t = median(name, n, key)
            rows.append([task, method, str(n), compile, f"{t:.3f}", f"{one / t:.2f}", f"{notebook[task] / t:.2f}"])
    return markdown_table(DEVICES_HEADER, rows)


def bench_jobs(args) -> tuple[str, dict[str, float]]:
    """Fresh processes, the rows of each kind taking turns within every round:

    - training after the imports (scripts/bench_devices.py): the notebook's way against
      ``Trainer.fit`` with JAX's persistent compilation cache cold (emptied before every run) and
      warm (filled by an untimed run first);
    - whole jobs, timed from the outside (interpreter start, imports, outputs included): the
      notebook's code as a script (scripts/bench_devices.py notebook-job) against ``dsm-jax fit``
      with a cold and a warm cache and ``dsm-torch fit``, on configs/seed.yaml at the same sizes and,
      as the notebook's job, without the trajectory demo (``model.sampler.trajectory_steps=0``).

    The warm cache is filled by one untimed run of each warm row before the rounds. Returns the
    table and the medians ``job_floor`` needs: ``imports`` (a process that only imports what the
    job imports and starts JAX), ``notebook`` (the notebook's job), ``fit_warm`` and
    ``sample_warm`` (``Trainer.fit`` and the sampler after the imports, warm cache).
    """
    import shutil

    sizes = [f"--trainer.max_epochs={args.epochs}", f"--model.sampler.langevin.n_steps={args.steps}",
             f"--model.sampler.n_chains={args.chains}", "--quiet=true",
             "--model.sampler.trajectory_steps=0"]  # the notebook's job has no trajectory demo
    worker = str(Path(__file__).with_name("bench_devices.py"))
    with tempfile.TemporaryDirectory(prefix="dsm-jobs-") as tmp:
        cold_dir, warm_dir = f"{tmp}/cache-cold", f"{tmp}/cache-warm"
        base_env = {**os.environ, "XLA_FLAGS": "", "BENCH_TORCH_THREADS": str(torch.get_num_threads())}
        envs = {"cold": {**base_env, "JAX_COMPILATION_CACHE_DIR": cold_dir},
                "warm": {**base_env, "JAX_COMPILATION_CACHE_DIR": warm_dir}, None: base_env}
        seconds: dict[str, list[float]] = {}

        def empty_cold():
            shutil.rmtree(cold_dir, ignore_errors=True)

        def timed_inside(name, cmd, env):  # the worker's own time, after its imports
            def run():
                out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, cwd=ROOT).stdout
                result = json.loads(out.strip().splitlines()[-1])
                seconds.setdefault(name, []).append(result["seconds"] if "seconds" in result else result["cold"])
            return run

        def job(cmd, env):
            def run():
                subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, cwd=ROOT)
            return run

        def fresh(prog):
            return [sys.executable, "-m", f"{prog}_dsm.cli", "fit", "--config", str(ROOT / "configs" / "seed.yaml"),
                    *sizes, "--overwrite=true", f"--trainer.default_root_dir={tmp}/{prog}"]

        cache_env = {k: {**v, "BENCH_COMPILATION_CACHE": "1"} for k, v in envs.items() if k}
        train_nb = "train: notebook's way (after the imports)"
        train = [
            (train_nb, None, timed_inside(train_nb, [sys.executable, worker, "notebook-train", str(args.epochs)],
                                          base_env), None),
            ("train: jax_dsm Trainer.fit, cold compilation cache", None,
             timed_inside("train: jax_dsm Trainer.fit, cold compilation cache",
                          [sys.executable, worker, "jax-train", "1", str(args.epochs)], cache_env["cold"]), empty_cold),
            ("train: jax_dsm Trainer.fit, warm compilation cache", None,
             timed_inside("train: jax_dsm Trainer.fit, warm compilation cache",
                          [sys.executable, worker, "jax-train", "1", str(args.epochs)], cache_env["warm"]), None),
        ]
        sample_args = [str(args.chains), str(args.steps)]
        sample_nb = "sample: notebook's way (after the imports)"
        train += [
            (sample_nb, None, timed_inside(sample_nb, [sys.executable, worker, "notebook-sample", *sample_args],
                                           base_env), None),
            ("sample: jax_dsm langevin, cold compilation cache", None,
             timed_inside("sample: jax_dsm langevin, cold compilation cache",
                          [sys.executable, worker, "jax-sample", "1", *sample_args], cache_env["cold"]), empty_cold),
            ("sample: jax_dsm langevin, warm compilation cache", None,
             timed_inside("sample: jax_dsm langevin, warm compilation cache",
                          [sys.executable, worker, "jax-sample", "1", *sample_args], cache_env["warm"]), None),
        ]
        for warm in (train[2], train[5]):  # fill the warm cache (untimed, whatever --warmup says)
            warm[2]()
            seconds[warm[0]].pop()
        for i in range(args.warmup + args.repeats):  # the workers time themselves
            for name, _, fn, setup in train:
                if setup is not None:
                    setup()
                fn()
                if i < args.warmup:
                    seconds[name].pop()
        notebook = "job: notebook's code as a script (its imports, training, sampling, a scatter plot)"
        jobs = [
            (notebook, None, job([sys.executable, worker, "notebook-job", str(args.epochs), str(args.chains),
                                  str(args.steps), f"{tmp}/notebook"], base_env), None),
            ("job: dsm-jax fit --config configs/seed.yaml, cold compilation cache", None,
             job(fresh("jax"), envs["cold"]), empty_cold),
            ("job: dsm-jax fit --config configs/seed.yaml, warm compilation cache", None,
             job(fresh("jax"), envs["warm"]), None),
            ("job: dsm-torch fit --config configs/seed.yaml (the same files: weights, samples, metrics, figures)", None,
             job(fresh("torch"), base_env), None),
            (JAX_IMPORTS, None, job([sys.executable, worker, "jax-imports"], base_env), None),
        ]
        jobs[2][2]()  # the job's other compiled functions into the warm cache
        medians = timeit_rounds(jobs, args.repeats, args.warmup)
    rows = []
    for name, *_ in train:
        base = statistics.median(seconds[train_nb if name.startswith("train") else sample_nb])
        t = statistics.median(seconds[name])
        rows.append([name, f"{t:.2f}", f"{base / t:.2f}"])
    for name, t in medians.items():
        rows.append([name, f"{t:.2f}", f"{medians[notebook] / t:.2f}"])
    for row in rows:
        log(f"  {row[0][:70]:<70} {row[1]} s")
    return markdown_table(JOB_HEADER, rows), {
        "imports": medians[JAX_IMPORTS], "notebook": medians[notebook],
        "fit_warm": statistics.median(seconds["train: jax_dsm Trainer.fit, warm compilation cache"]),
        "sample_warm": statistics.median(seconds["sample: jax_dsm langevin, warm compilation cache"])}


# ----------------------------------------------------------------------------- scaling


SCALING_HEADER = ["curve", "size", "steps timed", "jax_dsm µs/step", "torch µs/step", "torch / jax",
                  "jax % of ceiling", "torch % of ceiling"]


def bench_scaling(args, peak: float) -> tuple[str, dict]:
    """Per-step time against chains (sampling), batch size and hidden width (training).

    JAX: the compiled paths (``langevin``; ``make_train_chunk`` as ``Trainer.fit`` runs it),
    compilation excluded. torch: ``torch_dsm.sampling.langevin``; the plain torch loop.
    """
    s = args.scaling_sizes
    r = args.scaling_repeats
    curves = {"chains": [], "batch": [], "width": []}  # (size, steps, jax s/step, torch s/step, flops/step)

    def sample_point(n):
        steps = max(s["min_steps"], s["chain_steps"] // n)
        x0 = np.random.default_rng(0).standard_normal((n, 2)).astype(np.float32)
        score, xj = jax_sampler(), jnp.asarray(x0)
        tj = timeit(lambda: jax_dsm_sample(score, xj, steps), r, 1)
        model, xt = torch_sampler(), torch.from_numpy(x0)
        tt = timeit(lambda: torch_dsm_sample(model, xt, steps), r, 0)
        curves["chains"].append((n, steps, tj / steps, tt / steps, float(mlp_flops()) * n))
        log(f"  scaling chains={n}: jax {tj / steps * 1e6:.1f} µs/step, torch {tt / steps * 1e6:.1f} µs/step")

    def train_point(curve, size, batch, hidden, n_points):
        spe = math.ceil((n_points or 300) / batch)
        epochs = max(1, math.ceil(max(s["min_steps"], s["train_steps"] * BATCH // batch) / spe))
        run, _, steps = jax_dsm_loop(epochs, batch, hidden, n_points)
        tj = timeit(run, r, 1)
        points = torch.from_numpy(load_dataset("seed_mixture", n_points=n_points).points)
        tt = timeit(lambda: plain_torch_train(points, epochs, batch, hidden), r, 0)
        flops = epochs * train_flops(len(points), hidden) / steps
        curves[curve].append((size, steps, tj / steps, tt / steps, flops))
        log(f"  scaling {curve}={size}: jax {tj / steps * 1e6:.1f} µs/step, torch {tt / steps * 1e6:.1f} µs/step")

    for n in s["chains"]:
        sample_point(n)
    for b in s["batch"]:
        train_point("batch", b, b, HIDDEN, s["batch_points"])
    for width in s["width"]:
        train_point("width", width, BATCH, (width, width), None)

    cells = []
    names = {"chains": "sample: chains", "batch": "train: batch size", "width": "train: hidden width (batch 8)"}
    for curve, points in curves.items():
        for size, steps, tj, tt, flops in points:
            cells.append([names[curve], str(size), str(steps), f"{tj * 1e6:.1f}", f"{tt * 1e6:.1f}", f"{tt / tj:.2f}",
                          f"{100 * flops / tj / (peak * 1e9):.2f}", f"{100 * flops / tt / (peak * 1e9):.2f}"])
    return markdown_table(SCALING_HEADER, cells), curves


def plot_scaling(curves: dict, peak: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"chains": ("sampling: chains (hidden 256)", "chains"),
              "batch": ("training: batch size (hidden 256)", "batch size"),
              "width": ("training: hidden width (batch 8)", "hidden width")}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (curve, points) in zip(axes, curves.items()):
        size = [p[0] for p in points]
        ax.loglog(size, [p[2] * 1e6 for p in points], "o-", label="jax_dsm (compiled)")
        ax.loglog(size, [p[3] * 1e6 for p in points], "s-",
                  label="torch_dsm langevin" if curve == "chains" else "plain torch loop")
        ax.loglog(size, [p[4] / (peak * 1e9) * 1e6 for p in points], "k--",
                  label=f"time at the arithmetic ceiling ({peak:.0f} GFLOP/s)")
        ax.set(title=titles[curve][0], xlabel=titles[curve][1], ylabel="µs per step")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- report


def machine_info(peak: float, args) -> list[str]:
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    trainer = {k: (type(v[0]).__name__ if k == "callbacks" and v else v) for k, v in torch_dsm.cli.trainer_defaults().items()}
    return [
        f"- commit `{git('rev-parse', '--short', 'HEAD')}`{dirty}, {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, {cores} usable cores, "
        f"load average {os.getloadavg()[0]:.2f} at start",
        f"- python {platform.python_version()}, numpy {np.__version__}, jax {jax.__version__} ({jax.default_backend()}), "
        f"flax {flax.__version__}, optax {optax.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), lightning {lightning.__version__}",
        f"- ceiling: numpy float32 {args.matmul}×{args.matmul} matmul, {peak:.1f} GFLOP/s (docs/speed.md quotes ≈ 190 "
        f"for its 2-core CPU); a training step of batch 8 is {train_flops(8) / 1e6:.2f} MFLOP, "
        f"a sampler step on 100 chains {mlp_flops() * 100 / 1e6:.2f} MFLOP",
        f"- training: {args.epochs} epochs × 38 steps (batch 8, 300 points); sampling: {args.chains} chains × "
        f"{args.steps} steps; medians of {args.repeats} rounds after {args.warmup} warm-up, the rows of a task "
        "taking turns within each round",
        f"- dsm-torch fit defaults (torch_dsm.cli): Trainer {trainer}, DSMDataModule {torch_dsm.cli.data_defaults()}",
    ]


def job_floor(rows: list[Row], job_seconds: dict[str, float]) -> str | None:
    """What no ``dsm-jax fit`` job can go below on this machine, from this run's own rows: a process
    that only imports and starts JAX (the jobs table) + the compiled training loop + the warm sampler
    (the main table: compilation and every output left out), against the notebook's job."""
    found = {r.method: r.total_s for r in rows or []}
    if "jax_dsm compiled loop only" not in found or "jax_dsm langevin, warm" not in found:
        return None
    imports, loop, sample = job_seconds["imports"], found["jax_dsm compiled loop only"], found["jax_dsm langevin, warm"]
    floor = imports + loop + sample
    nb = job_seconds["notebook"]
    text = (f"The floor of a dsm-jax job in this run: imports and JAX's start {imports:.2f} s + the compiled "
            f"training loop {loop:.2f} s + the warm sampler {sample:.2f} s = {floor:.2f} s, with no compilation, "
            f"initialisation, metrics or outputs: at most {nb / floor:.2f}× the notebook's job ({nb:.2f} s).")
    if "fit_warm" in job_seconds:
        fit, warm = job_seconds["fit_warm"], job_seconds["sample_warm"]
        start = imports + fit + warm
        text += (f" With the start-up that a fresh process pays even with a warm compilation cache (tracing and "
                 f"lowering to find the compiled code, loading it, initialising the weights, the checkpoints): "
                 f"imports {imports:.2f} s + Trainer.fit {fit:.2f} s + the sampler {warm:.2f} s (the fresh-process "
                 f"rows, warm cache) = {start:.2f} s, at most {nb / start:.2f}×; still no metrics or outputs.")
    return text


def report(args, peak, rows, memory, scaling, threads=None, devices=None, jobs=None) -> str:
    """The Markdown report; ``jobs``: ``bench_jobs``'s table and medians, or None."""
    jobs, job_seconds = jobs if jobs else (None, None)
    parts = ["## Benchmark: the reference recipe, every way", "", *machine_info(peak, args), ""]
    if rows:
        parts += [main_table(rows, peak), "",
                  "compile: *included* = JAX caches cleared before every repeat, as in a fresh process; *compile s* = "
                  "trace + lower + XLA compile of the row's jitted function(s), timed on its own. × notebook = notebook "
                  "time / row time, same task. % of ceiling = MLP FLOPs / time / the matmul rate above. "
                  f"docs/method.md §1's unchanged notebook: train {NOTEBOOK_SECONDS['train']} s, sample "
                  f"{NOTEBOOK_SECONDS['sample']} s on its 2-core CPU.", ""]
    if memory:
        parts += ["### Memory: one sampler run in its own process", "", memory, "",
                  "peak growth = peak RSS during the run (reset before it) − RSS before it, after an identical "
                  "warm-up run; all states = what keeping every step would hold (chains × steps × 2 float32).", ""]
    if threads:
        parts += ["### torch's thread count: one thread against all cores", "", threads, "",
                  "Medians of the same work at 1 thread and at torch's default, in alternation; busy = as many "
                  "spinning processes as cores meanwhile. dsm-torch picks = torch_dsm.cli.choose_threads for that "
                  "batch size or chain count (--torch_threads or OMP_NUM_THREADS override it).", ""]
    if devices:
        parts += ["### One device and two: each run a fresh process", "", devices, "",
                  "JAX's two devices are XLA host devices splitting this CPU "
                  "(XLA_FLAGS=--xla_force_host_platform_device_count=2), the batch and the chains split across them; "
                  "Lightning's two are DDP processes over gloo, each with its slice of every global batch. Times "
                  "start after the imports; × 1 device = the same row's 1-device time / this time; × notebook = the "
                  "notebook's way of the same task, also a fresh process (compilation included) / this time.", ""]
    if jobs:
        parts += ["### Fresh processes: training, sampling and whole jobs, cold and warm compilation cache", "", jobs, "",
                  "train and sample rows: timed inside the process, after its imports (sample: the first run, compilation "
                  "included); job rows: timed from the outside, "
                  "interpreter start, imports and outputs included; at the sizes above, and the dsm jobs without the "
                  "one-chain trajectory demo (model.sampler.trajectory_steps=0), which the notebook's job does not "
                  "compute either. Cold: JAX's persistent "
                  "compilation cache emptied before every run; warm: filled by an untimed run first. × notebook = "
                  "the notebook's row of the same kind / the row's.", ""]
    floor = job_floor(rows, job_seconds) if jobs else None
    if floor:
        parts += [floor, ""]
    if scaling:
        parts += ["### Scaling (compilation excluded)", "", scaling, "",
                  "jax_dsm: compiled `langevin` and `make_train_chunk` loop; torch: `torch_dsm.sampling.langevin` "
                  "and the plain torch loop (not Lightning).", ""]
    return "\n".join(parts)


# --quick sets torch to 1 thread: on a loaded 2-core machine torch's 2 intra-op threads made a
# batch-8 step 10-40x slower (each tiny op waits for a descheduled thread), too slow for a smoke test.
QUICK = dict(epochs=2, steps=200, chains=100, repeats=1, warmup=0, matmul=512, mem_chains=100_000, mem_steps=20,
             scaling_repeats=1, torch_threads=1, thread_epochs=2, thread_steps=20, thread_chains=[100, 2000])
FULL_SCALING = dict(chains=[100, 1_000, 10_000, 100_000], chain_steps=1_000_000, min_steps=20,
                    batch=[8, 32, 128, 512, 2048, 4096], batch_points=8192, width=[64, 128, 256, 512, 1024],
                    train_steps=2000)
QUICK_SCALING = dict(chains=[100, 1_000], chain_steps=20_000, min_steps=10, batch=[8, 64], batch_points=128,
                     width=[64, 256], train_steps=40)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=1000, help="training epochs (recipe: 1000)")
    p.add_argument("--steps", type=int, default=10_000, help="Langevin steps (recipe: 10 000)")
    p.add_argument("--chains", type=int, default=100, help="Langevin chains (recipe: 100)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the repeats")
    p.add_argument("--matmul", type=int, default=2048, help="size of the matmul that measures the ceiling")
    p.add_argument("--only", nargs="+", choices=["train", "sample", "memory", "scaling", "threads", "devices", "jobs"],
                   help="run only these parts (default: train sample memory threads devices jobs, plus scaling with "
                        "--scaling)")
    p.add_argument("--thread-epochs", type=int, default=50, help="training epochs of the thread-count table")
    p.add_argument("--thread-steps", type=int, default=2000, help="Langevin steps of the thread-count table")
    p.add_argument("--thread-chains", type=int, nargs="+", default=[100, 1000, 4000, 16000],
                   help="chain counts of the thread-count table")
    p.add_argument("--scaling", action="store_true", help="also measure the scaling curves")
    p.add_argument("--scaling-png", help="save the scaling curves to this PNG")
    p.add_argument("--scaling-repeats", type=int, default=3)
    p.add_argument("--mem-chains", type=int, default=100_000, help="chains of the memory check")
    p.add_argument("--mem-steps", type=int, default=1000, help="steps of the memory check")
    p.add_argument("--mem-hidden", type=int, default=32,
                   help="hidden width of the memory check (narrow: the per-step working set stays small)")
    p.add_argument("--torch-threads", type=int,
                   help="torch.set_num_threads (default: torch's own choice; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks the script runs")
    p.add_argument("--out", help="also write the Markdown report to this file")
    args = p.parse_args(argv)
    if args.quick:  # tiny sizes unless given explicitly
        for k, v in QUICK.items():
            if getattr(args, k) == p.get_default(k):
                setattr(args, k, v)
    args.scaling_sizes = QUICK_SCALING if args.quick else FULL_SCALING
    default_parts = ["train", "sample", "memory", "threads", "devices", "jobs"]
    default_parts += ["scaling"] if args.scaling or args.scaling_png else []
    args.parts = set(args.only or default_parts)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    for name in ("lightning.pytorch", "lightning.fabric"):  # their INFO lines would go to the terminal
        logging.getLogger(name).setLevel(logging.WARNING)
    log(f"measuring the float32 matmul ceiling ({args.matmul}×{args.matmul}) ...")
    peak = peak_gflops(args.matmul, repeats=3 if args.quick else 5)
    rows, memory, scaling, t0 = [], None, None, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dsm-bench-") as workdir:
        if "train" in args.parts:
            log("training ...")
            rows += bench_train(args, workdir)
        if "sample" in args.parts:
            log(f"sampling ... ({time.perf_counter() - t0:.0f} s so far)")
            rows += bench_sample(args)
    if "memory" in args.parts:
        log(f"memory ... ({time.perf_counter() - t0:.0f} s so far)")
        memory = bench_memory(args)
    threads = None
    if "threads" in args.parts:
        log(f"thread counts ... ({time.perf_counter() - t0:.0f} s so far)")
        threads = bench_threads(args)
    devices = jobs = None
    if "devices" in args.parts:
        log(f"one device and two ... ({time.perf_counter() - t0:.0f} s so far)")
        devices = bench_devices(args)
    if "jobs" in args.parts:
        log(f"whole jobs ... ({time.perf_counter() - t0:.0f} s so far)")
        jobs = bench_jobs(args)
    if "scaling" in args.parts:
        log(f"scaling ... ({time.perf_counter() - t0:.0f} s so far)")
        scaling, curves = bench_scaling(args, peak)
        if args.scaling_png:
            plot_scaling(curves, peak, args.scaling_png)
            log(f"scaling curves: {args.scaling_png}")
    log(f"done in {time.perf_counter() - t0:.0f} s")
    text = report(args, peak, rows, memory, scaling, threads, devices, jobs)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
