#!/usr/bin/env bash
# Build llama.cpp's C++ server (llama-server) from the llama.cpp tree vendored in the pinned
# llama-cpp-python sdist, so that local and container cells run the same server.
# Usage: scripts/build-llama-server.sh DEST_DIR [extra cmake flags, e.g. -DGGML_CUDA=ON]
# Builds llama-server, llama-bench and llama-quantize (the quantization ladder is made with the
# same source as the server that serves it); only the binaries DEST_DIR/bin lacks are built.
# $PYTHON (default python3) runs pip to fetch the sdist; $LLAMA_CPP_SDIST skips the download, and
# $LLAMA_CPP_SRC (the sdist's vendor/llama.cpp, already unpacked) skips the unpacking too: for a host
# that cannot reach PyPI (the source is carried there).
# The sdist, downloaded or given, must have the sha256 PyPI lists for it (the table below, or
# $LLAMA_CPP_SDIST_SHA256 for another version): the server is built from exactly that source.
set -euo pipefail
LLAMA_CPP_PYTHON_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
case "$LLAMA_CPP_PYTHON_VERSION" in
  # https://pypi.org/project/llama-cpp-python/0.3.36/#files (llama_cpp_python-0.3.36.tar.gz)
  0.3.36) sdist_sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e ;;
  *) sdist_sha256="" ;;
esac
sdist_sha256="${LLAMA_CPP_SDIST_SHA256:-$sdist_sha256}"
dest="${1:?usage: build-llama-server.sh DEST_DIR [cmake flags]}"; shift || true
targets=()
for target in llama-server llama-bench llama-quantize; do
  [ -x "$dest/bin/$target" ] || targets+=("$target")
done
if [ "${#targets[@]}" -eq 0 ]; then
  echo "llama-server, llama-bench and llama-quantize already built in $dest" >&2; exit 0
fi
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
sdist="${LLAMA_CPP_SDIST:-}"
src="${LLAMA_CPP_SRC:-}"
if [ -n "$src" ]; then
  [ -f "$src/CMakeLists.txt" ] || { echo "LLAMA_CPP_SRC=$src holds no CMakeLists.txt: not a llama.cpp tree" >&2; exit 2; }
elif [ -z "$sdist" ]; then
  "${PYTHON:-python3}" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}" -d "$work" 2>/dev/null \
  || "${PYTHON:-python3}" -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}" -d "$work"
  sdist="$(ls "$work"/llama_cpp_python-*.tar.gz)"
fi
if [ -z "$src" ]; then
  [ -f "$sdist" ] || { echo "llama-cpp-python sdist $sdist: No such file" >&2; exit 2; }
  [ -n "$sdist_sha256" ] || {
    echo "no sha256 known for llama-cpp-python $LLAMA_CPP_PYTHON_VERSION: set LLAMA_CPP_SDIST_SHA256 (PyPI lists it)" >&2; exit 2; }
  got="$(sha256sum "$sdist" | cut -d' ' -f1)"
  [ "$got" = "$sdist_sha256" ] || {
    echo "$sdist has sha256 $got, not llama-cpp-python $LLAMA_CPP_PYTHON_VERSION's $sdist_sha256" >&2; exit 2; }
  tar -xzf "$sdist" -C "$work"
  src="$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp)"
fi
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF "$@" >&2
cmake --build "$work/build" --config Release -j"$(nproc)" --target "${targets[@]}" >&2
mkdir -p "$dest/bin"
for target in "${targets[@]}"; do cp "$work/build/bin/$target" "$dest/bin/"; done
echo "$LLAMA_CPP_PYTHON_VERSION" > "$dest/VERSION"
echo "built ${targets[*]} in $dest/bin" >&2
