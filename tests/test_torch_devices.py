"""torch_dsm's samplers and likelihood compute on the device of their inputs (CPU, GPU or any other).

A tensor made on the CPU inside a sampler breaks it on a GPU ("Expected all tensors to be on the
same device"); CI has no GPU, so these tests run every sampler on PyTorch's ``meta`` device, which
refuses to mix with CPU tensors the same way a CUDA device does (0-dim CPU tensors excepted, as on
CUDA) and computes only shapes. The noise is given, as the samplers' ``rng`` would be a generator
on the same device. The values are tested elsewhere (``test_sde_*``, ``test_torch_sampling``, the
parity suite, whose ``cuda`` cases run these on a GPU).
"""

from __future__ import annotations

import pytest
import torch

import torch_dsm.sde_lib as tsde
from torch_dsm.models import ScoreMLP
from torch_dsm.sampling import annealed_langevin, edm_sampler, langevin

META = torch.device("meta")
N, D = 4, 2


def test_meta_refuses_cpu_tensors_as_cuda_does():
    """The premise: an op mixing a meta tensor with a CPU tensor of one or more dimensions raises."""
    with pytest.raises(RuntimeError, match="device"):
        torch.zeros(N, D, device=META) + torch.ones(N, D)


def _net(conditional: bool, preconditioning: str = "none") -> ScoreMLP:
    return ScoreMLP((8, 8), conditional=conditional, preconditioning=preconditioning).to(META)


def _on_meta(*tensors):
    for t in tensors:
        assert t is None or t.device == META, t.device


def test_langevin_and_annealed_langevin():
    x0 = torch.zeros(N, D, device=META)
    _on_meta(*langevin(_net(False), x0, 0.01, 3, keep_every=1, noise=torch.zeros(3, N, D, device=META)))
    sigmas = [3.0, 1.0]  # the step sizes are computed from the levels' values, on the host
    noise = torch.zeros(2 * 3, N, D, device=META)
    _on_meta(*annealed_langevin(_net(True), x0, sigmas, 0.01, 3, keep_every=1, noise=noise))


@pytest.mark.parametrize("preconditioning", ["none", "edm"])
@pytest.mark.parametrize("gammas", [None, [0.1, 0.0, 0.0]])
def test_edm_sampler(preconditioning, gammas):
    x0 = torch.zeros(N, D, device=META)
    t_steps = [2.0, 1.0, 0.5, 0.0]
    out = edm_sampler(_net(True, preconditioning), x0, t_steps, gammas, keep_every=1,
                      noise=torch.zeros(3, N, D, device=META))
    _on_meta(*out)


SDES = {"vp": lambda: tsde.VPSDE(N=5), "subvp": lambda: tsde.subVPSDE(N=5), "ve": lambda: tsde.VESDE(0.1, 20.0, N=5)}


# ancestral sampling is defined for VE and VP only
PC = [(k, p) for k in SDES for p in tsde.PREDICTORS if p != "none" and (k, p) != ("subvp", "ancestral")]


@pytest.mark.parametrize(("kind", "predictor"), PC)
@pytest.mark.parametrize("corrector", list(tsde.CORRECTORS))
def test_pc_sampler(kind, predictor, corrector):
    sde = SDES[kind]()
    score = tsde.time_score(_net(True), sde)
    x0 = torch.zeros(N, D, device=META)
    noise = (torch.zeros(sde.N, N, D, device=META), torch.zeros(sde.N, 1, N, D, device=META))
    _on_meta(*tsde.pc_sampler(sde, score, x0, predictor, corrector, keep_every=1, noise=noise))


@pytest.mark.parametrize("kind", list(SDES))
def test_ode_sampler_and_likelihood(kind):
    """The fixed-step Heun solver (the adaptive one needs values to choose its steps; it integrates
    over the same time grid, built on the inputs' device)."""
    sde = SDES[kind]()
    score = tsde.time_score(_net(True), sde)
    x = torch.zeros(N, D, device=META)
    x_out, kept, _ = tsde.ode_sampler(sde, score, x, "heun", 4, denoise=True, keep_every=2)
    _on_meta(x_out, kept)
    for probe in (None, torch.ones(N, D, device=META)):
        log_p, z, _ = tsde.likelihood(sde, score, x, "heun", 4, probe=probe)
        _on_meta(log_p, z)
