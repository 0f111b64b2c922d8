#!/usr/bin/env bash
# The GPU rehearsal's bundle, made on a machine with PyPI (scripts/gpu_rehearsal/bundle.py says
# what it holds): wheels for the GPU host's Python (default 3.12, assumed: give its python3's
# version), exllamav2 at the version Dockerfile.exllama pins, the runner's own wheel, and TabbyAPI's
# source at the pinned commit from a git directory or archive. Split into DIR/batch-N folders of at
# most 60 MiB each (the host takes 64 MiB at a time); never torch or CUDA wheels.
# Usage: scripts/gpu-rehearsal-bundle.sh DIR [--python-version 3.12] [--tabbyapi GIT_DIR_OR_ARCHIVE]
#   e.g. scripts/gpu-rehearsal-bundle.sh .gpu-bundle --tabbyapi ~/src/tabbyAPI/.git   (.gpu-bundle is gitignored)
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
command -v "$python" >/dev/null || { echo "no runner venv at $python: run \`make venv\` first" >&2; exit 2; }
PYTHONPATH="$(pwd)/scripts" exec "$python" -m gpu_rehearsal.bundle "$@"
