#!/usr/bin/env bash
# `make gpu-check`: the GPU paths for real on one NVIDIA GPU (scripts/gpu_check.py); one line and exit 0 elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${VENV:-.venv}/bin/python" scripts/gpu_check.py "$@"
