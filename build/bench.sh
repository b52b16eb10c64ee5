#!/bin/sh
# Media benchmark: rtcd against the floor forwarder under the same load, with the same CPU
# accounting, at several sizes; writes the table and plot into docs/performance.md and
# docs/performance.svg.
#
#   build/bench.sh [PARTICIPANTS...]        default: 100 500 1000
#
# Each size: 20 participants per call, one unmuted speaker per call, a ~1.5 Mbit/s screen
# share in one call of every ten; a BENCH_DURATION-second steady window (default 30) after
# everyone joined. Runs in a fresh network namespace (needs root: unshare -n) so host
# firewall/NAT rules add no conntrack work to loopback. Results (JSON) go to target/bench.
set -eu
cd "$(dirname "$0")/.."
sizes=${*:-"100 500 1000"}
duration=${BENCH_DURATION:-30}
out=target/bench

if [ -z "${BENCH_IN_NETNS:-}" ]; then
    cargo build --release --bins
    BENCH_IN_NETNS=1 exec unshare -n sh "$0" "$@"
fi
ip link set lo up
mkdir -p "$out"
rm -f "$out"/*.json

workdir=$(mktemp -d)
trap 'kill "$rtcd_pid" 2>/dev/null || true; rm -rf "$workdir"' EXIT
rtcd_pid=""

for n in $sizes; do
    calls=$((n / 20))
    [ "$calls" -ge 1 ] || calls=1
    cat > "$workdir/config.toml" <<TOML
[api.http]
listen_address = "127.0.0.1:18045"
[api.security]
allow_self_registration = true
[rtc]
ice_address_udp = "127.0.0.1"
ice_address_tcp = "127.0.0.1"
ice_port_udp = 18443
ice_port_tcp = 18443
[logger]
enable_file = false
console_level = "WARN"
[store]
data_source = "$workdir/data-$n"
TOML
    ./target/release/rtcd -config "$workdir/config.toml" > "$workdir/rtcd-$n.log" 2>&1 &
    rtcd_pid=$!
    for _ in $(seq 50); do
        curl -fs http://127.0.0.1:18045/version > /dev/null 2>&1 && break
        sleep 0.1
    done
    echo "== rtcd, $n participants in $calls calls"
    ./target/release/rtcd-load sfu --url http://127.0.0.1:18045 --register \
        --participants "$n" --calls "$calls" --screen-every 10 --screen-kbps 1500 \
        --duration "$duration" --warmup 3 --join-rate 100 \
        --daemon-pid "$rtcd_pid" --json "$out/rtcd-$n.json"
    kill "$rtcd_pid"
    wait "$rtcd_pid" 2>/dev/null || true
    rtcd_pid=""
    echo "== floor, $n participants in $calls calls"
    ./target/release/rtcd-load floor \
        --participants "$n" --calls "$calls" --screen-every 10 --screen-kbps 1500 \
        --duration "$duration" --warmup 3 --json "$out/floor-$n.json"
done

python3 build/bench_report.py "$out" docs/performance.md docs/performance.svg
echo "bench: results in $out, table in docs/performance.md, plot in docs/performance.svg"
