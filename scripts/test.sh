#!/usr/bin/env bash
# Runs every test of sfu-lite: Rust unit and integration tests (real Socket.IO clients and
# webrtc-rs peers), the Node tests (official socket.io-client v4 and v2), the browser tests
# (Debian chromium and firefox-esr) and a short smoke run of `sfu-lite load`.
#
# Installs what it needs when missing (apt packages, npm packages from the committed lockfile).
# Everything that opens a socket runs inside a loopback-only network namespace when `unshare`
# is allowed; otherwise the tests' own loopback filters keep traffic on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/firefox-esr ] || need_apt+=(firefox-esr)
# Lossy and capped links in the media tests (nftables on the input/output hooks, tc htb).
command -v nft >/dev/null || need_apt+=(nftables)
{ command -v tc && command -v ss; } >/dev/null || need_apt+=(iproute2)
# The external-TURN tests start a real coturn (turnserver) on loopback.
command -v turnserver >/dev/null || need_apt+=(coturn)
# The cluster tests start a real Redis (Debian 12: Redis 7).
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

log "npm packages (tests/js, from package-lock.json)"
if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

log "build"
# The workspace: the server (root package) and its test and load tools (tools/).
cargo build --workspace --tests --bins
# Examples and benches are not run here, only built, so they cannot rot.
cargo build --workspace --examples --benches
# The Node tests find the server binary here. (Not SFU_LITE_*: the server reads those as config
# fields and refuses unknown ones.)
export SFU_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/sfu-lite"

# Loopback-only namespace: nothing but 127.0.0.1/::1 is reachable inside.
if unshare --net true 2>/dev/null; then
  isolated() { unshare --net sh -c 'ip link set lo up && exec "$@"' sh "$@"; }
  log "running inside a loopback-only network namespace"
else
  isolated() { "$@"; }
  log "unshare not allowed here: relying on the tests' loopback filters"
fi

log "cargo tests"
isolated cargo test --offline --workspace --tests --bins

log "node tests (socket.io-client v4 and v2, browsers)"
shopt -s nullglob
js_tests=(tests/js/*.test.mjs)
if [ ${#js_tests[@]} -gt 0 ]; then
  isolated node --test --test-concurrency=1 "${js_tests[@]}"
fi

log "all tests passed"
