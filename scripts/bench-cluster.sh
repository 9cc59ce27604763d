#!/usr/bin/env bash
# Join time and signaling latency on a cluster of three nodes (docs/cluster.md) against one
# node without [cluster], with `sfu-lite load --signal-only`. Loopback only; needs
# redis-server. Uses target/release/sfu-lite and sfu-lite-load (cargo build --release
# --workspace first), or $SFU_BIN and $SFU_LOAD_BIN.
#
#   scripts/bench-cluster.sh [PEERS] [ROOMS]     (default 90 peers in 30 rooms)
#
# Prints one load summary per scenario (server CPU: every node and Redis):
#   single   one node, no cluster
#   via-one  three nodes, every peer enters through node 1 (2 rooms in 3 are hosted
#            elsewhere: those joins take a room_elsewhere hop)
#   via-all  three nodes, peer i enters through node (i mod 3)
# then, for the tutorial's namespace `/` (tests/js/bench/tutorial_relay.mjs, TUTORIAL clients,
# default 60), one JSON line on one node and one on three (roster and messages through Redis).
set -euo pipefail
# Every peer comes from 127.0.0.1: the per-address limits would refuse most of them.
export SFU_LITE_SERVER_MAX_CONNECTIONS_PER_ADDRESS=0 SFU_LITE_SERVER_HANDSHAKES_PER_ADDRESS_PER_SECOND=0
cd "$(dirname "$0")/.."
BIN=${SFU_BIN:-target/release/sfu-lite}
LOAD=${SFU_LOAD_BIN:-$(dirname "$BIN")/sfu-lite-load}
PEERS=${1:-90}
ROOMS=${2:-30}
RPORT=${RPORT:-6391}
BASE=${BASE:-8310}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

load() {
  "$LOAD" --signal-only --peers "$PEERS" --rooms "$ROOMS" --ramp 30/s --duration 10s \
    --url "$1" --server-pid "$2"
}
TUTORIAL=${TUTORIAL:-60}
tutorial() { node tests/js/bench/tutorial_relay.mjs "$1" "$2" "$TUTORIAL" 50; }

echo "== single"
"$BIN" serve --listen 127.0.0.1:$BASE >/dev/null 2>&1 & pids+=($!)
wait_port $BASE
load "http://127.0.0.1:$BASE" "${pids[-1]}"
echo "== tutorial single"
tutorial "http://127.0.0.1:$BASE" "${pids[-1]}"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

redis-server --port $RPORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
redis=$!
wait_port $RPORT
nodes=()
for i in 1 2 3; do
  port=$((BASE + i))
  SFU_LITE_CLUSTER_REDIS_URL=redis://127.0.0.1:$RPORT/ SFU_LITE_CLUSTER_NODE_ID=node$i \
    SFU_LITE_CLUSTER_URL=http://127.0.0.1:$port \
    "$BIN" serve --listen 127.0.0.1:$port >/dev/null 2>&1 & pids+=($!)
  nodes+=($!)
  wait_port $port
done
sleep 2 # two heartbeats: every node registered
all_pids=$(IFS=,; echo "${nodes[*]},$redis")
all_urls="http://127.0.0.1:$((BASE + 1)),http://127.0.0.1:$((BASE + 2)),http://127.0.0.1:$((BASE + 3))"
echo "== via-one"
load "http://127.0.0.1:$((BASE + 1))" "$all_pids"
echo "== via-all"
load "$all_urls" "$all_pids"
echo "== tutorial on three nodes"
tutorial "$all_urls" "$all_pids"
