#!/usr/bin/env bash
# The ExLlamaV2 rehearsal (issue 19), offline, on a bare GPU host with PyTorch in its python3
# (plus transformers, ninja, nvcc): installs the carried bundle (scripts/gpu-rehearsal-bundle.sh)
# into two venvs that see the host's torch (the serving one: TabbyAPI's pinned requirements and
# exllamav2; the runner's), builds exllamav2's CUDA extension for this GPU only, makes a tiny
# Llama with fixed-seed random weights, converts it to EXL2 at two bit widths with exllamav2's own
# converter, serves it with TabbyAPI at the pinned commit through the runner's exllama runtime on
# the local backend, runs every phase on a few starter tasks, renders the report and checks it.
# Batched (TabbyAPI's paged mode) when a flash-attn for the host's torch imports (the bundle's
# --flash-attn wheel, or the host's), else unbatched (EXLLAMA_NO_FLASH_ATTN=1); it prints which.
# Prints each step's seconds; exits non-zero at the first failure. The report goes to $OUT if set.
# Usage: scripts/gpu-rehearsal.sh [--preflight] BUNDLE_DIR [WORK_DIR]
#   --preflight: install and check only (TabbyAPI's config model on the runtime's configs, the
#   converter's options, the bundle), no GPU needed. WORK_DIR (default
#   ${RUNNER_CACHE:-~/.cache/runner}/gpu-rehearsal) is kept: a rerun skips the installs, the
#   extension build and the models it already has.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
preflight_only=0
if [ "${1:-}" = "--preflight" ]; then preflight_only=1; shift; fi
bundle="${1:-}"
[ -n "$bundle" ] || { echo "usage: scripts/gpu-rehearsal.sh [--preflight] BUNDLE_DIR [WORK_DIR]" >&2; exit 2; }
bundle="$(cd "$bundle" 2>/dev/null && pwd)" || { echo "no bundle folder $1" >&2; exit 2; }
work="${2:-${RUNNER_CACHE:-$HOME/.cache/runner}/gpu-rehearsal}"
mkdir -p "$work" && work="$(cd "$work" && pwd)"
host_python="${PYTHON:-python3}"
manifest="$(ls "$bundle"/batch-*/manifest.json 2>/dev/null | head -1 || true)"
[ -n "$manifest" ] || { echo "$bundle has no batch-*/manifest.json: carry every batch of the bundle there" >&2; exit 2; }
export PYTHONPATH="$root/scripts${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)
step_start=$started
step() {  # the previous step's time, then the next step's name
  local now; now=$(date +%s)
  [ -z "${step_name:-}" ] || echo "step $step_name: $((now - step_start)) s"
  step_name="$1"; step_start=$now
}
fail() { echo "FAIL $*" >&2; exit 1; }
quiet() {  # run, keep its output in a log, show its tail on failure
  local log="$work/logs/$1.log"; shift
  mkdir -p "$work/logs"
  "$@" >"$log" 2>&1 || { tail -25 "$log" >&2; fail "$(basename "$log" .log) (log: $log)"; }
}

# 0. the host's Python is the bundle's (its wheels are built for one version)
want="$("$host_python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["python_version"])' "$manifest")"
have="$("$host_python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
[ "$want" = "$have" ] || { echo "the bundle is for Python $want, this host's $host_python is $have: make one with --python-version $have" >&2; exit 2; }
"$host_python" -c 'import torch' 2>/dev/null || { echo "$host_python has no torch: the rehearsal uses the host's own PyTorch" >&2; exit 2; }

links=()
for batch in "$bundle"/batch-*/; do links+=(--find-links "$batch"); done
stamp="$(sha256sum "$manifest" | cut -c1-16)"
carried_flash_attn="$("$host_python" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("flash_attn") or "")' "$manifest")"

# 1. the two venvs, from the bundle alone (skipped when this bundle is already installed)
step install
for env in tabby runner; do
  venv="$work/$env-venv"
  if [ "$(cat "$venv/.bundle" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$venv"
    "$host_python" -m venv --system-site-packages "$venv"  # the host's torch and transformers stay visible
    quiet "pip-$env-pip" "$venv/bin/python" -m pip install --no-index "${links[@]}" --upgrade pip
    reqs="$work/$env-requirements.txt"
    "$host_python" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["requirements"][sys.argv[2]]))' \
      "$manifest" "$env" >"$reqs"
    quiet "pip-$env" "$venv/bin/python" -m pip install --no-index "${links[@]}" -r "$reqs"
    if [ "$env" = tabby ]; then  # --no-deps: its torch requirement is the host's torch
      quiet pip-exllamav2 "$venv/bin/python" -m pip install --no-index --no-deps "${links[@]}" \
        "exllamav2==$(PYTHONPATH="$root/scripts" "$host_python" -c 'from gpu_rehearsal import pins; print(pins.EXLLAMAV2_VERSION)')"
      # a flash-attn wheel carried for this host's torch (in parts when over a batch): joined, checked, installed
      quiet join-parts "$host_python" -c 'import sys; from pathlib import Path; from gpu_rehearsal.bundle import join
join(Path(sys.argv[1]), Path(sys.argv[2]))' "$bundle" "$work/joined"
      if [ -n "$carried_flash_attn" ]; then
        wheel="$(ls "$work/joined/$carried_flash_attn" "$bundle"/batch-*/"$carried_flash_attn" 2>/dev/null | head -1 || true)"
        quiet pip-flash-attn "$venv/bin/python" -m pip install --no-index --no-deps "$wheel"
      fi
    else
      quiet pip-runner "$venv/bin/python" -m pip install --no-index "${links[@]}" runner
    fi
    echo "$stamp" >"$venv/.bundle"
  fi
done
tabby_py="$work/tabby-venv/bin/python"
runner_py="$work/runner-venv/bin/python"

# 2. TabbyAPI's source at the carried commit
step tabbyapi
archive="$(ls "$bundle"/batch-*/tabbyAPI-*.tar.gz 2>/dev/null | head -1 || true)"
[ -n "$archive" ] || fail "no tabbyAPI-*.tar.gz in the bundle: make it with --tabbyapi"
commit="$(basename "$archive" .tar.gz)"; commit="${commit#tabbyAPI-}"
tabby="$work/tabbyAPI"
if [ "$(cat "$tabby/.commit" 2>/dev/null)" != "$commit" ]; then
  rm -rf "$tabby" && mkdir -p "$tabby"
  tar -xzf "$archive" -C "$tabby" --strip-components=1
  echo "$commit" >"$tabby/.commit"
fi

# 3. the preflight: TabbyAPI's own config model on the runtime's configs, the converter's options, the bundle
step preflight
quiet preflight-configs "$runner_py" -m gpu_rehearsal.preflight configs "$work/preflight" --tabbyapi "$tabby"
"$tabby_py" -m gpu_rehearsal.preflight check --tabbyapi "$tabby" --configs "$work/preflight" --bundle "$bundle" \
  | tee "$work/preflight.txt" || fail "preflight (see above)"
if [ "$preflight_only" = 1 ]; then step done; exit 0; fi

# 4. exllamav2's CUDA extension, for this GPU's architecture only (all of them would take far longer)
step extension
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: the rehearsal needs an NVIDIA GPU (--preflight does not)"
command -v nvcc >/dev/null || fail "nvcc not found: exllamav2 builds its extension with the CUDA toolkit"
cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)"
export TORCH_CUDA_ARCH_LIST="$cap" MAX_JOBS="${MAX_JOBS:-$(nproc)}" TORCH_EXTENSIONS_DIR="$work/torch-extensions"
# paged (batched) attention needs a flash-attn that imports against this host's torch (carried in the
# bundle with --flash-attn, or the host's own). Without one, TabbyAPI at the pinned commit would still
# ask for paged attention on an Ampere+ GPU and fail to load: EXLLAMA_NO_FLASH_ATTN puts it in its
# compatibility mode instead (one sequence at a time; requests queue), and the run says so
if "$tabby_py" -c 'import torch, flash_attn_2_cuda, flash_attn; print(flash_attn.__version__, flash_attn.__file__)' \
    >"$work/logs/flash-attn.log" 2>&1; then
  unset EXLLAMA_NO_FLASH_ATTN
  batched=yes
  echo "mode: batched (TabbyAPI's paged attention; flash-attn $(tail -1 "$work/logs/flash-attn.log"))"
else
  export EXLLAMA_NO_FLASH_ATTN=1
  batched=no
  [ -z "$carried_flash_attn" ] || echo "WARNING the bundle's $carried_flash_attn does not import against this host's torch: $(tail -1 "$work/logs/flash-attn.log")" >&2
  echo "mode: unbatched (no flash-attn: TabbyAPI's compatibility mode, one sequence at a time)"
fi
quiet extension "$tabby_py" -c 'import exllamav2.ext as e, torch; print("exllamav2_ext", e.ext_c.__file__, torch.__version__, torch.version.cuda)'
tail -1 "$work/logs/extension.log"

# 5. the model: a tiny Llama, fixed-seed random weights, its tokenizer trained on exllamav2's calibration texts
step model
cal="$("$tabby_py" -c 'import importlib.util as u, os; print(os.path.join(list(u.find_spec("exllamav2").submodule_search_locations)[0], "conversion", "standard_cal_data"))')"
if [ ! -f "$work/model-fp16/config.json" ]; then
  quiet make-model "$tabby_py" -m gpu_rehearsal.make_model "$work/model-fp16" --corpus "$cal/code.utf8" --corpus "$cal/c4.utf8"
fi
tail -1 "$work/logs/make-model.log" 2>/dev/null || true

# 6. EXL2 at both bit widths: one measurement pass, reused by each (the converter's own options, pins.py)
step convert
mapfile -t bits < <("$tabby_py" -c 'from gpu_rehearsal import pins; print("\n".join(pins.BITS))')
models=()
for b in "${bits[@]}"; do
  out="$work/models/tiny-llama-exl2-$b"
  models+=(--model "$b=$out")
  [ -f "$out/config.json" ] && ls "$out"/*.safetensors >/dev/null 2>&1 && continue
  if [ ! -f "$work/measurement.json" ]; then
    mapfile -t argv < <("$tabby_py" -c 'import sys; from pathlib import Path; from gpu_rehearsal import pins
print("\n".join(pins.measure_argv(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))))' \
      "$work/model-fp16" "$work/convert-measure" "$work/measurement.json")
    quiet convert-measure "$tabby_py" "${argv[@]}"
    [ -f "$work/measurement.json" ] || fail "the converter wrote no measurement (log: $work/logs/convert-measure.log)"
  fi
  rm -rf "$out"
  mapfile -t argv < <("$tabby_py" -c 'import sys; from pathlib import Path; from gpu_rehearsal import pins
print("\n".join(pins.convert_argv(*map(Path, sys.argv[1:4]), sys.argv[4], Path(sys.argv[5]))))' \
    "$work/model-fp16" "$work/convert-$b" "$out" "$b" "$work/measurement.json")
  quiet "convert-$b" "$tabby_py" "${argv[@]}"
  # the converter says its own errors and exits 0: the folder is the proof
  ls "$out"/*.safetensors >/dev/null 2>&1 && [ -f "$out/config.json" ] \
    || fail "no EXL2 folder at $out (log: $work/logs/convert-$b.log)"
  echo "exl2-$b: $(du -sh "$out" | cut -f1)"
done

# 7. the matrix and the run: TabbyAPI's python3 first on PATH (the runtime launches `python3 main.py`)
step run
python_only=()
command -v javac >/dev/null || python_only=(--python-only)  # no JDK: the Java tasks could not be judged
quiet matrix "$runner_py" -m gpu_rehearsal.matrix "$work/rehearsal.toml" "${models[@]}" "${python_only[@]}"
rm -rf "$work/runs/gpu-rehearsal"
PATH="$work/tabby-venv/bin:$PATH" RUNNER_TABBYAPI_DIR="$tabby" RUNNER_HOME="$work/home" \
  quiet reproduce "$runner_py" -m runner.cli reproduce "$work/rehearsal.toml" --runs-dir "$work/runs" \
  ${REHEARSAL_REPRODUCE_ARGS:-}

# 8. the report, and what it must show
step report
RUNNER_HOME="$work/home" quiet report "$runner_py" -m runner.cli report "$work/runs/gpu-rehearsal" -o "$work/report"
status=0
"$runner_py" -m gpu_rehearsal.check_run "$work/runs/gpu-rehearsal" "$work/report" --batched "$batched" \
  | tee "$work/check.txt" || status=1
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/gpu-rehearsal"
  cp -r "$work/report" "$OUT/gpu-rehearsal/report"
  cp "$work/preflight.txt" "$work/check.txt" "$work/rehearsal.toml" "$OUT/gpu-rehearsal/"
  cp -r "$work/logs" "$OUT/gpu-rehearsal/logs"
  cp "$work/runs/gpu-rehearsal/manifest.json" "$OUT/gpu-rehearsal/" 2>/dev/null || true
  find "$work/runs/gpu-rehearsal" -name 'server*.log' -exec cp --parents {} "$OUT/gpu-rehearsal/" \; 2>/dev/null || true
fi
step done
echo "total_s $(( $(date +%s) - started ))"
exit $status
