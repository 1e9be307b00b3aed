#!/usr/bin/env bash
# The seed's convenience wrapper: ./run.sh [config/experiments/<exp>/pipeline.yaml] [snakemake args...]
# Installs the project into .venv on first use, then runs the pipeline for that experiment.
set -euo pipefail
cd "$(dirname "$0")"
make --no-print-directory install >&2
exec .venv/bin/python scripts/run.py -c "${1:-config/experiments/demo/pipeline.yaml}" "${@:2}"
