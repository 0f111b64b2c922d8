#!/usr/bin/env bash
# Put into build/ what the CPU variants of the images take from the build context on a machine
# that cannot pull base images (CI here): build them FROM runner-base:bookworm
# (scripts/docker-base-image.sh). On a GPU host none of this is needed.
#   sandbox [full|minimal]  build/sandbox-context/python3.10 (a CPython 3.10 prefix, from pyenv
#                           or $PYTHON310_PREFIX) and, for full, build/sandbox-context/wheels
#                           (docker/sandbox-requirements.lock's files, hash-checked, for CPython 3.10)
#   llamacpp                build/llama-server-cpu/bin/llama-server, the binary that
#                           scripts/build-llama-server.sh built for the local backend (same sdist,
#                           same script), built first when missing
# Idempotent: what is already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:?usage: docker-local-context.sh sandbox [full|minimal] | llamacpp}"

case "$what" in
sandbox)
  stack="${2:-minimal}"
  ctx=build/sandbox-context
  mkdir -p "$ctx"
  prefix="${PYTHON310_PREFIX:-}"
  if [ -z "$prefix" ]; then
    prefix="$(find "${PYENV_ROOT:-$HOME/.pyenv}/versions" -maxdepth 1 -name '3.10.*' 2>/dev/null | sort -V | tail -1 || true)"
  fi
  [ -x "$prefix/bin/python3.10" ] || {
    echo "no CPython 3.10 prefix found: install one (pyenv install 3.10) or set PYTHON310_PREFIX" >&2; exit 1; }
  if [ ! -x "$ctx/python3.10/bin/python3.10" ]; then
    rm -rf "$ctx/python3.10.tmp"
    # only the interpreter and its standard library: no host site-packages, tests or caches
    mkdir -p "$ctx/python3.10.tmp"
    cp -a "$prefix/bin" "$prefix/include" "$ctx/python3.10.tmp/"
    mkdir -p "$ctx/python3.10.tmp/lib"
    cp -a "$prefix"/lib/libpython3.10* "$ctx/python3.10.tmp/lib/" 2>/dev/null || true
    tar -C "$prefix/lib" --exclude='__pycache__' --exclude='python3.10/test' \
        --exclude='python3.10/site-packages/*' -cf - python3.10 | tar -C "$ctx/python3.10.tmp/lib" -xf -
    # host launchers point at the host prefix; pip and setuptools come back in the image from
    # the interpreter's own bundled wheels (ensurepip)
    rm -f "$ctx"/python3.10.tmp/bin/pip* "$ctx"/python3.10.tmp/bin/easy_install*
    mv "$ctx/python3.10.tmp" "$ctx/python3.10"
  fi
  lock_sha="$(sha256sum docker/sandbox-requirements.lock | cut -d' ' -f1)"
  if [ "$stack" = full ] && [ "$(cat "$ctx/wheels/.complete" 2>/dev/null)" != "$lock_sha" ]; then
    # exactly the lock's files, each checked against its hash; a changed lock starts afresh
    rm -rf "$ctx/wheels"; mkdir -p "$ctx/wheels"
    "$prefix/bin/python3.10" -m pip download --quiet --disable-pip-version-check --prefer-binary \
      --require-hashes --no-deps -d "$ctx/wheels" -r docker/sandbox-requirements.lock
    echo "$lock_sha" > "$ctx/wheels/.complete"
  fi
  ;;
llamacpp)
  version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
  cache="${RUNNER_CACHE:-${RUNNER_HOME:-$HOME/.cache/runner}}/llama.cpp/${version}-cpu"
  bash scripts/build-llama-server.sh "$cache"
  mkdir -p build/llama-server-cpu/bin
  cp -p "$cache/bin/llama-server" build/llama-server-cpu/bin/
  echo "$version" > build/llama-server-cpu/VERSION
  ;;
*) echo "unknown target $what" >&2; exit 2 ;;
esac
