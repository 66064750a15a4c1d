#!/usr/bin/env bash
# Exports a snapshot checkpoint of a meta-training run that is still going, without
# disturbing it: copies the run's state and lets `train --resume --stop-after 0
# --save-partial` write the checkpoint from the copy (marked unfinished in its metadata).
# usage: tools/export_partial.sh RUN_DIR OUT NAME [train flags of the run ...]
set -euo pipefail
run_dir=$1 out=$2 name=$3
shift 3
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
cp "$run_dir/state.safetensors" "$copy/"
"${PYTHON:-.venv/bin/python}" -m metaviz train "$@" --run-dir "$copy" --out "$out" --name "$name" \
  --resume --stop-after 0 --save-partial
