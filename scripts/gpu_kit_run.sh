#!/usr/bin/env bash
# Runs `deno task check:gpu` on a machine without network from the kit that
# scripts/make_gpu_kit.sh made: unpacks deno into a temporary folder and node_modules into the
# tree (unless it is there), then runs the check with --cached-only. Arguments go to the check.
#
#   bash scripts/gpu_kit_run.sh --out DIR [--quick] [--budget SECONDS] [--memory BYTES]
#   GPU_KIT=path/to/kit bash scripts/gpu_kit_run.sh --out DIR     (default kit: gpu-kit/)
set -euo pipefail
cd "$(dirname "$0")/.."
kit=${GPU_KIT:-gpu-kit}
[ -f "$kit/deno.xz" ] || { echo "gpu_kit_run: no $kit/deno.xz (make it with scripts/make_gpu_kit.sh)" >&2; exit 1; }
(cd "$kit" && sha256sum -c --quiet SHA256SUMS)
bin=$(mktemp -d)
xz -dc "$kit/deno.xz" > "$bin/deno"
chmod +x "$bin/deno"
[ -d node_modules ] || tar -xJf "$kit/node_modules.tar.xz"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} DENO_NO_UPDATE_CHECK=1
exec "$bin/deno" run --allow-all --cached-only scripts/check_gpu.ts "$@"
