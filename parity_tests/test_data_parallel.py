"""Data-parallel runs compute what one device computes (docs/scale.md).

Lightning DDP over two gloo processes against a plain torch loop in one process on the same
global batches with the same noise (each slice's from its rank's stream): the weights after 100
updates within 1e-5, with one and with several mini-batches a Lightning step; the same loop with
one stream for both slices lies far from DDP (each rank draws its own noise). A DDP run of
``dsm-torch fit`` writes a checkpoint that resumes in one process and a weight file the JAX side
samples from.

JAX on two forced host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``) and as
two processes joined by ``jax.distributed`` (gloo collectives on the CPU), each against the same
run on one device: the weights after 100 updates within 1e-5, the samplers' states after 1000
steps within 1e-4, with the noise drawn by the samplers themselves and with the noise given, the
chains split across two devices of one process and across two processes; ``dsm-jax fit`` as two
processes samples what one process samples.
Each run is a fresh process (``parity_tests/data_parallel.py``): a device count is fixed when
a framework starts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TWO_HOST_DEVICES = "--xla_force_host_platform_device_count=2"
WEIGHTS_BOUND = 1e-5  # weights after 100 updates
STATES_BOUND = 1e-4  # sampler states after 1000 steps


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": TWO_HOST_DEVICES,
            "JAX_DEFAULT_MATMUL_PRECISION": "highest", **extra}


def _start(run: str, out: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "parity_tests.data_parallel", run, str(out), *args], cwd=REPO,
                            env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(*procs: subprocess.Popen, timeout: float = 300) -> None:
    for proc in procs:
        output, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, output[-3000:]


def _run(run: str, out: Path, *args: str) -> dict[str, np.ndarray]:
    _finish(_start(run, out, *args))
    return dict(np.load(out))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_weight_difference(a: dict, b: dict) -> float:
    keys = sorted(k for k in a if k.startswith("w"))
    assert keys and keys == sorted(k for k in b if k.startswith("w"))
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in keys)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory) -> dict[str, np.ndarray]:
    """The training run on one device (the reference of the data-parallel runs)."""
    return _run("jax-train", tmp_path_factory.mktemp("dp") / "one.npz", "--devices", "1")


def test_jax_two_devices_train_like_one(one_device, tmp_path):
    two = _run("jax-train", tmp_path / "two.npz", "--devices", "2")
    assert int(one_device["devices"]) == 1 and int(two["devices"]) == 2  # the weights lived on both devices
    assert int(one_device["steps"]) == int(two["steps"]) == 100
    assert _max_weight_difference(one_device, two) <= WEIGHTS_BOUND


def test_jax_two_processes_train_like_one(one_device, tmp_path):
    out = tmp_path / "procs.npz"
    common = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "XLA_FLAGS": ""}  # one device a process
    procs = [_start("jax-train", out, "--devices", "1", "--num-nodes", "2", JAX_PROCESS_ID=str(i), **common)
             for i in range(2)]
    _finish(*procs)
    two = dict(np.load(out))  # written by the first process
    assert int(two["devices"]) == 2 and int(two["steps"]) == 100
    assert _max_weight_difference(one_device, two) <= WEIGHTS_BOUND


def test_jax_processes_stop_together_when_the_first_refuses(tmp_path):
    """A run the first process refuses (here: nothing to resume) stops the other one too, each in
    one line, instead of leaving it waiting in the first collective."""
    common = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "XLA_FLAGS": ""}
    cmd = [sys.executable, "-m", "jax_dsm.cli", "fit", "--config", str(REPO / "configs" / "seed.yaml"),
           "--trainer.num_nodes=2", "--ckpt_path=last", f"--trainer.default_root_dir={tmp_path / 'run'}"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=_env(JAX_PROCESS_ID=str(i), **common), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    errors = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err[-2000:]
        lines = [line for line in err.splitlines() if line.startswith("dsm-jax: error:")]
        assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
        errors.append(lines[0])
    assert "checkpoint not found" in errors[0] and "nothing to resume" in errors[0]
    assert "the first process (JAX_PROCESS_ID=0) refused this run" in errors[1]


@pytest.fixture(scope="module")
def one_device_samples(tmp_path_factory) -> tuple[dict[str, np.ndarray], Path]:
    """The sampling run on one device, and the weight file of the network it trained."""
    out = tmp_path_factory.mktemp("dps") / "one.npz"
    return _run("jax-sample", out, "--devices", "1"), Path(str(out) + ".weights")


def _check_sampling_like_one_device(one: dict, two: dict) -> None:
    assert int(one["devices"]) == 1 and int(two["devices"]) == int(two["spread"]) == 2
    assert int(two["backend_spread"]) == 2  # the backend's own chains (and the likelihood's points) were split
    for name in ("pc", "langevin"):  # the PC sampler's own noise; Langevin's noise given
        assert np.all(np.isfinite(one[name])) and np.abs(one[name]).max() < 50  # chains that stayed in range
        assert np.max(np.abs(one[name] - two[name])) <= STATES_BOUND, name
    assert np.all(np.isfinite(one["log_p"])) and int(one["nfe"]) > 10
    # The probability-flow ODE's log-density (nats): an adaptive solve at tolerances 1e-5, whose error
    # norm sums over the chains in another order on two devices (measured 8.9e-5); 1e-3 nats a point
    # is what the likelihood is held to against the exact value.
    assert np.max(np.abs(one["log_p"] - two["log_p"])) <= 1e-3


def test_jax_sharded_sampling_like_one_device(one_device_samples, tmp_path):
    one, weights = one_device_samples
    two = _run("jax-sample", tmp_path / "two.npz", "--devices", "2", "--weights", str(weights))
    assert int(two["processes"]) == 1
    _check_sampling_like_one_device(one, two)


def test_jax_sampling_across_processes_like_one_device(one_device_samples, tmp_path):
    """The chains split across two processes' devices, each process running every sampler call and
    getting all the chains back (measured: states 1.9e-6 and 9.5e-7, log-density 1.3e-4 nats)."""
    one, weights = one_device_samples
    out = tmp_path / "procs.npz"
    common = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "XLA_FLAGS": ""}  # one device a process
    _finish(*[_start("jax-sample", out, "--devices", "1", "--num-nodes", "2", "--weights", str(weights),
                     JAX_PROCESS_ID=str(i), **common) for i in range(2)])
    two = dict(np.load(out))  # written by the first process
    assert int(two["processes"]) == 2
    _check_sampling_like_one_device(one, two)


def test_jax_fit_across_processes_samples_like_one_process(tmp_path):
    """``dsm-jax fit`` as two processes: both train and both run every sampler call and the
    likelihood (the chains span their devices); the first writes the run. Its samples and NLL
    against the one-process run's (their weights differ by the order of the gradient's sums:
    measured 4.1e-6 in the samples after 100 PC steps, 7.2e-6 nats, with the config's preconditioned
    network and AdamW; 1.4e-4 and 1.4e-5 with the plain network and Adam)."""
    import json

    tiny = ["fit", "--config", str(REPO / "configs" / "sde_vp.yaml"), "--trainer.max_epochs=200",
            "--model.sampler.n_chains=64", "--model.sampler.pc.num_steps=100", "--model.sampler.nll_points=64",
            "--model.sampler.trajectory_steps=20", "--quiet=true"]  # the one-chain demo: a chain that does not split
    cmd = [sys.executable, "-m", "jax_dsm.cli", *tiny]
    env = _env(XLA_FLAGS="", JAX_ENABLE_COMPILATION_CACHE="false")
    one = subprocess.run([*cmd, f"--trainer.default_root_dir={tmp_path / 'one'}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    common = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}"}
    procs = [subprocess.Popen([*cmd, "--trainer.num_nodes=2", f"--trainer.default_root_dir={tmp_path / 'two'}"],
                              cwd=REPO, env={**env, "JAX_PROCESS_ID": str(i), **common}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    _finish(*procs)
    a, b = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two"))
    assert a["steps"] == b["steps"] == 200 and a["nfe"] == b["nfe"] == 100
    assert np.max(np.abs(np.load(tmp_path / "one" / "samples.npy") - np.load(tmp_path / "two" / "samples.npy"))) <= 1e-3
    assert abs(a["nll"]["model"] - b["nll"]["model"]) <= 1e-3 and a["nll"]["n"] == b["nll"]["n"] == 64
    assert (tmp_path / "two" / "trajectory.png").is_file() and (tmp_path / "two" / "weights.safetensors").is_file()


_REFERENCES: dict[tuple[int, str], dict[str, np.ndarray]] = {}


def _torch_reference(tmp_path: Path, batch_size: int = 30, reduction: str = "mean") -> dict[str, np.ndarray]:
    """The plain one-process loop computing what two DDP ranks compute (cached per batch size and reduction)."""
    key = (batch_size, reduction)
    if key not in _REFERENCES:
        _REFERENCES[key] = _run("torch-reference", tmp_path / f"ref-{batch_size}-{reduction}.npz", "--devices", "2",
                                "--batch-size", str(batch_size), "--reduction", reduction)
    return _REFERENCES[key]


@pytest.mark.parametrize("batches_per_step, batch_size, reduction", [
    (1, 30, "mean"),  # slices of 15: 100 updates
    (4, 29, "sum"),  # grouped mini-batches; slices of 15 and 14, a last batch of 10; SGD (110 updates)
    (1, 299, "mean"),  # a last batch of 1 point: rank 1's slice is empty (20 updates)
], ids=["even", "uneven-sum-grouped", "empty-slice"])
def test_lightning_ddp_two_processes_train_like_one(tmp_path, batches_per_step, batch_size, reduction):
    reference = _torch_reference(tmp_path, batch_size, reduction)
    ddp = _run("torch-train", tmp_path / "ddp.npz", "--devices", "2", "--batches-per-step", str(batches_per_step),
               "--batch-size", str(batch_size), "--reduction", reduction)
    assert int(ddp["devices"]) == 2 and int(ddp["steps"]) == int(reference["steps"]) == 10 * -(-300 // batch_size)
    assert _max_weight_difference(reference, ddp) <= WEIGHTS_BOUND


def test_lightning_ddp_ranks_draw_their_own_noise(tmp_path):
    same = _run("torch-reference", tmp_path / "same.npz", "--devices", "2", "--same-noise")
    assert _max_weight_difference(_torch_reference(tmp_path), same) > 100 * WEIGHTS_BOUND


def test_lightning_ddp_run_resumes_in_one_process_and_samples_in_jax(tmp_path):
    run = tmp_path / "run"
    tiny = ["--config", str(REPO / "configs" / "seed.yaml"), "--model.sampler.n_chains=64",
            "--model.sampler.langevin.n_steps=20", "--model.sampler.trajectory_steps=0", "--quiet=true",
            f"--trainer.default_root_dir={run}"]
    env = _env(XLA_FLAGS="")
    fit = [sys.executable, "-m", "torch_dsm.cli", "fit", *tiny]
    proc = subprocess.run([*fit, "--trainer.max_epochs=2", "--trainer.devices=2", "--trainer.strategy=ddp",
                           "--trainer.accelerator=cpu"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    assert json.loads((run / "metrics.json").read_text())["steps"] == 2 * 38  # global batches of 8: 38 a epoch
    proc = subprocess.run([*fit, "--trainer.max_epochs=3", "--ckpt_path=last"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3 * 38
    proc = subprocess.run([sys.executable, "-m", "jax_dsm.cli", "sample", "--weights", str(run / "weights.safetensors"),
                           f"--out={tmp_path / 'jax'}", "--quiet=true"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.isfinite(np.load(tmp_path / "jax" / "samples.npy")).all()


def test_torch_sampling_across_ranks_like_one_process(tmp_path):
    """The torch backend on two gloo ranks against one process, the same network in each.

    No noise (the fixed-step probability-flow ODE): the same states. Chains that interact (the
    PC sampler's Langevin corrector, whose step takes the batch's mean norms): run whole on every
    rank, the same states. The PC sampler's own noise: each rank draws its own stream, so the
    states differ, and the two samples pass the two-sample battery (the same law). The adaptive
    ODE's log-density: each rank's solve picks its own steps from its own points' error norm, so
    a point moves within the solver's error (measured: 3.2e-2 nats at most between the two runs,
    2.6e-2 between the one-process solve and one at tolerances 1e-8, on these far points of a
    briefly trained network; the means 1.2e-3 apart)."""
    from dsm_common.datasets import load_dataset
    from parity_tests.stats import two_sample_battery

    one = _run("torch-sample", tmp_path / "one.npz")
    out, port = tmp_path / "two.npz", str(_free_port())
    _finish(*[_start("torch-sample", out, RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
              for r in range(2)])
    two = dict(np.load(out))
    assert int(one["ranks"]) == 1 and int(two["ranks"]) == 2 and int(two["split"]) == 1 and int(one["split"]) == 0
    assert np.max(np.abs(one["ode"] - two["ode"])) <= STATES_BOUND
    assert np.array_equal(one["corrected"], two["corrected"])
    assert np.all(np.isfinite(one["pc"])) and np.all(np.isfinite(two["pc"]))
    assert np.max(np.abs(one["pc"] - two["pc"])) > 1.0  # other noise on both ranks
    battery = two_sample_battery(one["pc"], two["pc"], load_dataset("seed_mixture", None, 0).mixture)
    assert not battery.rejected, battery.table()
    assert np.max(np.abs(one["log_p"] - two["log_p"])) <= 0.1 and abs(np.mean(one["log_p"] - two["log_p"])) <= 5e-3
    assert int(one["nfe"]) > 10 and int(two["nfe"]) > 10


def test_rank_slices_partition_a_batch_in_order():
    from torch_dsm.data import rank_slice

    for size in (1, 4, 7, 30):
        for ranks in (1, 2, 3):
            parts = [rank_slice(list(range(size)), ranks, r) for r in range(ranks)]
            assert sum(parts, []) == list(range(size))  # every index once, in order
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
