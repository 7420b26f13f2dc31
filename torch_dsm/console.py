"""The ``dsm-torch`` console script: Ctrl-C while torch and Lightning are still being imported (the first
seconds) gets the same one line as later, not Python's report. Mirror: ``jax_dsm/console.py``."""

from __future__ import annotations

import sys


def main() -> None:
    """Import the command line, then run it (``torch_dsm.cli.main``)."""
    try:
        from torch_dsm.cli import main as run
    except KeyboardInterrupt:
        print("dsm-torch: interrupted before the run started", file=sys.stderr)
        raise SystemExit(130) from None
    run()
