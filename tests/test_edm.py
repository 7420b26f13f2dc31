"""The EDM formulation (docs/method.md §6) on both sides, against values worked out independently:
EDM's coefficients by hand, the float64 numpy denoiser and Algorithm 2 of arXiv 2206.00364
(``dsm_common.testing``, written from the paper's formulas, not from the rewritten forms the
frameworks compute), the loss from its definition λ(σ)‖D − x‖², the schedule by hand, the
number of network evaluations counted, and the exact-score oracle for the sampler's quality.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import REPO, fails_in_one_line, read_metrics, refresh_log_streams, run_cli_inprocess, run_torch_cli_inprocess

import jax_dsm.losses as jl
import jax_dsm.mixtures as jm
import jax_dsm.sampling as js
import jax_dsm.weights as jw
import torch_dsm.losses as tl
import torch_dsm.mixtures as tm
import torch_dsm.sampling as ts
import torch_dsm.weights as tw
from dsm_common.config import EulerSettings, HeunSettings, data_sigma
from dsm_common.datasets import load_dataset
from dsm_common.metrics import gap_mass, mode_weights, per_mode_moments
from dsm_common.mixtures import seed_mixture
from dsm_common.registry import SAMPLERS
from dsm_common.testing import numpy_edm_denoiser, numpy_edm_sampler
from jax_dsm.models import ScoreMLP as JaxMLP
from jax_dsm.models import edm_coefficients as jax_coefficients
from torch_dsm.models import ScoreMLP as TorchMLP
from torch_dsm.models import edm_coefficients as torch_coefficients

torch.set_num_threads(1)
SIGMA_DATA = 4.0
REPO_CONFIG = str(REPO / "configs" / "edm.yaml")


def _params(seed: int = 0, hidden=(32, 32)) -> dict[str, np.ndarray]:
    """Random canonical weights of an MLP (x, c_noise) → R²."""
    rng = np.random.default_rng(seed)
    widths = [3, *hidden, 2]
    out = {}
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        out[f"dense_{i}.kernel"] = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        out[f"dense_{i}.bias"] = (0.1 * rng.standard_normal(b)).astype(np.float32)
    return out


def _nets(params):
    net = tw.from_canonical(params, TorchMLP([32, 32], conditional=True, preconditioning="edm", sigma_data=SIGMA_DATA))
    model, v = jw.from_canonical(params, JaxMLP((32, 32), conditional=True, preconditioning="edm", sigma_data=SIGMA_DATA))
    return net, model, v


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b))))


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_coefficients_by_hand(framework):
    """At σ = σ_d: c_skip = ½, c_out = σ_d/√2, c_in = 1/(σ_d √2), c_noise = ln(σ_d)/4."""
    if framework == "torch":
        got = [float(c) for c in torch_coefficients(torch.tensor(SIGMA_DATA, dtype=torch.float64), SIGMA_DATA)]
    else:
        got = [float(c) for c in jax_coefficients(jnp.asarray(SIGMA_DATA), SIGMA_DATA)]
    want = [0.5, SIGMA_DATA / np.sqrt(2), 1 / (SIGMA_DATA * np.sqrt(2)), np.log(SIGMA_DATA) / 4]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # σ = 1, σ_d = 4 (not symmetric): c_skip = 16/17, c_out = 4/√17, c_in = 1/√17, c_noise = 0.
    fn = torch_coefficients if framework == "torch" else jax_coefficients
    got = [float(c) for c in fn(1.0, SIGMA_DATA)]
    np.testing.assert_allclose(got, [16 / 17, 4 / np.sqrt(17), 1 / np.sqrt(17), 0.0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_network_is_the_score_of_the_paper_denoiser(framework):
    """score = (D − x)/σ², D from Table 1 in float64, at σ from 0.002 to 80; and ``denoise`` is D."""
    params = _params()
    net, model, v = _nets(params)
    rng = np.random.default_rng(1)
    x = (10 * rng.standard_normal((64, 2))).astype(np.float32)
    sigma = np.geomspace(0.002, 80, 64).astype(np.float32)
    d_ref = numpy_edm_denoiser(params, x, sigma, SIGMA_DATA)
    score_ref = (d_ref - x) / sigma.astype(np.float64)[:, None] ** 2
    if framework == "torch":
        with torch.no_grad():
            score = net(torch.from_numpy(x), torch.from_numpy(sigma)).numpy()
            d = net.denoise(torch.from_numpy(x), torch.from_numpy(sigma)).numpy()
    else:
        score = np.asarray(model.apply(v, jnp.asarray(x), jnp.asarray(sigma)))
        d = np.asarray(model.apply(v, jnp.asarray(x), jnp.asarray(sigma), method="denoise"))
    # Point by point, relative to the point's score: its magnitude spans 1/σ² across the levels.
    per_point = np.abs(score - score_ref).max(axis=1) / np.abs(score_ref).max(axis=1)
    assert per_point.max() < 1e-5
    assert _rel(d, d_ref) < 1e-5


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_is_the_weighted_denoising_error(framework, reduction):
    """λ(σ)‖D(x + σz; σ) − x‖², λ = (σ² + σ_d²)/(σ σ_d)², σ = exp(p_mean + p_std ε), from the
    float64 numpy denoiser (not the (1 + σ²/σ_d²)‖σ s + z‖² form the frameworks compute)."""
    params = _params(2)
    net, model, v = _nets(params)
    rng = np.random.default_rng(3)
    x = (8 * rng.standard_normal((16, 2))).astype(np.float32)
    z = rng.standard_normal((16, 2)).astype(np.float32)
    eps = rng.standard_normal(16).astype(np.float32)
    p_mean, p_std = 0.5, 1.5
    sigma = np.exp(p_mean + p_std * eps.astype(np.float64))
    d = numpy_edm_denoiser(params, x + sigma[:, None] * z, sigma, SIGMA_DATA)
    per_point = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2 * np.sum((d - x) ** 2, axis=1)
    want = per_point.mean() if reduction == "mean" else per_point.sum()
    if framework == "torch":
        got = float(tl.edm_loss(net, torch.from_numpy(x), SIGMA_DATA, p_mean, p_std, reduction,
                                log_sigma_noise=torch.from_numpy(eps), noise=torch.from_numpy(z)).detach())
    else:
        got = float(jl.edm_loss(lambda y, s: model.apply(v, y, s), jnp.asarray(x), SIGMA_DATA, p_mean, p_std, reduction,
                                log_sigma_noise=jnp.asarray(eps), noise=jnp.asarray(z)))
    assert got == pytest.approx(want, rel=1e-5)


def test_loss_draws_need_a_source():
    with pytest.raises(ValueError, match="edm_loss"):
        tl.edm_loss(lambda x, s: x, torch.zeros(2, 2), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="edm_loss"):
        jl.edm_loss(lambda x, s: x, jnp.zeros((2, 2)), 1.0, 0.0, 1.0)


def test_churn_window_must_be_a_window():
    from dsm_common.validation import DSMInputError

    with pytest.raises(DSMInputError, match=r"model.sampler.heun.s_tmax \(1\) must be at least model.sampler.heun.s_tmin \(2\)"):
        HeunSettings(s_tmin=2.0, s_tmax=1.0).validate()


def test_animation_of_an_edm_sampler_is_labelled_by_its_own_schedule():
    """Frames of ``heun`` name the σ of its schedule after each kept step (not the model's range),
    for any frame count (20 steps, 3 frames: every 6th step, then the final states)."""
    from dsm_common.config import SamplerConfig
    from dsm_common.generate import run_samplers
    from torch_dsm.cli import TorchBackend

    torch.manual_seed(0)
    net = TorchMLP([16], conditional=True, preconditioning="edm", sigma_data=SIGMA_DATA)
    backend = TorchBackend(net, np.array([80.0, 0.002]), progress=False, threads=1)
    cfg = SamplerConfig.from_dict({"name": "heun", "n_chains": 9, "trajectory_steps": 0, "animation_frames": 3})
    gen = run_samplers(cfg, "heun", backend)
    t = HeunSettings().schedule(np.array([80.0, 0.002]))
    assert gen.animation.shape == (5, 9, 2) and len(gen.animation_labels) == 5
    assert gen.animation_labels[1:4] == [f"σ = {t[k]:.3g}, step {k} of 20" for k in (6, 12, 18)]
    assert gen.animation_labels[-1] == "final states, after 39 evaluations"


def test_schedule_and_churn_by_hand():
    """ρ = 1: equal spacing; ρ = 7: EDM's endpoints; σ_N = 0; γ = min(S_churn/N, √2 − 1) inside [S_tmin, S_tmax]."""
    np.testing.assert_allclose(HeunSettings(num_steps=3, rho=1.0).schedule(np.array([9.0, 1.0])), [9.0, 5.0, 1.0, 0.0])
    t = HeunSettings().schedule(np.array([80.0, 0.002]))
    assert t.shape == (21,) and t[0] == pytest.approx(80) and t[19] == pytest.approx(0.002) and t[20] == 0
    assert np.all(np.diff(t) < 0)
    mid = (80 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7  # i = (N − 1)/2 with N = 3
    assert HeunSettings(num_steps=3).schedule(np.array([80.0, 0.002]))[1] == pytest.approx(mid)
    s = HeunSettings(num_steps=4, s_churn=1.2, s_tmin=1.0, s_tmax=10.0)
    np.testing.assert_allclose(s.gammas(np.array([20.0, 10.0, 1.0, 0.5, 0.0])), [0, 0.3, 0.3, 0])
    assert HeunSettings(num_steps=4, s_churn=40.0).gammas(np.array([4.0, 3, 2, 1, 0]))[0] == pytest.approx(np.sqrt(2) - 1)
    # The sampler's own range overrides the model's.
    assert HeunSettings(num_steps=2, sigma_max=5.0).schedule(np.array([80.0, 0.002]))[0] == pytest.approx(5.0)


def _exact_denoiser(mix):
    return lambda x, s: x + s**2 * mix.convolve(float(s)).score(x)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("churn", [False, True])
def test_sampler_is_algorithm_2(framework, churn):
    """Exact scores of the seed mixture, 20 steps, 64 chains: the framework's sampler against the
    float64 Algorithm 2 (deterministic, and stochastic with S_churn = 10 and shared noise)."""
    mix = seed_mixture()
    settings = HeunSettings(num_steps=20, s_churn=10.0 if churn else 0.0, s_tmin=0.05, s_tmax=50.0)
    t = settings.schedule(np.array([80.0, 0.002]))
    g = settings.gammas(t)
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((64, 2)).astype(np.float32)
    noise = rng.standard_normal((20, 64, 2)).astype(np.float32)
    ref = numpy_edm_sampler(_exact_denoiser(mix), x0, t, g, noise=noise)
    if framework == "torch":
        got, _ = ts.edm_sampler(tm.mixture_score(mix), torch.from_numpy(x0), torch.tensor(t, dtype=torch.float32),
                                torch.tensor(g, dtype=torch.float32), noise=torch.from_numpy(noise))
    else:
        got, _ = js.edm_sampler(jm.mixture_score(mix), jnp.asarray(x0), jnp.asarray(t, jnp.float32),
                                jnp.asarray(g, jnp.float32), noise=jnp.asarray(noise))
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-4)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("name", ["heun", "euler"])
def test_evaluations_counted(framework, name):
    """The registry's NFE (Heun 2N − 1, Euler N) is the number of network calls the sampler makes."""
    calls = []
    settings = (HeunSettings if name == "heun" else EulerSettings)(num_steps=7)
    mix = seed_mixture()
    x0 = np.zeros((3, 2), np.float32)
    sigmas = np.array([80.0, 0.002])
    if framework == "torch":
        score = tm.mixture_score(mix)
        ts.SAMPLERS[name](lambda x, s: calls.append(1) or score(x, s), torch.from_numpy(x0), torch.tensor(sigmas), settings)
    else:
        score = jm.mixture_score(mix)

        def counted(x, s):
            calls.append(1)  # once per call in the traced program
            return score(x, s)

        with jax.disable_jit():
            js.SAMPLERS[name](counted, jnp.asarray(x0), jnp.asarray(sigmas), settings)
    assert len(calls) == SAMPLERS[name].nfe(settings, 2) == (13 if name == "heun" else 7)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_exact_scores_heun_at_39_evaluations_meets_the_bars(framework):
    """10 000 chains, Heun with 20 steps (39 evaluations) on the exact scores of the seed mixture:
    weights within 0.02 of (⅓, ⅔), at most 0.5 % in the gap, per-mode stds within 10 % of 1."""
    mix = seed_mixture()
    x0 = np.random.default_rng(0).standard_normal((10_000, 2)).astype(np.float32)
    sigmas = np.array([80.0, 0.002])
    if framework == "torch":
        x, _ = ts.run_heun(tm.mixture_score(mix), torch.from_numpy(x0), torch.tensor(sigmas), HeunSettings())
    else:
        x, _ = js.run_heun(jm.mixture_score(mix), jnp.asarray(x0), jnp.asarray(sigmas), HeunSettings())
    x = np.asarray(x, np.float64)
    w = mode_weights(x, mix)
    assert abs(w[0] - 1 / 3) < 0.02 and gap_mass(x) <= 0.005
    for m in per_mode_moments(x, mix):
        np.testing.assert_allclose(m["std"], 1.0, atol=0.1)


def test_stochastic_sampler_native_draws_agree_across_frameworks():
    """Churn with each side's own random stream (10 000 chains, exact scores): the left weights
    agree by a two-proportion z-test (|z| < 3.9, a false alarm once in 10⁴) and are near ⅓."""
    mix = seed_mixture()
    settings = HeunSettings(num_steps=20, s_churn=10.0, s_tmin=0.05, s_tmax=50.0)
    sigmas = np.array([80.0, 0.002])
    x0 = np.random.default_rng(5).standard_normal((10_000, 2)).astype(np.float32)
    a, _ = ts.run_heun(tm.mixture_score(mix), torch.from_numpy(x0), torch.tensor(sigmas), settings,
                       rng=torch.Generator().manual_seed(0))
    b, _ = js.run_heun(jm.mixture_score(mix), jnp.asarray(x0), jnp.asarray(sigmas), settings, rng=jax.random.PRNGKey(0))
    pa, pb = mode_weights(np.asarray(a, np.float64), mix)[0], mode_weights(np.asarray(b, np.float64), mix)[0]
    pooled = (pa + pb) / 2
    z = (pa - pb) / np.sqrt(pooled * (1 - pooled) * 2 / 10_000)
    assert abs(z) < 3.9 and abs(pa - 1 / 3) < 0.03 and abs(pb - 1 / 3) < 0.03
    assert not np.allclose(np.asarray(a), np.asarray(b), atol=1e-3)  # the streams differ


def test_sigma_data_of_the_seed_mixture():
    """σ_data: the root mean square of the coordinates about their mean, by hand for two points,
    and for the seed mixture's law: Var x₁ = 1 + w₁w₂·20², Var x₂ = 1 + w₁w₂·1², σ_d² their mean
    (45.6, σ_d = 6.75; its 300 points: 6.74)."""
    assert data_sigma(np.array([[0.0, 0.0], [2.0, 4.0]])) == pytest.approx(np.sqrt((1 + 4) / 2))
    w = (1 / 3) * (2 / 3)
    law = np.sqrt(((1 + w * 400) + (1 + w * 1)) / 2)
    assert data_sigma(load_dataset("seed_mixture").points) == pytest.approx(law, abs=0.1)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize(("option", "needle"), [
    ("--model.edm.p_std=0", "model.edm.p_std must be a positive number, got 0"),
    ("--model.sampler.heun.num_steps=1", "model.sampler.heun.num_steps must be at least 2, got 1"),
    ("--model.edm.sigma_max=0.001", "model.edm.sigma_max (0.001) must exceed model.edm.sigma_min (0.002)"),
    ("--model.sampler.euler.s_churn=-1", "model.sampler.euler.s_churn must be a non-negative number, got -1"),
])
def test_bad_edm_options_in_one_line(framework, option, needle, tmp_path, capsys):
    line = fails_in_one_line(framework, ["fit", "--config", REPO_CONFIG, f"--trainer.default_root_dir={tmp_path}",
                                         option], capsys)
    assert needle in line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_edm_sampler_needs_a_sigma_conditional_network(framework, tmp_path, capsys):
    seed = str(REPO / "configs" / "seed.yaml")
    line = fails_in_one_line(framework, ["fit", "--config", seed, f"--trainer.default_root_dir={tmp_path}",
                                         "--model.sampler.name=heun"], capsys)
    assert "model.sampler.name=heun needs a network conditioned on σ" in line


def _edm_fit_args(root, epochs: int, chains: int) -> list[str]:
    return ["fit", "--config", REPO_CONFIG, f"--trainer.max_epochs={epochs}", f"--trainer.default_root_dir={root}",
            "--trainer.enable_progress_bar=false", f"--model.sampler.n_chains={chains}"]


def _bars(run, weight_tol: float, gap: float, std_tol: float | None) -> dict:
    m = read_metrics(run)
    assert m["nfe"] == 39 and m["sampler"] == "heun"
    assert abs(m["mode_weights"][0] - 1 / 3) < weight_tol, m["mode_weights"]
    assert m["gap_mass"] <= gap, m["gap_mass"]
    if std_tol is not None:
        for mode in m["per_mode"]:
            np.testing.assert_allclose(mode["std"], 1.0, atol=std_tol)
    return m


def test_jax_trained_edm_meets_the_bars(tmp_path):
    """``configs/edm.yaml`` as it is, trained with JAX (about 30 s here), 10 000 samples from Heun at 39 evaluations."""
    from jax_dsm.cli import main

    refresh_log_streams()
    main(_edm_fit_args(tmp_path, 16_000, 10_000))
    _bars(tmp_path, 0.02, 0.005, 0.1)


def test_torch_trained_edm_at_ci_size(tmp_path):
    """CI size: a quarter of the epochs with Lightning, 4000 samples; bars loosened to what that
    size supports (weights within 0.03, gap ≤ 1 %; the per-mode spreads, still 10–20 % wide after
    4000 epochs, only at full size: ``slow``)."""
    run_torch_cli_inprocess(_edm_fit_args(tmp_path, 4000, 4000))
    m = _bars(tmp_path, 0.03, 0.01, None)
    # The weight file carries the preconditioning: sampled again in JAX, the same deterministic samples.
    from jax_dsm.cli import main as jax_main

    refresh_log_streams()
    jax_main(["sample", "--weights", str(tmp_path / "weights.safetensors"), "--out", str(tmp_path / "again"),
              "--quiet=true"])
    # The flow between the modes separates neighbouring chains, so a chain there carries float32
    # differences of the two frameworks further (up to 1.04e-4 measured, against ~1e-6 in the modes).
    again = np.load(tmp_path / "again" / "samples.npy")
    np.testing.assert_allclose(again, np.load(tmp_path / "samples.npy"), atol=1e-3)
    np.testing.assert_allclose(read_metrics(tmp_path / "again")["mode_weights"], m["mode_weights"], atol=1 / 4000)


@pytest.mark.slow
def test_torch_trained_edm_meets_the_bars(tmp_path):
    """``configs/edm.yaml`` as it is, trained with Lightning (about 100 s here), 10 000 samples."""
    run_torch_cli_inprocess(_edm_fit_args(tmp_path, 16_000, 10_000))
    _bars(tmp_path, 0.02, 0.005, 0.1)


EDM_CONFIGS = sorted((REPO / "configs").glob("edm*.yaml"))


@pytest.mark.parametrize("config", EDM_CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_configs_run_tiny(config, framework, tmp_path):
    """Every configs/edm*.yaml through both command lines at a tiny size (2 epochs, 5 Heun steps):
    the run records the sampler, its 9 evaluations, σ_data from the data in the weight file, and
    finite samples (Old Faithful's in minutes, graded by the split-half check)."""
    import yaml

    from dsm_common.weights import load_canonical

    n = 140 if "faithful" in config.stem else 13  # the split-half check needs ≥ 136 samples
    args = ["fit", "--config", str(config), "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false", f"--model.sampler.n_chains={n}", "--model.sampler.heun.num_steps=5"]
    run_cli_inprocess(framework, args)
    cfg = yaml.safe_load(config.read_text())
    m = read_metrics(tmp_path)
    assert m["sampler"] == "heun" and m["nfe"] == 9 and m["dataset"] == cfg["data"]["dataset"]
    assert cfg["model"]["objective"] == "edm" and config.read_text().lstrip().startswith("#")
    assert np.isfinite(np.load(tmp_path / "samples.npy")).all()
    _, stored = load_canonical(tmp_path / "weights.safetensors")
    ds = load_dataset(cfg["data"]["dataset"])
    assert stored["preconditioning"] == {"name": "edm", "sigma_data": pytest.approx(data_sigma(ds.points))}
    if "faithful" in config.stem:
        assert m["units"] == "min" and m["split_half_energy"]["n_per_half"] == 136
