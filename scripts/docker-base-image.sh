#!/usr/bin/env bash
# Build the local base image `runner-base:bookworm` (Debian bookworm, minbase) with debootstrap,
# for machines that cannot pull from a registry (CI here). The CPU variants of the Dockerfiles
# build FROM it (`--build-arg BASE=runner-base:bookworm`). Idempotent: skips when the image exists.
# Usage: scripts/docker-base-image.sh [IMAGE] [SUITE] [MIRROR]
set -euo pipefail
image="${1:-runner-base:bookworm}"
suite="${2:-bookworm}"
mirror="${3:-}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image already exists" >&2; exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
root="$(mktemp -d)"; trap 'rm -rf "$root"' EXIT
# minbase: essential packages and apt only; the Dockerfiles add what each image needs
debootstrap --variant=minbase "$suite" "$root" ${mirror:+"$mirror"} >&2
# apt lists and caches would only make every layer built on top larger
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - "$image" >&2
echo "built $image" >&2
