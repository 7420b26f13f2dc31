"""Import isolation: ``torch_dsm`` and ``dsm_common`` never import JAX; ``jax_dsm`` never imports torch."""

from __future__ import annotations

import sys

from conftest import run_subprocess

CHECK = "import sys; {imports}; bad = sorted(m for m in sys.modules if {cond}); assert not bad, bad; print('ok')"


def test_torch_dsm_and_dsm_common_do_not_import_jax():
    code = CHECK.format(
        imports="import dsm_common, dsm_common.datasets, dsm_common.metrics, dsm_common.report, dsm_common.commands, "
                "dsm_common.weights, torch_dsm, torch_dsm.cli, torch_dsm.weights, torch_dsm.mixtures",
        cond="m in ('jax', 'jaxlib', 'flax', 'optax') or m.startswith(('jax.', 'jaxlib.', 'flax.', 'optax.'))",
    )
    proc = run_subprocess([sys.executable, "-c", code], timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_dsm_common_alone_imports_neither_framework():
    code = CHECK.format(
        imports="import dsm_common, dsm_common.datasets, dsm_common.metrics, dsm_common.report, dsm_common.commands, "
                "dsm_common.weights, dsm_common.registry, dsm_common.config, dsm_common.generate, dsm_common.finish, "
                "dsm_common.init, dsm_common.testing",
        cond="m in ('jax', 'torch', 'lightning') or m.startswith(('jax.', 'torch.', 'lightning.'))",
    )
    proc = run_subprocess([sys.executable, "-c", code], timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_jax_dsm_does_not_import_torch():
    code = CHECK.format(
        imports="import jax_dsm, jax_dsm.cli",
        cond="m in ('torch', 'lightning', 'pytorch_lightning') or m.startswith(('torch.', 'lightning.'))",
    )
    proc = run_subprocess([sys.executable, "-c", code], timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
