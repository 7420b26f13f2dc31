"""Import isolation: ``torch_dsm`` and ``dsm_common`` never import JAX; ``jax_dsm`` never imports torch."""

from __future__ import annotations

import sys

import pytest
from conftest import run_subprocess

CHECK = "import sys; {imports}; bad = sorted(m for m in sys.modules if {cond}); assert not bad, bad; print('ok')"


JAX = ("jax", "jaxlib", "flax", "optax")
TORCH = ("torch", "lightning", "pytorch_lightning")
DSM_COMMON = ("dsm_common, dsm_common.datasets, dsm_common.metrics, dsm_common.report, dsm_common.commands, "
              "dsm_common.weights, dsm_common.registry, dsm_common.config, dsm_common.generate, dsm_common.finish, "
              "dsm_common.init, dsm_common.testing")


@pytest.mark.parametrize("modules, forbidden", [
    pytest.param(f"{DSM_COMMON}, torch_dsm, torch_dsm.cli, torch_dsm.weights, torch_dsm.mixtures", JAX, id="torch_dsm"),
    pytest.param(DSM_COMMON, JAX + TORCH, id="dsm_common"),
    pytest.param("jax_dsm, jax_dsm.cli", TORCH, id="jax_dsm"),
])
def test_a_package_imports_only_its_own_framework(modules, forbidden):
    cond = f"m in {forbidden!r} or m.startswith({tuple(f + '.' for f in forbidden)!r})"
    proc = run_subprocess([sys.executable, "-c", CHECK.format(imports=f"import {modules}", cond=cond)], timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
