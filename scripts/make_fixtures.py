#!/usr/bin/env python
"""Write the parity suite's shared fixtures (``parity_tests/fixtures.npz``).

Deterministic in the numpy seed: running it again reproduces the file array for array
(``parity_tests/test_fixtures.py`` checks this). What the file holds is documented in
``parity_tests/fixture_data.py``.

Usage: ``python scripts/make_fixtures.py [--out PATH] [--seed N]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from parity_tests.fixture_data import DEFAULT_PATH, SEED, load_fixtures, save_fixtures  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help=f"output .npz (default: {DEFAULT_PATH})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"numpy seed (default: {SEED})")
    args = parser.parse_args(argv)
    path = save_fixtures(args.out, args.seed)
    fx = load_fixtures(path)
    print(f"wrote {path}: {len(fx)} arrays, {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
