#!/bin/sh
# Runs a command in a fresh network namespace that has only loopback (127.0.0.1, ::1), so
# rtcd, Chromium and the harness can only talk over lo and nothing leaves the machine.
#
#   run-in-netns.sh [--block-udp PORT]... [--] COMMAND [ARGS...]
#
# --block-udp PORT silently drops UDP to and from PORT inside the namespace (nftables input
# hook, as a firewall on the path would), e.g. rtcd's ICE UDP port, so that ICE must fall back
# to ICE-TCP. Needs root
# (unshare -n) and, with --block-udp, nft. The namespace disappears when COMMAND exits.
set -eu

ports=""
while [ $# -gt 0 ]; do
    case "$1" in
        --block-udp)
            [ $# -ge 2 ] || { echo "run-in-netns.sh: --block-udp needs a port" >&2; exit 2; }
            case "$2" in ''|*[!0-9]*) echo "run-in-netns.sh: bad port '$2'" >&2; exit 2;; esac
            ports="$ports $2"; shift 2;;
        --) shift; break;;
        -h|--help) sed -n '2,10p' "$0"; exit 0;;
        *) break;;
    esac
done
[ $# -gt 0 ] || { echo "usage: run-in-netns.sh [--block-udp PORT]... [--] COMMAND [ARGS...]" >&2; exit 2; }
if [ -n "$ports" ] && ! command -v nft >/dev/null 2>&1; then
    echo "run-in-netns.sh: nft not found (apt-get install nftables)" >&2; exit 2
fi

E2E_BLOCK_UDP=$ports
export E2E_BLOCK_UDP
exec unshare -n sh -c '
    set -eu
    ip link set lo up
    if [ -n "$E2E_BLOCK_UDP" ]; then
        nft add table inet e2e
        nft add chain inet e2e in "{ type filter hook input priority 0; }"
        for p in $E2E_BLOCK_UDP; do
            nft add rule inet e2e in udp dport "$p" drop
            nft add rule inet e2e in udp sport "$p" drop
        done
        echo "run-in-netns.sh: UDP port(s)$E2E_BLOCK_UDP blocked" >&2
    fi
    unset E2E_BLOCK_UDP
    exec "$@"
' run-in-netns.sh "$@"
