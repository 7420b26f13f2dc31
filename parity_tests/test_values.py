"""Value parity with shared inputs (docs/parity.md): every quantity of ``compare.py`` on every device.

The measured numbers and bounds are those of ``scripts/parity_report.py`` (the same functions).
"""

from __future__ import annotations

import pytest

from parity_tests.compare import COMPARISONS


@pytest.mark.parametrize("quantity", list(COMPARISONS))
def test_value_parity(quantity, fx, device):
    results = COMPARISONS[quantity](fx, device)
    assert results
    report = "\n".join(str(r) for r in results)
    print(report)
    assert all(r.ok for r in results), report
