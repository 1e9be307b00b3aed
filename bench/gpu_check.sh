#!/usr/bin/env bash
# GPU check (bench/gpu_check.py): NCCL, Qwen3-1.7B-shaped bf16 training (tokens/s, MFU, peak memory), conversion
# and a bf16 eval on one GPU in a few minutes. --smoke (or GPU_CHECK_SMOKE=1): the same stages on the CPU.
# The summary goes to --out, else $OUT, else bench/results/. See bench/README.md, "GPU check".
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -f .venv/bin/activate ]]; then
    . .venv/bin/activate
fi
exec python bench/gpu_check.py "$@"
