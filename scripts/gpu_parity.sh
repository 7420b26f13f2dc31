#!/usr/bin/env bash
# The GPU part of the parity suite: every device-parametrised parity test on "cuda" (value,
# distribution and training parity; full float32, TF32 off on both sides, asserted), then the
# parity table for the GPU. The value-parity tests run first (about 70 s on an H200), then the
# distribution, initial-weight and training tests (several minutes there: many short runs,
# each compiled anew), then the table; the slow cases are left out. Exits 0 with a message,
# running nothing, where torch and JAX do not both see a CUDA GPU. Extra arguments go to
# pytest.
#
#   scripts/gpu_parity.sh            # tests, then the table
#   PYTHON=/path/to/python scripts/gpu_parity.sh -x
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
# torch and JAX share the GPU in one process: JAX must not grab 75 % of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"

if ! "$PYTHON" -c 'import sys; from parity_tests.devices import gpu_available; sys.exit(0 if gpu_available() else 1)'; then
    echo "gpu_parity: no CUDA GPU seen by both torch and JAX (torch.cuda.is_available() and jax.devices('gpu')); skipped."
    exit 0
fi

status=0
"$PYTHON" -m pytest parity_tests/test_values.py -m "gpu and not slow" -q -p no:cacheprovider "$@" || status=$?
"$PYTHON" -m pytest parity_tests -m "gpu and not slow" -q -p no:cacheprovider --deselect parity_tests/test_values.py \
    "$@" || status=$?
echo
"$PYTHON" scripts/parity_report.py --device cuda || status=$?
exit "$status"
