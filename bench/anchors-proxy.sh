#!/usr/bin/env bash
# Runs Switchyard as the extra proxy of ../shared/bench/anchors.sh, which starts PROXY_CMD with
# PORT (where to listen) and UPSTREAM (host:port of its nginx origin) in the environment:
#
#   PROXY_CMD="bash /work/main/bench/anchors-proxy.sh" PROXY_NAME=switchyard \
#     SUITES=pinned ROUNDS=3 /work/shared/bench/anchors.sh
#
# The config is the smallest one that proxies everything to UPSTREAM (one route, one server),
# with the per-address connection cap raised because every benchmark client is 127.0.0.1.
# Build first (npx tsc -p tsconfig.build.json); this script builds only when dist/ is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${PORT:?PORT is required}
UPSTREAM=${UPSTREAM:-127.0.0.1:9001}
CONFIG=${TMPDIR:-/tmp}/switchyard-anchors-$PORT.yaml
cat >"$CONFIG" <<YAML
listeners:
  - name: bench
    address: 127.0.0.1:$PORT
    limits:
      maxConnections: 100000
      maxConnectionsPerIp: 100000
      idleTimeout: 75s
upstreams:
  origin:
    servers:
      - url: http://$UPSTREAM
routes:
  - upstream: origin
YAML
[[ -f $ROOT/dist/cli.js ]] || (cd "$ROOT" && npx tsc -p tsconfig.build.json >&2)
# bin/switchyard starts node with the heap flags of src/heap-tuning.ts.
exec "$ROOT/bin/switchyard" run -c "$CONFIG"
