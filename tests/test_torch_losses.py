"""torch_dsm.losses.dsm_loss against hand-computed values (docs/method.md §1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch_dsm.losses import dsm_loss
from torch_dsm.models import ScoreMLP
from torch_dsm.module import DSMModule

torch.set_num_threads(1)


def _linear_score() -> torch.nn.Linear:
    """s(y) = W y + b with W = diag(−½, −¼), b = (1, 0)."""
    lin = torch.nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[-0.5, 0.0], [0.0, -0.25]]))
        lin.bias.copy_(torch.tensor([1.0, 0.0]))
    return lin


# σ = 2, x = [(1, 0), (0, −1)], z = [(½, −1), (2, 0)]  ⇒  x̃ = x + σ z = [(2, −2), (4, −1)]
# s(x̃) = [(−1 + 1, ½), (−2 + 1, ¼)] = [(0, ½), (−1, ¼)];  z/σ = [(¼, −½), (1, 0)]
# s(x̃) + z/σ = [(¼, 0), (0, ¼)]  ⇒  per-point ‖·‖² = 1/16 each: sum ⅛, mean 1/16.
X = [[1.0, 0.0], [0.0, -1.0]]
Z = [[0.5, -1.0], [2.0, 0.0]]


def test_dsm_loss_hand_computed_sum_and_mean():
    s = _linear_score()
    x, z = torch.tensor(X), torch.tensor(Z)
    assert dsm_loss(s, x, 2.0, noise=z).item() == pytest.approx(0.125, abs=1e-7)
    assert dsm_loss(s, x, 2.0, noise=z, reduction="mean").item() == pytest.approx(0.0625, abs=1e-7)


def test_dsm_loss_hand_computed_gradient():
    """∂L/∂b = Σ 2 r_i = 2[(¼, 0) + (0, ¼)] = (½, ½); ∂L/∂W = Σ 2 r_i x̃_iᵀ = [[1, −1], [2, −½]]."""
    s = _linear_score()
    dsm_loss(s, torch.tensor(X), 2.0, noise=torch.tensor(Z)).backward()
    np.testing.assert_allclose(s.bias.grad.numpy(), [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(s.weight.grad.numpy(), [[1.0, -1.0], [2.0, -0.5]], atol=1e-6)


def test_dsm_loss_equals_numpy_for_an_mlp():
    """A random MLP: the loss equals Σ‖s(x + σz) + z/σ‖² written out in numpy with the same weights."""
    torch.manual_seed(0)
    model = ScoreMLP((16, 16))
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(8, 2)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32)
    params = [(lay.weight.detach().double().numpy(), lay.bias.detach().double().numpy()) for lay in model.dense]

    def np_score(y):
        for i, (w, b) in enumerate(params):
            y = y @ w.T + b
            if i < len(params) - 1:
                y = np.maximum(y, 0)
        return y

    sigma = 3.0
    xt = x.astype(np.float64) + sigma * z
    expected = np.sum((np_score(xt) + z / sigma) ** 2)
    got = dsm_loss(model, torch.from_numpy(x), sigma, noise=torch.from_numpy(z)).item()
    assert got == pytest.approx(expected, rel=1e-5)  # float32 forward vs float64 (docs/parity.md: 1e-5)


def test_drawn_noise_is_per_point_and_per_coordinate():
    """The notebook's bug was one scalar of noise per batch. With s ≡ 0 and x = 0 the per-point loss
    is ‖z_i‖²/σ², and the network sees x̃ = σ z: its coordinates must be independent N(0, σ²) draws."""
    seen = []

    def spy(y):
        seen.append(y.clone())
        return torch.zeros_like(y)

    n, sigma = 20_000, 2.0
    gen = torch.Generator().manual_seed(0)
    loss = dsm_loss(spy, torch.zeros(n, 2), sigma, reduction="mean", rng=gen)
    z = (seen[0] / sigma).double().numpy()  # (n, 2)
    # Sample moments within 4 standard errors: mean sd 1/√n, variance sd √(2/n), correlation sd 1/√n.
    assert np.abs(z.mean(0)).max() < 4 / np.sqrt(n)
    assert np.abs(z.var(0) - 1).max() < 4 * np.sqrt(2 / n)
    assert abs(np.corrcoef(z.T)[0, 1]) < 4 / np.sqrt(n)
    # Scalar noise would give one distinct value; float32 draws collide only by chance (~14 of 40 000 here).
    assert len(np.unique(z)) > 0.999 * z.size
    # Loss = mean ‖z‖²/σ² = E χ²₂ / 4 = ½, here the exact value on these draws:
    assert loss.item() == pytest.approx(np.mean(np.sum(z**2, 1)) / sigma**2, rel=1e-5)
    # The same generator seed gives the same draws as passing them in.
    z_again = torch.randn((n, 2), generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(z, z_again.double().numpy(), rtol=1e-6)


def test_module_defaults_and_training_loss():
    """The LightningModule's defaults are the recipe's (docs/method.md §1) and its loss is dsm_loss at σ, sum."""
    m = DSMModule()
    assert (m.methods.objective, m.methods.settings.sigma) == ("dsm", 3.0) and m.methods.sampler_name == "langevin"
    assert (m.hparams.lr, m.hparams.reduction, m.hparams.optimizer) == (1e-5, "sum", "sgd")
    assert [tuple(lay.weight.shape) for lay in m.model.dense] == [(256, 2), (256, 256), (2, 256)]
    opt = m.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 1e-5
    assert opt.param_groups[0]["momentum"] == 0 and opt.param_groups[0]["weight_decay"] == 0  # plain SGD
    x = torch.randn(8, 2)
    torch.manual_seed(5)
    got = m.loss(x)
    torch.manual_seed(5)
    z = torch.randn(8, 2)
    assert got.item() == pytest.approx(dsm_loss(m.model, x, 3.0, noise=z).item(), rel=1e-6)
