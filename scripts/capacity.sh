#!/usr/bin/env bash
# Capacity: raises the number of participants of one scenario, a fresh server for each size,
# until the receivers see more than 1 % loss, a packet latency p99 above 50 ms, or a peer that
# could not join, and reports the last size that held. A benchmark, not a test.
#
#   scripts/capacity.sh [SCENARIO] [START] [STEP] [MAX]
#
#   rooms    (default) rooms of 4, everyone publishing 500 kbit/s video + Opus; the size
#            is the number of participants (a multiple of 4)
#   meeting  one room, everyone publishing
#   webinar  one room, one publisher, the others watching
#
# Server and load tool share the machine: the table shows the CPU seconds of both over the
# run (ramp and window), so a step where the tool is the one that saturated reads as such. Uses the
# release build (cargo build --release --workspace first); loopback only, in its own
# namespace when allowed. DURATION (default 15s) per step.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SFU_CAPACITY_INSIDE:-}" ] && unshare --net true 2>/dev/null; then
  exec unshare --net sh -c 'ip link set lo up && SFU_CAPACITY_INSIDE=1 exec "$@"' sh "$0" "$@"
fi
SCENARIO=${1:-rooms}
case $SCENARIO in
  rooms) START=${2:-20}; STEP=${3:-20}; MAX=${4:-400} ;;
  meeting) START=${2:-4}; STEP=${3:-2}; MAX=${4:-50} ;;
  webinar) START=${2:-20}; STEP=${3:-20}; MAX=${4:-500} ;;
  *) echo "unknown scenario $SCENARIO (rooms, meeting, webinar)" >&2; exit 2 ;;
esac
BIN=${SFU_BIN:-target/release/sfu-lite}
PORT=${PORT:-18400}
DURATION=${DURATION:-15s}
OUT=${OUT:-target/capacity}
mkdir -p "$OUT"

server_pid=
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
trap stop_server EXIT

args_for() { # N
  local n=$1
  case $SCENARIO in
    rooms) echo --rooms $((n / 4)) --peers "$n" --video 500kbps --audio --ramp 25/s ;;
    meeting) echo --rooms 1 --peers "$n" --video 500kbps --audio --ramp 20/s ;;
    webinar) echo --rooms 1 --peers "$n" --publishers 1 --video 500kbps --audio --ramp 25/s ;;
  esac
}

echo "| participants | joined / failed | loss % | latency p99 ms | server CPU s | server µs/fwd pkt | tool CPU s | RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
held=none
n=$START
while [ "$n" -le "$MAX" ]; do
  # Every peer comes from 127.0.0.1, and a large meeting is above the default room cap.
  SFU_LITE_SIGNALING_MAX_MEMBERS_PER_ROOM=$((n + 1)) \
  SFU_LITE_SERVER_MAX_CONNECTIONS_PER_ADDRESS=0 \
  SFU_LITE_SERVER_HANDSHAKES_PER_ADDRESS_PER_SECOND=0 \
    "$BIN" --listen "127.0.0.1:$PORT" >"$OUT/server.out" 2>"$OUT/server.err" &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$OUT/server.out" 2>/dev/null && break
    sleep 0.1
  done
  json=$OUT/$SCENARIO-$n.json
  # shellcheck disable=SC2046 # the scenario's arguments are words
  "$BIN" load --url "http://127.0.0.1:$PORT" --server-pid "$server_pid" --quiet \
    --duration "$DURATION" --json "$json" $(args_for "$n") >/dev/null 2>&1 || true
  stop_server
  verdict=$(python3 - "$json" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("| - | no result | | | | | | |\tfail"); sys.exit()
loss = 100 * (s.get("loss_ratio") or 0)
p99 = (s.get("latency_ms") or {}).get("p99") or 0
cpu = s.get("server_cpu_s")
us = s.get("server_cpu_us_per_forwarded_packet")
ok = s["peers_failed"] == 0 and loss <= 1.0 and p99 <= 50.0
f = lambda v, d=1: "n/a" if v is None else f"{v:.{d}f}"
print(f"| {s['peers']} | {s['peers_joined']} / {s['peers_failed']} | {loss:.2f} | {p99:.1f} | "
      f"{f(cpu, 2)} | {f(us, 2)} | {s['tool_cpu_s']:.2f} | {f(s.get('server_rss_mib'))} |"
      f"\t{'ok' if ok else 'fail'}")
PY
)
  echo "${verdict%%$'\t'*}"
  [ "${verdict##*$'\t'}" = ok ] || break
  held=$n
  n=$((n + STEP))
done
echo
echo "capacity ($SCENARIO, loss <= 1 %, p99 <= 50 ms, every peer joined): $held participants"
