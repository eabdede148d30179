#!/usr/bin/env bash
# One-time set-up on a Debian machine that has Node.js and npm: Deno from the npm registry and,
# where no GPU driver is present, Mesa's software Vulkan driver (lavapipe). Idempotent.
set -euo pipefail
DENO_VERSION=2.9.6
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

if ! command -v deno >/dev/null 2>&1 || ! deno --version | head -n 1 | grep -q " ${DENO_VERSION} "; then
  echo "setup: installing Deno ${DENO_VERSION} from the npm registry" >&2
  $SUDO npm install -g "deno@${DENO_VERSION}" >&2
fi

# A Vulkan driver: any ICD file in either folder means one is installed (a GPU's, or
# lavapipe). Either folder may be missing, so look at each on its own.
have_icd() {
  local f
  for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [ -e "$f" ] && return 0
  done
  return 1
}
if ! have_icd; then
  echo "setup: no Vulkan driver found; installing the software one (mesa-vulkan-drivers)" >&2
  $SUDO apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers >&2
fi
deno --version | head -n 1 >&2
