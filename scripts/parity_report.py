#!/usr/bin/env python
"""Print the cross-framework parity table: per quantity and device, the max-abs and relative
differences between torch_dsm and jax_dsm on the shared fixtures, and the bound (docs/parity.md).

The numbers come from ``parity_tests/compare.py``, the same functions the tests assert, so the
table and the suite can never disagree. Exit status 1 when a row exceeds its bound.

Usage::

    python scripts/parity_report.py                      # every available device
    python scripts/parity_report.py --device cpu --save parity_tests/REPORT.md
    python scripts/parity_report.py --device cuda        # needs a GPU seen by torch and JAX
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing parity_tests

from parity_tests.compare import COMPARISONS, Result, run_all  # noqa: E402
from parity_tests.devices import Device, available_devices, set_full_float32, set_torch_threads  # noqa: E402
from parity_tests.fixture_data import DEFAULT_PATH, load_fixtures  # noqa: E402


def _device_line(name: str) -> str:
    import torch

    if name == "cuda":
        return f"cuda: {torch.cuda.get_device_name(0)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu: {model} ({os.cpu_count()} cores), torch threads {torch.get_num_threads()}"


def markdown(results: list[Result], devices: list[str]) -> str:
    import flax
    import jax
    import optax
    import torch

    lines = [
        "| quantity | device | max-abs diff | relative diff | bound | within |",
        "|---|---|---:|---:|---|:---:|",
    ]
    for r in results:
        bound = f"{r.bound:.0e} {'relative' if r.bound_on == 'rel' else 'max-abs'}"
        lines.append(f"| {r.quantity} | {r.device} | {r.max_abs:.2e} | {r.rel:.2e} | {bound} | {'yes' if r.ok else '**NO**'} |")
    lines += [
        "",
        "Relative diff = max-abs diff / max |value| over both sides. Bounds: docs/parity.md (float32; forward, loss,",
        "gradients and exact scores relative to the magnitude of the quantity; weights after SGD steps and",
        "sampler states max-abs). Full float32 matmuls on both sides (JAX default matmul precision `highest`,",
        "torch TF32 off). Produced by `scripts/parity_report.py` from `parity_tests/compare.py`.",
        "",
        f"torch {torch.__version__}, jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}, "
        f"numpy {__import__('numpy').__version__}; " + "; ".join(_device_line(d) for d in devices) + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="device of both frameworks (default: every available one)")
    parser.add_argument("--only", nargs="+", choices=list(COMPARISONS), help="only these quantities")
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_PATH, help="fixtures file")
    parser.add_argument("--save", type=Path, help="also write the Markdown table to this file")
    args = parser.parse_args(argv)

    devices = available_devices() if args.device == "all" else [args.device]
    if "cuda" in devices and "cuda" not in available_devices():
        print("parity_report: no CUDA GPU seen by both torch and JAX", file=sys.stderr)
        return 2
    set_full_float32()
    set_torch_threads()
    fx = load_fixtures(args.fixtures)
    results: list[Result] = []
    start = time.perf_counter()
    for name in devices:
        results += run_all(fx, Device(name), args.only)
    text = markdown(results, devices)
    print(text, end="")
    print(f"\n({len(results)} rows in {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    if args.save:
        args.save.write_text(text)
        print(f"saved {args.save}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
