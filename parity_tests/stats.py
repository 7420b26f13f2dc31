"""Calibrated two-sample tests for distribution parity (docs/parity.md).

:func:`two_sample_battery` compares two samples of 2-D points with a fixed family of checks:

* two-sample z-tests on the mean of each coordinate, the variance of each coordinate (standard
  error from the fourth central moment: Var(s²) ≈ (m₄ − s⁴)/n), and the covariance (standard
  error from the variance of the centred products);
* two-proportion z-tests (pooled) on the weight of each mode of a reference mixture (samples
  assigned by highest responsibility);
* Kolmogorov–Smirnov (``scipy.stats.ks_2samp``, asymptotic p-value) on both marginals and on
  ``n_projections`` fixed random directions.

Each check gives a two-sided p-value; the battery rejects when any p-value is below
``alpha / m`` (Bonferroni over the m checks), so the family-wise false-alarm rate is ≤ ``alpha``
(asymptotically in n for the z-tests, which is why n ≥ 10 000). Seeds are fixed by the callers
and nothing is ever rerun: a test's verdict is its first verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from dsm_common.mixtures import GaussianMixture

__all__ = ["Check", "Battery", "two_sample_battery", "FAMILY_ALPHA"]

FAMILY_ALPHA = 1e-4  # docs/parity.md: family-wise false-alarm rate of one test


@dataclass(frozen=True)
class Check:
    name: str
    statistic: float  # z for z-tests, D for Kolmogorov–Smirnov
    p_value: float


@dataclass
class Battery:
    checks: list[Check] = field(default_factory=list)
    alpha: float = FAMILY_ALPHA

    @property
    def threshold(self) -> float:
        """Per-check level: alpha / m (Bonferroni)."""
        return self.alpha / max(len(self.checks), 1)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.p_value < self.threshold]

    @property
    def rejected(self) -> bool:
        return bool(self.failed)

    def table(self) -> str:
        rows = [f"{len(self.checks)} checks, family-wise alpha {self.alpha:g}, per-check level {self.threshold:.2e}"]
        for c in self.checks:
            flag = "  REJECT" if c.p_value < self.threshold else ""
            rows.append(f"  {c.name:<28} stat {c.statistic:+10.4f}  p {c.p_value:.3e}{flag}")
        return "\n".join(rows)


def _z_check(name: str, est_a: float, var_a: float, est_b: float, var_b: float) -> Check:
    se = np.sqrt(var_a + var_b)
    z = 0.0 if se == 0 else (est_a - est_b) / se
    return Check(name, float(z), float(2 * stats.norm.sf(abs(z))))


def projections(n_projections: int, seed: int) -> np.ndarray:
    """(n_projections, 2) unit vectors at fixed random angles."""
    angles = np.random.default_rng(seed).uniform(0.0, np.pi, n_projections)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def two_sample_battery(
    a: np.ndarray,
    b: np.ndarray,
    mixture: GaussianMixture | None = None,
    alpha: float = FAMILY_ALPHA,
    n_projections: int = 3,
    seed: int = 0,
) -> Battery:
    """Run every check on samples ``a`` (n, 2) and ``b`` (m, 2); see the module docstring.

    Args:
        a, b: the two samples (any float dtype; computed in float64).
        mixture: reference mixture whose components define the modes (None: no mode checks).
        alpha: family-wise false-alarm rate.
        n_projections: random directions for Kolmogorov–Smirnov besides the two axes.
        seed: seed of the directions.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"samples must be (n, d) with equal d, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("samples hold NaN or infinite values")
    na, nb = len(a), len(b)
    out = Battery(alpha=alpha)
    ca, cb = a - a.mean(0), b - b.mean(0)
    d = a.shape[1]
    for j in range(d):
        out.checks.append(_z_check(f"mean x{j + 1}", a[:, j].mean(), a[:, j].var(ddof=1) / na,
                                   b[:, j].mean(), b[:, j].var(ddof=1) / nb))
    for j in range(d):
        va, vb = a[:, j].var(ddof=1), b[:, j].var(ddof=1)
        m4a, m4b = np.mean(ca[:, j] ** 4), np.mean(cb[:, j] ** 4)
        out.checks.append(_z_check(f"variance x{j + 1}", va, (m4a - va**2) / na, vb, (m4b - vb**2) / nb))
    for i in range(d):
        for j in range(i + 1, d):
            pa, pb = ca[:, i] * ca[:, j], cb[:, i] * cb[:, j]
            out.checks.append(_z_check(f"covariance x{i + 1},x{j + 1}", pa.mean(), pa.var(ddof=1) / na,
                                       pb.mean(), pb.var(ddof=1) / nb))
    if mixture is not None:
        ka = np.bincount(mixture.assign(a), minlength=mixture.n_components)
        kb = np.bincount(mixture.assign(b), minlength=mixture.n_components)
        for k in range(mixture.n_components):
            pooled = (ka[k] + kb[k]) / (na + nb)
            var = pooled * (1 - pooled)
            out.checks.append(_z_check(f"mode {k + 1} weight", ka[k] / na, var / na, kb[k] / nb, var / nb))
    for j in range(d):
        res = stats.ks_2samp(a[:, j], b[:, j], method="asymp")
        out.checks.append(Check(f"KS x{j + 1}", float(res.statistic), float(res.pvalue)))
    if d == 2:
        for u in projections(n_projections, seed):
            res = stats.ks_2samp(a @ u, b @ u, method="asymp")
            out.checks.append(Check(f"KS on ({u[0]:+.2f}, {u[1]:+.2f})", float(res.statistic), float(res.pvalue)))
    return out
