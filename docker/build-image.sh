#!/usr/bin/env bash
# Builds the synod-node image offline: a statically linked binary in a
# FROM scratch image. Usage: docker/build-image.sh [TAG]  (default synod-node:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-synod-node:latest}"
target=x86_64-unknown-linux-gnu

# A static glibc build; the explicit --target keeps proc-macro crates (built
# for the host) dynamic, which they must be.
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" -p synod-server --bins

# Stage a context of five entries so nothing else is sent to the daemon.
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
out="${CARGO_TARGET_DIR:-target}/$target/release"
cp "$out/synod-node" "$out/synod-healthcheck" "$ctx/"
# Debug symbols are most of the binaries' size and no use in the image.
if command -v strip >/dev/null; then
  strip "$ctx/synod-node" "$ctx/synod-healthcheck"
fi
cp docker/Dockerfile "$ctx/"
mkdir -p "$ctx/data" "$ctx/tmp"
chmod 1777 "$ctx/tmp"
docker build --quiet --tag "$tag" "$ctx" >/dev/null
docker image inspect "$tag" --format "built {{.RepoTags}} {{.Size}} bytes"
