#!/usr/bin/env bash
# All packaging tests, for CI: build/systemd-test.sh then build/container-test.sh
# (which builds the image), against one binary.
#
#   build/packaging-test.sh [BINARY]     (root; BINARY defaults to target/release/rtcd)
#
# Ends with one "packaging: N passed, N failed" line summing both; exits
# non-zero if either script failed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$(mktemp /tmp/rtcd-packaging-test.XXXXXX)
trap 'rm -f "$out"' EXIT

rc=0
t0=$SECONDS
"$here/systemd-test.sh" "$@" 2>&1 | tee -a "$out" || rc=1
"$here/container-test.sh" "$@" 2>&1 | tee -a "$out" || rc=1

p=$(grep -cE '^PASS: ' "$out")
f=$(grep -cE '^FAIL: ' "$out")
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # a script died without a FAIL line
echo "[packaging-test] total $((SECONDS - t0))s"
echo "packaging: $p passed, $f failed"
exit "$rc"
