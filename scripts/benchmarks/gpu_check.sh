#!/usr/bin/env bash
# Everything that needs a GPU, in one go: the `gpu` tests and an XL bf16 forward at 240p/4 s (see gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python scripts/benchmarks/gpu_check.py "$@"
