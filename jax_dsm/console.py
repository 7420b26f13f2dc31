"""The ``dsm-jax`` console script: Ctrl-C while JAX and Flax are still being imported (the first
seconds) gets the same one line as later, not Python's report. Mirror: ``torch_dsm/console.py``."""

from __future__ import annotations

import sys


def main() -> None:
    """Import the command line, then run it (``jax_dsm.cli.main``)."""
    try:
        from jax_dsm.cli import main as run
    except KeyboardInterrupt:
        print("dsm-jax: interrupted before the run started", file=sys.stderr)
        raise SystemExit(130) from None
    run()
