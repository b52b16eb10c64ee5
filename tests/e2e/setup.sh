#!/bin/sh
# Installs what the browser end-to-end tests need, idempotently, on Debian 12 as root:
# Debian's Chromium (Playwright drives it; never `npx playwright install`), nftables and
# iproute2 (run-in-netns.sh), the npm packages of package-lock.json (npm ci), the two
# client bundles in dist/ (node build.mjs), and a Python venv in .venv with aiortc from PyPI
# (requirements-aiortc.txt) for the aiortc-chromium scenario. Node.js >= 18 with npm and
# Python >= 3.9 with its venv module (python3 on PATH, or $PYTHON) must already be installed.
#
#   sh tests/e2e/setup.sh
set -eu
cd "$(dirname "$0")"
log() { printf '[e2e-setup] %s\n' "$*" >&2; }

missing=""
for pkg in chromium nftables iproute2 util-linux; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || { log "need root to apt-get install$missing"; exit 1; }
    log "apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
fi
/usr/bin/chromium --version 2>/dev/null | grep -i chromium >&2 || { log "/usr/bin/chromium does not run"; exit 1; }

command -v npm >/dev/null 2>&1 || { log "npm not found: install Node.js >= 18 first"; exit 1; }
[ -d ../../../shared/clients/calls-common/lib ] || {
    log "../../../shared/clients/calls-common missing (the repository must sit beside shared/)"; exit 1; }

# npm ci only when package-lock.json changed since the last install (npm ci wipes node_modules).
stamp=node_modules/.e2e-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "npm ci"
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$want" > "$stamp"
fi
log "building dist/current.js and dist/legacy.js"
node build.mjs

# The aiortc participant's venv: (re)installed only when requirements-aiortc.txt changed since
# the last install or the venv's interpreter is gone (~5 s from PyPI wheels, ~160 MB).
py=${PYTHON:-python3}
vstamp=.venv/.e2e-requirements.sha256
vwant=$(sha256sum requirements-aiortc.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c '' 2>/dev/null || [ ! -f "$vstamp" ] || [ "$(cat "$vstamp")" != "$vwant" ]; then
    command -v "$py" >/dev/null 2>&1 || { log "$py not found: install Python 3 (with venv)"; exit 1; }
    log "python venv .venv: pip install -r requirements-aiortc.txt ($("$py" --version 2>&1))"
    rm -rf .venv
    "$py" -m venv .venv || { log "$py -m venv failed (Debian: apt-get install python3-venv)"; exit 1; }
    .venv/bin/pip install --quiet --disable-pip-version-check --no-input -r requirements-aiortc.txt >&2
    echo "$vwant" > "$vstamp"
fi
log "ready: $(node -e 'console.log(require("playwright-core/package.json").version)' 2>/dev/null | sed 's/^/playwright-core /'), $(.venv/bin/python -c 'import aiortc, av; print("aiortc", aiortc.__version__, "av", av.__version__)')"
