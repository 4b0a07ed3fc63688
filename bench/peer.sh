#!/bin/sh
# make bench-peer: the shared side-by-side harness (../shared/bench) against this checkout's
# envgrid, with Node-RED 5 + node-red-contrib-influxdb's batch node measured in the same run.
# Installs the peers under /tmp/peerbench first (npm and pip; takes a few minutes once).
#
#   bench/peer.sh                       # 3 runs x 50,000 readings, burst and --preload
#   bench/peer.sh -n 20000 --runs 1     # anything compare.sh takes
#   bench/peer.sh -- --devices 100000   # ... and peerbench options after --
#   SHARED=/path/to/shared/bench bench/peer.sh
#   SUT='exec envgrid run --workers 2' LABEL='envgrid --workers 2' bench/peer.sh -- --settle 5
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
[ -x "$SHARED/compare.sh" ] || { echo "bench/peer.sh: no harness at $SHARED (set SHARED=)" >&2; exit 2; }
[ -x "$ROOT/.venv/bin/envgrid" ] || { echo "bench/peer.sh: run 'make setup' first" >&2; exit 2; }
WITH_MQTT2INFLUXDB=${WITH_MQTT2INFLUXDB:-0} sh "$SHARED/setup_peers.sh" >&2
SUT=${SUT:-exec $ROOT/.venv/bin/envgrid run}
case $SUT in exec\ envgrid*) SUT="exec $ROOT/.venv/bin/${SUT#exec }" ;; esac
exec "$SHARED/compare.sh" --scheme envgrid --sut-cmd "$SUT" --label "${LABEL:-envgrid}" "$@"
