"""Value parity, quantity by quantity: torch_dsm against jax_dsm on the shared fixtures.

One function per quantity; each feeds both frameworks the same numpy arrays (weights copied
through the canonical layout, noise passed in) on one :class:`Device` and returns
:class:`Result` rows ``(max_abs, rel, bound)``. The tests (``test_values.py``) assert the rows
and ``scripts/parity_report.py`` prints them, so every number is computed by one piece of code.

Bounds (docs/parity.md, float32):

* forward pass, losses, gradients, exact scores: max-abs ≤ 1e-5 × the magnitude of the
  quantity (``rel = max_abs / max |value|``, the larger of the two sides);
* weights after SGD steps (1, 100, and the two training loops): max-abs ≤ 1e-5;
* sampler states after 1000 steps (Langevin, annealed Langevin): max-abs ≤ 1e-4.

No bound is looser than docs/parity.md.
"""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable
from unittest import mock

import jax
import numpy as np
import optax
import torch
from jax.tree_util import Partial

import jax_dsm.losses as jl
import jax_dsm.mixtures as jm
import jax_dsm.module as jmod
import jax_dsm.sampling as js
import jax_dsm.sde_lib as jsde
import jax_dsm.trainer as jt
import jax_dsm.weights as jw
import torch_dsm.losses as tl
import torch_dsm.mixtures as tm
import torch_dsm.module as tmod
import torch_dsm.sampling as ts
import torch_dsm.sde_lib as tsde
import torch_dsm.weights as tw
from dsm_common.config import HeunSettings
from dsm_common.mixtures import ncsn_toy_mixture, seed_mixture
from dsm_common.testing import numpy_edm_denoiser, numpy_edm_sampler, numpy_langevin
from jax_dsm.models import ScoreMLP as JaxScoreMLP
from parity_tests.devices import Device
from parity_tests.fixture_data import weight_set
from torch_dsm.models import ScoreMLP as TorchScoreMLP

__all__ = ["Result", "COMPARISONS", "run_all", "BOUND_REL", "BOUND_SGD", "BOUND_SAMPLER"]

BOUND_REL = 1e-5  # forward, loss, gradients, exact score: relative to the magnitude (docs/parity.md)
BOUND_SGD = 1e-5  # weights after SGD steps, max-abs (docs/parity.md)
BOUND_SAMPLER = 1e-4  # sampler states after 1000 steps, max-abs (docs/parity.md)

Fixtures = dict[str, np.ndarray]


@dataclass(frozen=True)
class Result:
    """One measured difference.

    Attributes:
        quantity: what was compared (and which two sides).
        device: ``cpu`` or ``cuda``.
        max_abs: max |a − b| over all elements.
        scale: max |value| over both sides (the magnitude of the quantity).
        bound: the tolerance.
        bound_on: ``"rel"`` (bound on max_abs / scale) or ``"abs"`` (bound on max_abs).
        note: why a row is bounded otherwise than docs/parity.md says (the score-SDE sampler rows: relative).
    """

    quantity: str
    device: str
    max_abs: float
    scale: float
    bound: float
    bound_on: str
    note: str = ""

    @property
    def rel(self) -> float:
        if self.scale > 0:
            return self.max_abs / self.scale
        return 0.0 if self.max_abs == 0 else math.inf

    @property
    def measured(self) -> float:
        return self.rel if self.bound_on == "rel" else self.max_abs

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.measured) and self.measured <= self.bound)

    def __str__(self) -> str:
        return (f"{self.quantity} [{self.device}]: max-abs {self.max_abs:.3g}, rel {self.rel:.3g} "
                f"(|value| ≤ {self.scale:.3g}); bound {self.bound:g} on {self.bound_on}"
                f"{'' if self.ok else '  <-- FAIL'}")


def _diff(quantity: str, dev: Device, a, b, bound: float, bound_on: str) -> Result:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{quantity}: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return Result(quantity, dev.name, 0.0, 0.0, bound, bound_on)
    max_abs = float(np.max(np.abs(a - b)))
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
        max_abs = math.inf
    scale = float(max(np.max(np.abs(a)), np.max(np.abs(b))))
    return Result(quantity, dev.name, max_abs, scale, bound, bound_on)


def _diff_params(quantity: str, dev: Device, pa: dict, pb: dict, bound: float, bound_on: str) -> Result:
    """All parameters at once: max-abs over every tensor, scale the largest |weight|."""
    if set(pa) != set(pb):
        raise AssertionError(f"{quantity}: parameter names differ, {sorted(pa)} vs {sorted(pb)}")
    flat_a = np.concatenate([np.ravel(pa[k]) for k in sorted(pa)])
    flat_b = np.concatenate([np.ravel(pb[k]) for k in sorted(pa)])
    return _diff(quantity, dev, flat_a, flat_b, bound, bound_on)


# ---------------------------------------------------------------------------- helpers


def _t(a, dev: Device) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).to(dev.torch)


def _j(a, dev: Device) -> jax.Array:
    a = np.asarray(a)
    if a.dtype == np.int64:
        a = a.astype(np.int32)  # JAX runs with 32-bit integers
    return jax.device_put(a, dev.jax)


def _n(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _torch_net(params: dict, dev: Device) -> torch.nn.Module:
    return tw.from_canonical(params).to(dev.torch)


def _jax_net(params: dict, dev: Device):
    with jax.default_device(dev.jax):
        model, variables = jw.from_canonical(params)
    return model, jax.device_put(variables, dev.jax)


def _torch_grads(net: torch.nn.Module) -> dict[str, np.ndarray]:
    out = {}
    for i, layer in enumerate(net.dense):
        out[f"dense_{i}.kernel"] = _n(layer.weight.grad).T
        out[f"dense_{i}.bias"] = _n(layer.bias.grad)
    return out


def _torch_sgd(net: torch.nn.Module, xs, zs, sigma: float, lr: float, ema_decay: float | None = None,
               optim: dict | None = None) -> dict[str, np.ndarray]:
    """Plain torch.optim.SGD on ``torch_dsm.losses.dsm_loss`` (sum), one step per (x, z): the
    final weights, or with ``ema_decay`` = d their average written out by hand (the weights after
    the first step, then ``ema ← d·ema + (1 − d)·θ`` after each later one). ``optim``: the
    module's optimiser options instead of SGD (``optimizer`` adam or adamw, ``weight_decay``,
    ``lr_schedule`` cosine: the factor ½(1 + cos(π k / K)) over the K = len(xs) updates, by hand)."""
    o = {"optimizer": "sgd", "weight_decay": 0.0, "lr_schedule": "constant", **(optim or {})}
    if o["optimizer"] == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr)
    elif o["optimizer"] == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=lr)
    else:
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=o["weight_decay"])
    ema = None
    for k, (x, z) in enumerate(zip(xs, zs)):
        if o["lr_schedule"] == "cosine":
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * k / len(xs)))
        opt.zero_grad()
        tl.dsm_loss(net, x, sigma, noise=z, reduction="sum").backward()
        opt.step()
        if ema_decay is not None:
            ema = {k: v.copy() for k, v in tw.to_canonical(net).items()} if ema is None else \
                {k: ema_decay * ema[k] + (1 - ema_decay) * v for k, v in tw.to_canonical(net).items()}
    return tw.to_canonical(net) if ema_decay is None else ema


# ---------------------------------------------------------------------------- quantities


def forward(fx: Fixtures, dev: Device) -> list[Result]:
    """The score MLP on 256 points of [−20, 20]²: unconditional and noise-conditional."""
    x = fx["x_eval"]
    out = []
    net = _torch_net(weight_set(fx, "init"), dev)
    model, v = _jax_net(weight_set(fx, "init"), dev)
    with torch.no_grad():
        a = net(_t(x, dev))
    b = jax.jit(model.apply)(v, _j(x, dev))
    out.append(_diff("forward pass", dev, _n(a), _n(b), BOUND_REL, "rel"))

    s = fx["sigma_eval"]
    net = _torch_net(weight_set(fx, "cond"), dev)
    model, v = _jax_net(weight_set(fx, "cond"), dev)
    with torch.no_grad():
        a = net(_t(x, dev), _t(s, dev))
    b = jax.jit(model.apply)(v, _j(x, dev), _j(s, dev))
    out.append(_diff("forward pass, noise-conditional", dev, _n(a), _n(b), BOUND_REL, "rel"))
    return out


def dsm_loss(fx: Fixtures, dev: Device) -> list[Result]:
    """DSM loss of the fixture batch with its noise, σ = 3, sum and mean reductions."""
    sigma = float(fx["sigma"])
    net = _torch_net(weight_set(fx, "init"), dev)
    model, v = _jax_net(weight_set(fx, "init"), dev)
    out = []
    for reduction in ("sum", "mean"):
        with torch.no_grad():
            a = tl.dsm_loss(net, _t(fx["x"], dev), sigma, noise=_t(fx["z"], dev), reduction=reduction)
        f = jax.jit(lambda v, x, z, r=reduction: jl.dsm_loss(partial(model.apply, v), x, sigma, noise=z, reduction=r))
        b = f(v, _j(fx["x"], dev), _j(fx["z"], dev))
        out.append(_diff(f"DSM loss ({reduction})", dev, _n(a), _n(b), BOUND_REL, "rel"))
    return out


def dsm_gradients(fx: Fixtures, dev: Device) -> list[Result]:
    """Gradient of the DSM loss (sum) with respect to every parameter, one row per tensor."""
    sigma = float(fx["sigma"])
    net = _torch_net(weight_set(fx, "init"), dev)
    tl.dsm_loss(net, _t(fx["x"], dev), sigma, noise=_t(fx["z"], dev), reduction="sum").backward()
    ga = _torch_grads(net)
    model, v = _jax_net(weight_set(fx, "init"), dev)
    f = jax.jit(jax.grad(lambda p, x, z: jl.dsm_loss(partial(model.apply, {"params": p}), x, sigma, noise=z)))
    gb = jw.to_canonical({"params": f(v["params"], _j(fx["x"], dev), _j(fx["z"], dev))})
    return [_diff(f"DSM gradient {k}", dev, ga[k], gb[k], BOUND_REL, "rel") for k in sorted(ga)]


def ncsn(fx: Fixtures, dev: Device) -> list[Result]:
    """NCSN loss (fixed levels and noise; mean and sum) and its gradients, conditional MLP."""
    sigmas, levels, x, z = fx["ncsn_sigmas"], fx["ncsn_levels"], fx["x"], fx["ncsn_z"]
    out = []
    model, v = _jax_net(weight_set(fx, "cond"), dev)
    for reduction in ("mean", "sum"):
        net = _torch_net(weight_set(fx, "cond"), dev)
        a = tl.ncsn_loss(net, _t(x, dev), _t(sigmas, dev), levels=_t(levels, dev), noise=_t(z, dev), reduction=reduction)
        a.backward()

        def loss(p, x, sigmas, levels, z, r=reduction):
            return jl.ncsn_loss(partial(model.apply, {"params": p}), x, sigmas, levels=levels, noise=z, reduction=r)

        b, g = jax.jit(jax.value_and_grad(loss))(v["params"], *(_j(t, dev) for t in (x, sigmas, levels, z)))
        out.append(_diff(f"NCSN loss ({reduction})", dev, _n(a), _n(b), BOUND_REL, "rel"))
        if reduction == "mean":
            ga, gb = _torch_grads(net), jw.to_canonical({"params": g})
            rows = [_diff(k, dev, ga[k], gb[k], BOUND_REL, "rel") for k in sorted(ga)]
            worst = max(rows, key=lambda r: r.rel)
            out.append(Result(f"NCSN gradient (worst tensor: {worst.quantity})", dev.name, worst.max_abs,
                              worst.scale, BOUND_REL, "rel"))
    return out


def sgd_steps(fx: Fixtures, dev: Device, n_steps: int) -> list[Result]:
    """``n_steps`` plain SGD steps (lr 1e-5, DSM sum loss) on the fixture batches and noise:
    torch.optim.SGD against optax.sgd."""
    sigma, lr = float(fx["sigma"]), float(fx["lr"])
    xs, zs = fx["sgd_x"][:n_steps], fx["sgd_z"][:n_steps]
    p0 = weight_set(fx, "init")
    a = _torch_sgd(_torch_net(p0, dev), _t(xs, dev), _t(zs, dev), sigma, lr)

    model, v = _jax_net(p0, dev)
    tx = optax.sgd(lr)

    @jax.jit
    def step(params, opt_state, x, z):
        grads = jax.grad(lambda p: jl.dsm_loss(partial(model.apply, {"params": p}), x, sigma, noise=z))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params = v["params"]
    opt_state = tx.init(params)
    xj, zj = _j(xs, dev), _j(zs, dev)
    for k in range(n_steps):
        params, opt_state = step(params, opt_state, xj[k], zj[k])
    b = jw.to_canonical({"params": params})
    label = "one SGD step" if n_steps == 1 else f"{n_steps} SGD steps"
    return [_diff(f"weights after {label} (torch.optim.SGD vs optax.sgd)", dev, *_flat(a, b), BOUND_SGD, "abs")]


def _flat(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(a)
    return np.concatenate([np.ravel(a[k]) for k in keys]), np.concatenate([np.ravel(b[k]) for k in keys])


def _fixture_batches(fx: Fixtures, dev: Device) -> tuple[list, list]:
    """The 100 sequential batches of 8 of ``_training_points`` and their fixture noise, as tensors."""
    points = _training_points(fx)
    xs = [_t(points[i : i + 8], dev) for i in range(0, len(points), 8)]
    return xs, [_t(fx["sgd_z"][k, : len(x)], dev) for k, x in enumerate(xs)]


def _training_points(fx: Fixtures) -> np.ndarray:
    """796 fixture points: one epoch of batches of 8 is 100 steps, the last with 4 points."""
    return np.ascontiguousarray(fx["sgd_x"].reshape(-1, 2)[:796])


class _RecordingJaxModule(jmod.DSMModule):
    """jax_dsm's DSMModule whose loss draws z from its key as ``dsm_loss`` does, passes it in,
    and reports (batch, z, mask) of every step to the host, in order, so torch can replay it."""

    def __init__(self, record: list, **kw):
        super().__init__(**kw)
        self._record = record

    def loss(self, params, x, key, mask, sigmas):
        z = jax.random.normal(key, x.shape, x.dtype)
        jax.debug.callback(lambda *a: self._record.append(tuple(np.array(t) for t in a)), x, z, mask, ordered=True)
        score = partial(self.model.apply, {"params": params})
        return jl.dsm_loss(score, x, self.methods.settings.sigma, noise=z, reduction=self.hparams["reduction"], mask=mask)


def jax_training_loop(fx: Fixtures, dev: Device, ema_decay: float | None = None, lr: float | None = None,
                      optim: dict | None = None) -> list[Result]:
    """jax_dsm's compiled training loop (``make_train_chunk``: a scan over epochs of a scan over
    batches, padded-and-masked last batch, TrainState + optax.sgd) for one epoch of 100 steps,
    against a plain torch SGD loop replaying the same batches and the noise the loop drew; with
    ``ema_decay``, the weights' average (``DSMModule.update_ema``) against the hand-written one;
    ``lr``: another learning rate than the fixtures'; ``optim``: the module's optimiser options
    (optimizer, weight_decay, lr_schedule) instead of SGD."""
    sigma, lr = float(fx["sigma"]), float(lr or fx["lr"])
    points = _training_points(fx)
    record: list = []
    module = _RecordingJaxModule(record, hidden_dims=[256, 256], dsm={"sigma": sigma}, lr=lr, reduction="sum",
                                 ema_decay=ema_decay, **(optim or {}))
    if module.tx is None:  # a cosine schedule: over the epoch's 100 updates (what Trainer.fit's setup passes)
        module.tx = module.make_tx(100)
    model, v = _jax_net(weight_set(fx, "init"), dev)
    with jax.default_device(dev.jax):
        state = module.init_state(jax.random.PRNGKey(0), v["params"])  # the key is unused: params given
        train_chunk = jt.make_train_chunk(module, len(points), 8, shuffle=False)
        state, _ = train_chunk(state, jax.random.PRNGKey(0), _j(points, dev), _j(np.asarray(module.sigmas, np.float32), dev), 1)
        jax.block_until_ready(state)
        jax.effects_barrier()
    b = jw.to_canonical({"params": state.params if ema_decay is None else state.ema_params})
    if len(record) != 100:
        raise AssertionError(f"the compiled loop reported {len(record)} steps, expected 100")
    xs = [x[m] for x, _, m in record]
    zs = [z[m] for _, z, m in record]
    if not np.array_equal(np.concatenate(xs), points):
        raise AssertionError("the compiled loop did not visit the points in order")
    a = _torch_sgd(_torch_net(weight_set(fx, "init"), dev), [_t(x, dev) for x in xs], [_t(z, dev) for z in zs], sigma, lr,
                   ema_decay, optim)
    what = ("weights" if ema_decay is None else f"weight average (d = {ema_decay})") + _optim_label(optim)
    return [_diff(f"{what} after 100 steps of jax_dsm's compiled training loop (vs plain torch loop)", dev,
                  *_flat(a, b), BOUND_SGD, "abs")]


def lightning_trainer(fx: Fixtures, dev: Device, ema_decay: float | None = None, batches_per_step: int = 1,
                      lr: float | None = None, optim: dict | None = None) -> list[Result]:
    """Lightning ``Trainer.fit`` of ``torch_dsm.module.DSMModule`` for one epoch of 100 steps
    (sequential batches, noise from the fixtures, fed by patching ``torch_dsm.losses.dsm_loss``)
    against a plain torch SGD loop on the same batches and noise; with ``ema_decay``, the weights'
    average (``StepEMA``) against the hand-written one; ``batches_per_step`` > 1: grouped
    mini-batches (manual optimisation); ``lr``: another learning rate than the fixtures';
    ``optim``: the module's optimiser options (optimizer, weight_decay, lr_schedule) instead of SGD."""
    import lightning as L

    from torch_dsm.data import DSMDataModule

    sigma, lr = float(fx["sigma"]), float(lr or fx["lr"])
    points = _training_points(fx)
    fixture_noise = fx["sgd_z"]
    p0 = weight_set(fx, "init")
    seen: list[np.ndarray] = []
    original = tl.dsm_loss  # what the module's objective (torch_dsm.losses.OBJECTIVES) calls

    def fixed_noise_loss(score_fn, x, sigma, reduction="sum", mask=None, *, noise=None, rng=None):
        z = _t(fixture_noise[len(seen), : x.shape[0]], dev)
        seen.append(_n(x))
        return original(score_fn, x, sigma, reduction, mask, noise=z)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "points.npy"
        np.save(path, points)
        dm = DSMDataModule(dataset=str(path), batch_size=8, standardize=False, shuffle=False,
                           batches_per_step=batches_per_step)
        module = tmod.DSMModule(hidden_dims=[256, 256], dsm={"sigma": sigma}, lr=lr, reduction="sum", ema_decay=ema_decay,
                                **(optim or {}))
        tw.from_canonical(p0, module.model)
        with quiet_lightning(), mock.patch.object(tl, "dsm_loss", fixed_noise_loss):
            trainer = L.Trainer(max_epochs=1, accelerator=dev.lightning_accelerator, devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                default_root_dir=tmp)
            trainer.fit(module, dm)
    a = tw.to_canonical(module.model)
    if len(seen) != 100 or not np.array_equal(np.concatenate(seen), points):
        raise AssertionError(f"the Trainer took {len(seen)} steps or another batch order than the data's")
    xs, zs = _fixture_batches(fx, dev)
    b = _torch_sgd(_torch_net(p0, dev), xs, zs, sigma, lr, ema_decay, optim)
    what = ("weights" if ema_decay is None else f"weight average (d = {ema_decay}, StepEMA)") + _optim_label(optim)
    grouped = "" if batches_per_step == 1 else f", {batches_per_step} mini-batches a step"
    return [_diff(f"{what} after 100 steps of Lightning Trainer{grouped} (vs plain torch loop)", dev, *_flat(a, b),
                  BOUND_SGD, "abs")]


def _torch_vector(weights: dict) -> np.ndarray:
    """Canonical weights as one vector, in ``_flat``'s order."""
    return _flat(weights, weights)[0]


def _optim_label(optim: dict | None) -> str:
    if not optim:
        return ""
    o = optim["optimizer"] + (f" (weight decay {optim['weight_decay']})" if optim.get("weight_decay") else "")
    return f", {o}" + (", cosine schedule" if optim.get("lr_schedule") == "cosine" else "")


ADAM_LR = 1e-4  # Adam moves each weight by about lr a step: 100 steps, 1e-2, and weight decay 0.1, about 5e-4
ADAM_OPTIONS = ({"optimizer": "adam", "lr_schedule": "cosine"},
                {"optimizer": "adamw", "weight_decay": 0.1, "lr_schedule": "cosine"})


def optimizers(fx: Fixtures, dev: Device) -> list[Result]:
    """Adam and AdamW with weight decay, both under the cosine schedule, as each side's module
    builds them (``configure_optimizers``; ``make_tx``: optax.adam, optax.adamw,
    optax.cosine_decay_schedule), 100 steps of each side's training loop against torch.optim.Adam
    and AdamW on a plain loop with the schedule written out by hand. Raises if the weight decay's
    effect could not be told from none at the bound."""
    sigma = float(fx["sigma"])
    xs, zs = _fixture_batches(fx, dev)
    adam, adamw = (_torch_vector(_torch_sgd(_torch_net(weight_set(fx, "init"), dev), xs, zs, sigma, ADAM_LR, None, o))
                   for o in ADAM_OPTIONS)
    if np.max(np.abs(adam - adamw)) < 10 * BOUND_SGD:
        raise AssertionError(f"weight decay moves the weights by {np.max(np.abs(adam - adamw)):.2g} only: not a test of it")
    return [row for o in ADAM_OPTIONS for row in (*jax_training_loop(fx, dev, lr=ADAM_LR, optim=o),
                                                  *lightning_trainer(fx, dev, lr=ADAM_LR, optim=o))]


EMA_DECAY = 0.9  # short enough a memory that 100 steps move the average well away from the weights
EMA_LR = 1e-4  # ten times the fixtures' rate: the average then lies about 80 bounds from the weights


def ema(fx: Fixtures, dev: Device) -> list[Result]:
    """The weight average on both sides (jax_dsm's compiled loop; Lightning with one and with ten
    mini-batches a step) against the convention written out on a plain torch loop. Raises if the
    average could not be told from the last weights at the bound (a test that would pass with EMA
    off)."""
    sigma, lr = float(fx["sigma"]), EMA_LR
    xs, zs = _fixture_batches(fx, dev)
    raw, avg = (_torch_vector(_torch_sgd(_torch_net(weight_set(fx, "init"), dev), xs, zs, sigma, lr, d))
                for d in (None, EMA_DECAY))
    if np.max(np.abs(raw - avg)) < 10 * BOUND_SGD:
        raise AssertionError(f"the average is within {np.max(np.abs(raw - avg)):.2g} of the weights: not a test of it")
    return [*jax_training_loop(fx, dev, EMA_DECAY, lr), *lightning_trainer(fx, dev, EMA_DECAY, lr=lr),
            *lightning_trainer(fx, dev, EMA_DECAY, batches_per_step=10, lr=lr)]


class quiet_lightning:
    """Silence Lightning's info lines and its warnings about workers and logging intervals."""

    def __enter__(self):
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.simplefilter("ignore")
        self._levels = {}
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        self._warn.__exit__(*exc)
        return False




def langevin(fx: Fixtures, dev: Device) -> list[Result]:
    """1000 Langevin steps (ε = 0.01, 32 chains) with the fixture start and per-step noise:
    the fixture score MLP, and the exact score of Υ_σ (also against a float64 numpy recursion)."""
    eps = float(fx["step_size"])
    x0, noise = fx["x0"], fx["langevin_noise"]
    n_steps = noise.shape[0]
    out = []
    net = _torch_net(weight_set(fx, "score"), dev)
    a, _ = ts.langevin(net, _t(x0, dev), eps, n_steps, noise=_t(noise, dev))
    model, v = _jax_net(weight_set(fx, "score"), dev)
    with jax.default_device(dev.jax):
        b, _ = js.langevin(Partial(model.apply, v), _j(x0, dev), eps, n_steps, noise=_j(noise, dev))
    out.append(_diff(f"Langevin {n_steps} steps, score MLP: states", dev, _n(a), _n(b), BOUND_SAMPLER, "abs"))

    target = seed_mixture().convolve(float(fx["sigma"]))
    a, _ = ts.langevin(tm.mixture_score(target), _t(x0, dev), eps, n_steps, noise=_t(noise, dev))
    with jax.default_device(dev.jax):
        b, _ = js.langevin(jm.mixture_score(target), _j(x0, dev), eps, n_steps, noise=_j(noise, dev))
    ref, _ = numpy_langevin(target.score, x0, eps, noise.astype(np.float64))
    out.append(_diff(f"Langevin {n_steps} steps, exact score: states", dev, _n(a), _n(b), BOUND_SAMPLER, "abs"))
    out.append(_diff(f"Langevin {n_steps} steps, exact score: torch vs numpy float64", dev, _n(a), ref, BOUND_SAMPLER, "abs"))
    out.append(_diff(f"Langevin {n_steps} steps, exact score: jax vs numpy float64", dev, _n(b), ref, BOUND_SAMPLER, "abs"))
    return out


def annealed_langevin(fx: Fixtures, dev: Device) -> list[Result]:
    """Annealed Langevin (5 levels × 100 steps, ε = 1e-3, final denoising step) with the
    noise-conditional fixture MLP and the fixture start and noise."""
    sigmas, eps = fx["ncsn_sigmas"], float(fx["annealed_step_size"])
    x0, noise = fx["annealed_x0"], fx["annealed_noise"]
    n_levels, n_each = noise.shape[:2]
    net = _torch_net(weight_set(fx, "cond"), dev)
    a, _ = ts.annealed_langevin(net, _t(x0, dev), _t(sigmas, dev), eps, n_each, noise=_t(noise, dev), denoise=True)
    model, v = _jax_net(weight_set(fx, "cond"), dev)
    with jax.default_device(dev.jax):
        b, _ = js.annealed_langevin(Partial(model.apply, v), _j(x0, dev), _j(sigmas, dev), eps, n_each,
                                    noise=_j(noise, dev), denoise=True)
    label = f"annealed Langevin {n_levels}×{n_each} steps + denoising, conditional MLP: states"
    return [_diff(label, dev, _n(a), _n(b), BOUND_SAMPLER, "abs")]


def exact_score(fx: Fixtures, dev: Device) -> list[Result]:
    """The exact-score oracle through each framework against dsm_common's float64 numpy oracle:
    Υ convolved with σ = 3 at 256 points of [−20, 20]² and 16 at radius 100 (log-sum-exp),
    and the NCSN toy mixture with a different σ per point."""
    x = np.concatenate([fx["x_eval"], fx["x_far"]])
    sigma = float(fx["sigma"])
    mix = seed_mixture()
    ref = mix.convolve(sigma).score(x.astype(np.float64))
    a = tm.mixture_score(mix)(_t(x, dev), sigma)
    with jax.default_device(dev.jax):
        b = jm.mixture_score(mix)(_j(x, dev), sigma)
    out = [
        _diff("exact score of Υ_σ: torch vs numpy float64", dev, _n(a), ref, BOUND_REL, "rel"),
        _diff("exact score of Υ_σ: jax vs numpy float64", dev, _n(b), ref, BOUND_REL, "rel"),
        _diff("exact score of Υ_σ: torch vs jax", dev, _n(a), _n(b), BOUND_REL, "rel"),
    ]
    toy, xs, ss = ncsn_toy_mixture(), fx["x_eval"], fx["sigma_eval"]
    ref = np.concatenate([toy.convolve(float(s)).score(xi[None].astype(np.float64)) for xi, s in zip(xs, ss)])
    a = tm.mixture_score(toy)(_t(xs, dev), _t(ss, dev))
    with jax.default_device(dev.jax):
        b = jm.mixture_score(toy)(_j(xs, dev), _j(ss, dev))
    out += [
        _diff("exact score, NCSN toy, σ per point: torch vs numpy float64", dev, _n(a), ref, BOUND_REL, "rel"),
        _diff("exact score, NCSN toy, σ per point: jax vs numpy float64", dev, _n(b), ref, BOUND_REL, "rel"),
    ]
    return out


EDM_SIGMA_DATA = 5.0


def _edm_nets(fx: Fixtures, dev: Device):
    """The conditional fixture weights as EDM's F, preconditioned with σ_d = 5, on both sides."""
    params = weight_set(fx, "cond")
    hidden = [params[f"dense_{i}.bias"].shape[0] for i in range(len(params) // 2 - 1)]
    net = tw.from_canonical(params, TorchScoreMLP(hidden, conditional=True, preconditioning="edm",
                                                  sigma_data=EDM_SIGMA_DATA)).to(dev.torch)
    with jax.default_device(dev.jax):
        model, v = jw.from_canonical(params, JaxScoreMLP(tuple(hidden), conditional=True, preconditioning="edm",
                                                         sigma_data=EDM_SIGMA_DATA))
    return params, net, model, jax.device_put(v, dev.jax)


def edm(fx: Fixtures, dev: Device) -> list[Result]:
    """EDM (docs/method.md §6), σ_d = 5: the preconditioned network's score and denoiser on 256
    points at 256 levels (also against the float64 numpy denoiser), and the EDM loss with shared
    σ draws and noise (p_mean −1, p_std 2) and its gradients."""
    params, net, model, v = _edm_nets(fx, dev)
    x, s = fx["x_eval"], fx["sigma_eval"]
    with torch.no_grad():
        a, da = net(_t(x, dev), _t(s, dev)), net.denoise(_t(x, dev), _t(s, dev))
    b = jax.jit(model.apply)(v, _j(x, dev), _j(s, dev))
    db = jax.jit(partial(model.apply, method="denoise"))(v, _j(x, dev), _j(s, dev))
    ref = numpy_edm_denoiser(params, x, s, EDM_SIGMA_DATA)
    out = [
        _diff("EDM preconditioned score (D − x)/σ²", dev, _n(a), _n(b), BOUND_REL, "rel"),
        _diff("EDM denoiser D", dev, _n(da), _n(db), BOUND_REL, "rel"),
        _diff("EDM denoiser D: torch vs numpy float64", dev, _n(da), ref, BOUND_REL, "rel"),
    ]
    xb, z, eps = fx["x"], fx["z"], fx["ncsn_z"][:, 0]
    for p in net.parameters():
        p.grad = None
    la = tl.edm_loss(net, _t(xb, dev), EDM_SIGMA_DATA, -1.0, 2.0, log_sigma_noise=_t(eps, dev), noise=_t(z, dev))
    la.backward()

    def loss(variables):
        return jl.edm_loss(partial(model.apply, variables), _j(xb, dev), EDM_SIGMA_DATA, -1.0, 2.0,
                           log_sigma_noise=_j(eps, dev), noise=_j(z, dev))

    lb, gb = jax.value_and_grad(loss)(v)
    out.append(_diff("EDM loss (mean)", dev, _n(la), _n(lb), BOUND_REL, "rel"))
    ga, gj = _torch_grads(net), jw.to_canonical(gb)
    worst = max(ga, key=lambda k: _diff(k, dev, ga[k], gj[k], BOUND_REL, "rel").rel)
    out.append(_diff(f"EDM loss gradient (worst tensor: {worst})", dev, ga[worst], gj[worst], BOUND_REL, "rel"))
    return out


def edm_sampler(fx: Fixtures, dev: Device) -> list[Result]:
    """The EDM sampler with the preconditioned fixture network (σ_d = 5, σ ∈ [0.002, 80], ρ = 7,
    32 chains): one Heun step, the full deterministic Heun run (20 steps, 39 evaluations) also
    against the float64 numpy Algorithm 2, Euler, and the stochastic sampler with churn and
    shared noise."""
    params, net, model, v = _edm_nets(fx, dev)
    x0, noise = fx["x0"], fx["langevin_noise"][:20]
    settings = HeunSettings(num_steps=20)
    t = settings.schedule(np.array([80.0, 0.002]))
    score = Partial(model.apply, v)
    out = []

    def both(label, t_, g=None, heun=True, with_noise=False, ref=None):
        kw_t = {"noise": _t(noise[: len(t_) - 1], dev)} if with_noise else {}
        a, _ = ts.edm_sampler(net, _t(x0, dev), _t(t_.astype(np.float32), dev),
                              None if g is None else _t(g.astype(np.float32), dev), heun=heun, **kw_t)
        with jax.default_device(dev.jax):
            kw_j = {"noise": _j(noise[: len(t_) - 1], dev)} if with_noise else {}
            b, _ = js.edm_sampler(score, _j(x0, dev), _j(t_.astype(np.float32), dev),
                                  None if g is None else _j(g.astype(np.float32), dev), heun=heun, **kw_j)
        out.append(_diff(label, dev, _n(a), _n(b), BOUND_SAMPLER, "abs"))
        if ref is not None:
            out.append(_diff(label + ": torch vs numpy float64", dev, _n(a), ref, BOUND_SAMPLER, "abs"))

    def denoise(x, sigma):
        return numpy_edm_denoiser(params, x, sigma, EDM_SIGMA_DATA)

    # One Heun step: the state after the first step of the 20-step run (kept with keep_every=1).
    _, ka = ts.edm_sampler(net, _t(x0, dev), _t(t.astype(np.float32), dev), keep_every=1)
    with jax.default_device(dev.jax):
        _, kb = js.edm_sampler(score, _j(x0, dev), _j(t.astype(np.float32), dev), keep_every=1)
    first = numpy_edm_sampler(lambda x, sigma: numpy_edm_denoiser(params, x, sigma, EDM_SIGMA_DATA), x0,
                              np.array([t[0], t[1], 0.0]), steps=1)
    out.append(_diff("EDM one Heun step (σ 80 → 59.7): states", dev, _n(ka[0]), _n(kb[0]), BOUND_REL, "rel"))
    out.append(_diff("EDM one Heun step: torch vs numpy float64", dev, _n(ka[0]), first, BOUND_REL, "rel"))
    both("EDM Heun 20 steps (39 evaluations): states", t, ref=numpy_edm_sampler(denoise, x0, t))
    both("EDM Euler 20 steps: states", t, heun=False)
    churn = HeunSettings(num_steps=20, s_churn=10.0, s_tmin=0.05, s_tmax=50.0)
    g = churn.gammas(t)
    both("EDM stochastic sampler (S_churn 10), shared noise: states", t, g, with_noise=True,
         ref=numpy_edm_sampler(denoise, x0, t, g, noise=noise))
    return out


def _sde_pair(kind: str, n_steps: int = 1000):
    """The same SDE on both sides (VE over [0.01, 25], VP and sub-VP with β ∈ [0.1, 20])."""
    d = {"kind": kind, "sigma_min": 0.01, "sigma_max": 25.0, "beta_min": 0.1, "beta_max": 20.0, "eps": 1e-3}
    return tsde.get_sde(d, n_steps), jsde.get_sde(d, n_steps)


def _far(r: Result) -> Result:
    """A sampler row whose states run far: the fixture network is no one's score, so its SDE chains
    end at |x| of 10²–10³ where trained ones end near 10; the sampler bound (1e-4 on states of
    order 10) is then applied relative to the states' size, 1e-5."""
    from dataclasses import replace

    return replace(r, note="untrained network: states reach |x| ≈ 10³; the sampler bound relative (1e-4 / 10)")


def sde(fx: Fixtures, dev: Device) -> list[Result]:
    """Score SDEs (docs/method.md §7) with the conditional fixture network fed σ(t): the marginals,
    the continuous-time loss with shared t and z (both weightings) and its gradients, one step of
    every predictor and of the Langevin corrector, a whole PC run (N = 1000, 32 chains) with shared
    noise, the fixed-step probability-flow ODE (Heun, 100 steps) and its log-likelihood."""
    rng = np.random.default_rng(int(fx["seed"]) + 12)
    x, z, x0 = fx["x"], fx["z"], fx["x0"]
    t8 = rng.uniform(1e-3, 1.0, 8).astype(np.float32)
    zc = rng.standard_normal((1000, 1, 32, 2)).astype(np.float32)
    model, v = _jax_net(weight_set(fx, "cond"), dev)
    out = []
    for kind in ("ve", "vp", "subvp"):
        a_sde, b_sde = _sde_pair(kind)
        net = _torch_net(weight_set(fx, "cond"), dev)
        a_score = tsde.time_score(net, a_sde)
        b_score = jsde.time_score(Partial(model.apply, v), b_sde)
        ma, sa = a_sde.marginal_prob(_t(x, dev), _t(t8, dev))
        mb, sb = b_sde.marginal_prob(_j(x, dev), _j(t8, dev))
        out.append(_diff(f"{kind.upper()} marginal mean and std", dev, np.append(_n(ma), _n(sa)),
                         np.append(_n(mb), _n(sb)), BOUND_REL, "rel"))
        for weighting in ("sigma2", "likelihood"):
            a = tl.sde_loss(a_score, _t(x, dev), a_sde, 1e-3, weighting, t=_t(t8, dev), noise=_t(z, dev))
            a.backward()

            def loss(p, x_, t_, z_, w=weighting, sde_=b_sde):
                return jl.sde_loss(jsde.time_score(partial(model.apply, {"params": p}), sde_), x_, sde_, 1e-3, w,
                                   t=t_, noise=z_)

            b, g = jax.jit(jax.value_and_grad(loss))(v["params"], _j(x, dev), _j(t8, dev), _j(z, dev))
            out.append(_diff(f"{kind.upper()} continuous-time loss ({weighting})", dev, _n(a), _n(b), BOUND_REL, "rel"))
            ga, gb = _torch_grads(net), jw.to_canonical({"params": g})
            rows = [_diff(k, dev, ga[k], gb[k], BOUND_REL, "rel") for k in sorted(ga)]
            worst = max(rows, key=lambda r: r.rel)
            out.append(Result(f"{kind.upper()} loss gradient ({weighting}; worst tensor: {worst.quantity})", dev.name,
                              worst.max_abs, worst.scale, BOUND_REL, "rel"))
            net.zero_grad()
        start = x0 * (25.0 if kind == "ve" else 1.0)
        tt = np.full(32, 0.5, np.float32)
        with torch.no_grad():
            for name in ("euler_maruyama", "reverse_diffusion", "ancestral"):
                if name == "ancestral" and kind == "subvp":
                    continue
                a = tsde.PREDICTORS[name](a_sde, a_score, _t(start, dev), _t(tt, dev), _t(fx["langevin_noise"][0], dev))
                with jax.default_device(dev.jax):
                    b = jsde.PREDICTORS[name](b_sde, b_score, _j(start, dev), _j(tt, dev), _j(fx["langevin_noise"][0], dev))
                out.append(_diff(f"{kind.upper()} one {name.replace('_', ' ')} step", dev, _n(a[0]), _n(b[0]),
                                 BOUND_REL, "rel"))
            a = tsde.langevin_corrector(a_sde, a_score, _t(start, dev), _t(tt, dev), _t(zc[0], dev), 0.16)
            with jax.default_device(dev.jax):
                b = jsde.langevin_corrector(b_sde, b_score, _j(start, dev), _j(tt, dev), _j(zc[0], dev), 0.16)
            out.append(_diff(f"{kind.upper()} one Langevin corrector step", dev, _n(a[0]), _n(b[0]), BOUND_REL, "rel"))
        predictor, corrector = ("reverse_diffusion", "langevin") if kind == "ve" else ("euler_maruyama", "none")
        noise_t = (_t(fx["langevin_noise"], dev), _t(zc, dev))
        a, _ = tsde.pc_sampler(a_sde, a_score, _t(start, dev), predictor, corrector, noise=noise_t)
        with jax.default_device(dev.jax):
            b, _ = jsde.pc_sampler(b_sde, b_score, _j(start, dev), predictor, corrector,
                                   noise=(_j(fx["langevin_noise"], dev), _j(zc, dev)))
        out.append(_far(_diff(f"{kind.upper()} PC sampler ({predictor.replace('_', ' ')} + {corrector}), N = 1000, "
                              "shared noise: states", dev, _n(a), _n(b), BOUND_SAMPLER / 10, "rel")))
        a, _, _ = tsde.ode_sampler(a_sde, a_score, _t(start, dev), "heun", 100)
        with jax.default_device(dev.jax):
            b, _, _ = jsde.ode_sampler(b_sde, b_score, _j(start, dev), "heun", 100)
        out.append(_far(_diff(f"{kind.upper()} probability-flow ODE, Heun 100 steps: states", dev, _n(a), _n(b),
                              BOUND_SAMPLER / 10, "rel")))
        a, _, _ = tsde.likelihood(a_sde, a_score, _t(x, dev), "heun", 100, eps=1e-3)
        with jax.default_device(dev.jax):
            b, _, _ = jsde.likelihood(b_sde, b_score, _j(x, dev), "heun", 100, eps=1e-3)
        out.append(_diff(f"{kind.upper()} ODE log-likelihood, Heun 100 steps", dev, _n(a), _n(b), BOUND_REL, "rel"))
    out += _sde_preconditioned(fx, dev, x, z, t8)
    return out


def _sde_preconditioned(fx: Fixtures, dev: Device, x: np.ndarray, z: np.ndarray, t8: np.ndarray) -> list[Result]:
    """Score SDEs with EDM's preconditioned fixture network (σ_d = 5) in the σ-space of x_t/α(t)
    (``time_score(…, unscaled=True)``): the loss with shared t and z and its gradients, and the
    fixed-step ODE's log-likelihood, for each SDE."""
    _, net, model, v = _edm_nets(fx, dev)
    out = []
    for kind in ("ve", "vp", "subvp"):
        a_sde, b_sde = _sde_pair(kind)
        a = tl.sde_loss(tsde.time_score(net, a_sde, unscaled=True), _t(x, dev), a_sde, 1e-3, t=_t(t8, dev),
                        noise=_t(z, dev))
        a.backward()

        def loss(p, x_, t_, z_, sde_=b_sde):
            return jl.sde_loss(jsde.time_score(partial(model.apply, {"params": p}), sde_, unscaled=True), x_, sde_, 1e-3,
                               t=t_, noise=z_)

        b, g = jax.jit(jax.value_and_grad(loss))(v["params"], _j(x, dev), _j(t8, dev), _j(z, dev))
        name = f"{kind.upper()}, EDM-preconditioned network (unscaled)"
        out.append(_diff(f"{name}: continuous-time loss", dev, _n(a), _n(b), BOUND_REL, "rel"))
        ga, gb = _torch_grads(net), jw.to_canonical({"params": g})
        rows = [_diff(k, dev, ga[k], gb[k], BOUND_REL, "rel") for k in sorted(ga)]
        worst = max(rows, key=lambda r: r.rel)
        out.append(Result(f"{name}: loss gradient (worst tensor: {worst.quantity})", dev.name, worst.max_abs,
                          worst.scale, BOUND_REL, "rel"))
        net.zero_grad()
        a, _, _ = tsde.likelihood(a_sde, tsde.time_score(net, a_sde, unscaled=True), _t(x, dev), "heun", 100, eps=1e-3)
        with jax.default_device(dev.jax):
            b, _, _ = jsde.likelihood(b_sde, jsde.time_score(Partial(model.apply, v), b_sde, unscaled=True), _j(x, dev),
                                      "heun", 100, eps=1e-3)
        out.append(_diff(f"{name}: ODE log-likelihood, Heun 100 steps", dev, _n(a), _n(b), BOUND_REL, "rel"))
    return out


COMPARISONS: dict[str, Callable[[Fixtures, Device], list[Result]]] = {
    "forward": forward,
    "dsm_loss": dsm_loss,
    "dsm_gradients": dsm_gradients,
    "ncsn": ncsn,
    "sgd_1": partial(sgd_steps, n_steps=1),
    "sgd_100": partial(sgd_steps, n_steps=100),
    "jax_training_loop": jax_training_loop,
    "lightning_trainer": lightning_trainer,
    "ema": ema,
    "optimizers": optimizers,
    "langevin": langevin,
    "annealed_langevin": annealed_langevin,
    "exact_score": exact_score,
    "edm": edm,
    "edm_sampler": edm_sampler,
    "sde": sde,
}


def run_all(fx: Fixtures, dev: Device, names: list[str] | None = None) -> list[Result]:
    """Every comparison (or those in ``names``) on ``dev``, in the order of COMPARISONS."""
    out: list[Result] = []
    for name, fn in COMPARISONS.items():
        if names is None or name in names:
            out.extend(fn(fx, dev))
    return out
