#!/usr/bin/env bash
# Packs what `deno task check:gpu` needs beyond the working tree, for a GPU machine that has no
# network and receives a copy of the tree of at most 64 MiB: gpu-kit/ beside the tree (ignored
# by git) with
#   deno.xz              this machine's deno binary, xz -6 (about 30.5 MB for Deno 2.9.6)
#   node_modules.tar.xz  the project's node_modules, tar + xz -6 (about 12 MB)
#   SHA256SUMS           checksums of both
# On the GPU machine, from the tree's root: bash scripts/gpu_kit_run.sh --out DIR
# (docs/seed.md has the whole procedure).
#
#   bash scripts/make_gpu_kit.sh [KIT_DIR]      (default gpu-kit)
set -euo pipefail
cd "$(dirname "$0")/.."
kit=${1:-gpu-kit}
deno_bin=$(readlink -f "$(command -v deno)")
[ -x "$deno_bin" ] || { echo "make_gpu_kit: no deno on PATH" >&2; exit 1; }
# Everything the check imports must already be in node_modules: a run with --cached-only
# fails here, not on the machine without network.
deno check --cached-only main.ts scripts/check_gpu.ts bench/ >/dev/null 2>&1 || {
  echo "make_gpu_kit: 'deno check --cached-only main.ts scripts/check_gpu.ts bench/' fails here: cache the imports first (any deno task)" >&2
  exit 1
}
[ -d node_modules ] || { echo "make_gpu_kit: no node_modules/ (run any deno task once)" >&2; exit 1; }
mkdir -p "$kit"
xz -6 -T0 -c "$deno_bin" > "$kit/deno.xz.tmp" && mv "$kit/deno.xz.tmp" "$kit/deno.xz"
tar -cf - node_modules | xz -6 -T0 > "$kit/node_modules.tar.xz.tmp"
mv "$kit/node_modules.tar.xz.tmp" "$kit/node_modules.tar.xz"
(cd "$kit" && sha256sum deno.xz node_modules.tar.xz > SHA256SUMS)
tree_bytes=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
kit_bytes=$(du -cb "$kit"/deno.xz "$kit"/node_modules.tar.xz | tail -1 | cut -f1)
echo "gpu kit in $kit/: $(du -h "$kit/deno.xz" | cut -f1) deno ($("$deno_bin" --version | head -1)), $(du -h "$kit/node_modules.tar.xz" | cut -f1) node_modules"
echo "kit + tracked files: $(( (kit_bytes + tree_bytes) / 1048576 )) MiB of 64 MiB"
