#!/usr/bin/env bash
# The benchmark suite: runs `sfu-lite load` against a release build of the server on loopback
# for each scenario, three times, and writes the medians to docs/benchmarks.md (plus a plot).
# Benchmarks, not tests: nothing here asserts a timing. Takes about 15 minutes.
#
#   scripts/bench.sh            # everything
#   scripts/bench.sh meeting    # one group: meeting webinar rooms storm signaling floor janus
#
# `janus` (benches/janus/side-by-side.sh at 10 and 30 subscribers: Janus VideoRoom and sfu-lite
# driven by one aiortc client, the anchor) is in the default set where it can run: as root,
# with `ip netns` and Debian's janus or apt-get to install it. Another 10-15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=target/bench
mkdir -p "$OUT"
RUNS=${RUNS:-3}
DURATION=${DURATION:-20s}

# Both packages: `sfu-lite load` runs `sfu-lite-load` (tools/) from beside the server binary.
cargo build --release --workspace --bins
BIN=$ROOT/target/release/sfu-lite
PORT=${PORT:-18000}

# Loopback-only when allowed: the whole suite then runs inside one namespace.
if [ -z "${SFU_BENCH_INSIDE:-}" ] && unshare --net true 2>/dev/null; then
  exec unshare --net sh -c 'ip link set lo up && SFU_BENCH_INSIDE=1 exec "$@"' sh "$0" "$@"
fi

server_pid=
start_server() {
  # The webinar rows put 101 peers in one room: above the default cap of 50 members. Every
  # peer comes from 127.0.0.1, so the per-address limits are lifted.
  SFU_LITE_SIGNALING_MAX_MEMBERS_PER_ROOM=128 \
  SFU_LITE_SERVER_MAX_CONNECTIONS_PER_ADDRESS=0 \
  SFU_LITE_SERVER_HANDSHAKES_PER_ADDRESS_PER_SECOND=0 \
    "$BIN" --listen "127.0.0.1:$PORT" >"$OUT/server.out" 2>"$OUT/server.err" &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$OUT/server.out" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server did not start" >&2; cat "$OUT/server.err" >&2; exit 1
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT

# scenario NAME -- LOAD ARGS...: RUNS runs, each against a fresh server.
scenario() {
  local name=$1; shift; shift
  for run in $(seq "$RUNS"); do
    start_server
    echo "== $name run $run: sfu-lite load $*"
    "$BIN" load --url "http://127.0.0.1:$PORT" --server-pid "$server_pid" --quiet \
      --json "$OUT/$name.$run.json" --plot "$OUT/$name.$run.svg" "$@" || true
    stop_server
  done
}

janus_possible() {
  [ "$(id -u)" = 0 ] && command -v ip >/dev/null && { command -v janus || command -v apt-get; } >/dev/null
}
default_groups="meeting webinar rooms storm signaling floor"
janus_possible && default_groups="$default_groups janus"
groups=${*:-$default_groups}
for g in $groups; do
  case $g in
    meeting)
      for n in 2 4 8 16; do
        scenario "meeting-$n" -- --rooms 1 --peers "$n" --video 500kbps --audio --duration "$DURATION" --ramp 20/s
      done ;;
    webinar)
      for n in 10 50 100; do
        scenario "webinar-$n" -- --rooms 1 --peers $((n + 1)) --publishers 1 --video 500kbps --audio --duration "$DURATION" --ramp 25/s
      done ;;
    rooms)
      scenario "rooms-25x4" -- --rooms 25 --peers 100 --video 500kbps --audio --duration "$DURATION" --ramp 25/s ;;
    storm)
      scenario "storm-50" -- --rooms 1 --peers 50 --publishers 1 --video fixture --duration 10s --ramp 0 ;;
    signaling)
      for n in 10 100 500; do
        scenario "signaling-$n" -- --signal-only --rooms $(( (n + 9) / 10 )) --peers "$n" --ramp 200/s --duration 10s
      done ;;
    janus)
      # Its own namespace (lo + a veth at 127.0.0.2, Janus gathers nothing on lo) and a fresh
      # server per run; alternating runs, so the ratios compare within one invocation.
      for n in 10 30; do
        OUT="$ROOT/$OUT/side-by-side" REPS=${JANUS_REPS:-2} IDLE_SECS=${IDLE_SECS:-15} SFU_BIN="$BIN" \
          benches/janus/side-by-side.sh "$n" 20 || echo "side by side with $n subscribers failed" >&2
      done ;;
    floor)
      cargo bench --bench floor -- --noplot 2>&1 | tee "$OUT/floor.txt" ;;
    *) echo "unknown group $g" >&2; exit 2 ;;
  esac
done

python3 scripts/bench_report.py "$OUT" docs/benchmarks.md
echo "wrote docs/benchmarks.md"
