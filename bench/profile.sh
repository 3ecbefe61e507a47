#!/usr/bin/env bash
# Profiles Switchyard under wrk load (1 KiB bodies, -c50, pinned like `npm run bench`) with
# `node --cpu-prof`, then summarises the profile (bench/analyze-profile.mjs: areas, top self
# time, Switchyard's functions mapped back to src/ with callers and callees).
# Knobs: DURATION [15] SIZES [1k] PROF_DIR [/tmp/switchyard-prof] TARGETS [switchyard]
# (TARGETS=ceiling profiles bench/ceiling-proxy.mjs instead), plus run.mjs's knobs.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROF_DIR=${PROF_DIR:-/tmp/switchyard-prof}
rm -rf "$PROF_DIR" && mkdir -p "$PROF_DIR"
TARGETS=${TARGETS:-switchyard} SIZES=${SIZES:-1k} ROUNDS=1 DURATION=${DURATION:-15} HIGH_CONNS=0 \
  NODE_OPTS="--cpu-prof --cpu-prof-dir=$PROF_DIR ${NODE_OPTS:-}" node "$HERE/run.mjs" >&2
for f in "$PROF_DIR"/*.cpuprofile; do
  echo "# $f"
  node "$HERE/analyze-profile.mjs" "$f" "${TOP:-30}"
done
