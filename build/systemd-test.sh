#!/usr/bin/env bash
# Checks systemd/rtcd.service.
#
#   build/systemd-test.sh [BINARY]     (root; BINARY defaults to target/release/rtcd)
#
# 1. Static: `systemd-analyze verify` must print nothing about the unit (it
#    warns but still exits 0 on unknown keys or bad values, so the output is
#    what counts), `systemd-analyze security --offline` must rate the unit at
#    most $RTCD_MAX_EXPOSURE (default 2.0), and the guide's settings must be
#    present. verify needs the binary at the unit's ExecStart path: it is
#    bind-mounted at /usr/local/bin in a private mount namespace, so the host
#    is not touched.
# 2. Live (skip with RTCD_SYSTEMD_BOOT_TEST=0): boots systemd in a podman
#    container (Debian bookworm minbase + systemd, made locally with
#    debootstrap like the runtime image), follows the guide's install steps
#    there (unit into /lib/systemd/system, daemon-reload,
#    enable --now), and checks the hardened service really runs: active, user
#    mattermost, no capabilities, seccomp on, `curl http://localhost:8045/version`,
#    self-registration from Environment=, state in /var/lib/rtcd surviving a
#    restart, clean stop.
#
# 3. The getting-started guide's own unit, verbatim (below): User=mattermost, no
#    WorkingDirectory (the process runs in /, where it cannot create rtcd.log), only
#    API_SECURITY_ALLOWSELFREGISTRATION=true. It must start and stay up (NRestarts 0, no
#    crash loop), answer curl, warn on the console that the log file cannot be opened (naming
#    the path and the fix), and accept self-registration. Then a default store directory left
#    by an earlier run as root must fail the start with an error naming the directory and
#    RTCD_STORE_DATASOURCE.
#
# Prints PASS/FAIL lines and "systemd-test: N passed, N failed"; exits
# non-zero on any failure.
set -uo pipefail
log_tag=systemd-test
# shellcheck source=build/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

unit=$rtcd_repo/systemd/rtcd.service
# The unit of ../shared/seed's getting-started document, copied verbatim.
guide_unit='[Unit]
Description=rtcd
After=network.target

[Service]
Type=simple
ExecStart=/usr/local/bin/rtcd
Restart=always
RestartSec=10
User=mattermost
Group=mattermost
Environment=API_SECURITY_ALLOWSELFREGISTRATION=true

[Install]
WantedBy=multi-user.target'

bin=${1:-$rtcd_repo/target/release/rtcd}
max_exposure=${RTCD_MAX_EXPOSURE:-2.0}
sd_image=${RTCD_SYSTEMD_TEST_IMAGE:-localhost/rtcd-systemd-test:$rtcd_suite}
ctr=rtcd-systemd-test

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'PASS: %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL: %s\n' "$*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
finish() { echo "systemd-test: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }
step_t=$SECONDS
timing() { log "timing: $1 took $((SECONDS - step_t))s"; step_t=$SECONDS; }

[ "$(id -u)" -eq 0 ] || { echo "FAIL: must run as root"; exit 1; }
work=$(mktemp -d /tmp/rtcd-systemd-test.XXXXXX)
started_ctr=false
cleanup() {
    local rc=$?
    if [ "$started_ctr" = true ]; then podman rm -f -t 0 "$ctr" >/dev/null 2>&1; fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ $# -eq 0 ]; then build_binary_if_missing "$bin"; fi
[ -f "$bin" ] && [ -x "$bin" ] || { fail "binary $bin not found or not executable"; finish; }
command -v systemd-analyze >/dev/null || apt_install systemd
command -v unshare >/dev/null || apt_install util-linux

# --- 1. static checks ----------------------------------------------------------
exec_path=$(sed -nE 's/^ExecStart=[-@:+!]*([^ ]+).*/\1/p' "$unit" | head -n 1)
check "unit: ExecStart is /usr/local/bin/rtcd" [ "$exec_path" = /usr/local/bin/rtcd ]
mkdir -p "$work/bin"
cp "$bin" "$work/bin/rtcd"
chmod 0755 "$work/bin/rtcd"
in_unit_ns() { # run "$@" with $work/bin mounted at /usr/local/bin, privately
    unshare --mount --propagation private -- bash -c 'mount --bind "$1" /usr/local/bin && shift && exec "$@"' \
        bash "$work/bin" "$@"
}
in_unit_ns systemd-analyze verify "$unit" >"$work/verify.out" 2>&1
verify_rc=$?
if [ "$verify_rc" -eq 0 ] && ! grep -q . "$work/verify.out"; then
    pass "systemd-analyze verify systemd/rtcd.service: clean"
elif [ "$verify_rc" -eq 0 ] && ! grep -qE 'rtcd' "$work/verify.out"; then
    pass "systemd-analyze verify systemd/rtcd.service: nothing about the unit (other output below)"
    sed 's/^/    /' "$work/verify.out"
else
    fail "systemd-analyze verify systemd/rtcd.service (exit $verify_rc):"
    sed 's/^/    /' "$work/verify.out"
fi
in_unit_ns systemd-analyze security --offline=true --no-pager "$unit" >"$work/security.out" 2>&1
exposure=$(sed -nE 's/.*Overall exposure level for [^:]*: ([0-9.]+).*/\1/p' "$work/security.out" | tail -n 1)
if [ -n "$exposure" ] && awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }'; then
    pass "systemd-analyze security: exposure $exposure (at most $max_exposure)"
else
    fail "systemd-analyze security: exposure '${exposure:-?}' above $max_exposure"
    grep -E '✗|Overall' "$work/security.out" | sed 's/^/    /'
fi
for line in 'Type=simple' 'ExecStart=/usr/local/bin/rtcd' 'Restart=always' 'RestartSec=10' \
    'User=mattermost' 'Group=mattermost' 'Environment=API_SECURITY_ALLOWSELFREGISTRATION=true' \
    'After=network.target|After=network-online.target' 'WantedBy=multi-user.target'; do
    check "unit: has $line (as in the guide)" grep -qxE "$line" "$unit"
done
timing static

if [ "${RTCD_SYSTEMD_BOOT_TEST:-1}" = 0 ]; then
    log "live test skipped (RTCD_SYSTEMD_BOOT_TEST=0)"
    finish
fi

# --- 2. live: the guide's install steps under a real systemd ---------------------
ensure_podman
ensure_debian_image "$sd_image" "$rtcd_suite-systemd.tar" systemd,systemd-sysv \
    --change 'CMD ["/sbin/init"]' --change 'ENV container=podman'
timing systemd-image

podman rm -f -t 0 "$ctr" >/dev/null 2>&1
# Privileged: the unit's sandboxing needs mount namespaces inside. No network
# but loopback (--network none); the host reaches it through nsenter.
if ! podman run -d --name "$ctr" --privileged --systemd=always --network none "$sd_image" /sbin/init >/dev/null; then
    fail "could not start a systemd container"
    finish
fi
started_ctr=true
sx() { podman exec "$ctr" "$@"; }
wait_until() { local d=$((SECONDS + $1)); shift; until "$@"; do [ $SECONDS -lt $d ] || return 1; sleep 0.3; done; }
booted() { state=$(sx systemctl is-system-running 2>/dev/null); [ "$state" = running ] || [ "$state" = degraded ]; }
state=""
check "systemd booted in the container (running or degraded)" wait_until 60 booted
cpid=$(podman inspect -f '{{.State.Pid}}' "$ctr")

# The guide's steps (as root, so without sudo).
podman cp "$bin" "$ctr:/usr/local/bin/rtcd" \
    && sx chmod 0755 /usr/local/bin/rtcd \
    && sx touch /lib/systemd/system/rtcd.service \
    && podman cp "$unit" "$ctr:/lib/systemd/system/rtcd.service" \
    && sx sh -c 'getent passwd mattermost >/dev/null || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mattermost'
check "installed binary, unit and the mattermost user" [ $? -eq 0 ]
check "systemctl daemon-reload" sx systemctl daemon-reload
check "systemctl enable --now /lib/systemd/system/rtcd.service" sx systemctl enable --now /lib/systemd/system/rtcd.service

in_ns() { nsenter --target "$cpid" --net -- "$@"; }
has_version_keys() {
    local k
    for k in buildDate buildVersion buildHash goVersion goOS goArch; do
        grep -qE "\"$k\"[[:space:]]*:[[:space:]]*\"" "$1" || return 1
    done
}
register() { # register CLIENTID -> HTTP status
    in_ns curl -sS -m 10 -o "$work/reg.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        --data "{\"clientID\":\"$1\",\"authKey\":\"systemd-test-auth-key-0123456789abcdef\"}" http://localhost:8045/register
}
main_pid() { sx systemctl show -p MainPID --value rtcd.service; }

if wait_until 60 in_ns curl -fs -m 2 -o "$work/version.json" http://localhost:8045/version; then
    pass "curl http://localhost:8045/version: $(tr -d '\n' <"$work/version.json")"
    check "/version has the six string keys" has_version_keys "$work/version.json"
    check "rtcd.service is active" sx systemctl is-active --quiet rtcd.service
    mp=$(main_pid)
    st=$(sx cat "/proc/$mp/status")
    uid=$(sx id -u mattermost)
    check "runs as user mattermost (uid $uid)" grep -qE "^Uid:[[:space:]]+${uid}[[:space:]]" <<<"$st"
    check "NoNewPrivileges in force" grep -qE '^NoNewPrivs:[[:space:]]+1' <<<"$st"
    check "seccomp filter in force" grep -qE '^Seccomp:[[:space:]]+2' <<<"$st"
    check "no capabilities (bounding set empty)" grep -qE '^CapBnd:[[:space:]]+0+$' <<<"$st"
    code=$(register systemd-test-client)
    check "self-registration from Environment=: POST /register 201 (got $code)" [ "$code" = 201 ]
    check "default log file in the working directory /var/lib/rtcd/rtcd.log" sx test -s /var/lib/rtcd/rtcd.log
    check "store at RTCD_STORE_DATASOURCE=/var/lib/rtcd/db" sx test -e /var/lib/rtcd/db
    check "/var/lib/rtcd owned by mattermost" [ "$(sx stat -c %U /var/lib/rtcd)" = mattermost ]
    sx systemctl restart rtcd.service
    if wait_until 60 in_ns curl -fs -m 2 -o /dev/null http://localhost:8045/version; then
        code=$(register systemd-test-client)
        check "registration survives a restart (400 already registered; got $code $(tr -d '\n' <"$work/reg.json"))" [ "$code" = 400 ]
    else
        fail "rtcd did not come back after systemctl restart"
    fi
    sx systemctl stop rtcd.service
    res=$(sx systemctl show -p Result --value rtcd.service)
    status=$(sx systemctl show -p ExecMainStatus --value rtcd.service)
    check "systemctl stop: clean exit (Result=$res, status $status)" [ "$res" = success -a "$status" = 0 ]
else
    fail "curl http://localhost:8045/version never answered"
fi
timing "live (our unit)"

# --- 3. the guide's unit, verbatim -------------------------------------------------
sx systemctl disable --now rtcd.service >/dev/null 2>&1
printf '%s\n' "$guide_unit" >"$work/guide.service"
podman cp "$work/guide.service" "$ctr:/lib/systemd/system/rtcd.service"
check "guide: systemctl daemon-reload" sx systemctl daemon-reload
journal_since=$(sx date '+%Y-%m-%d %H:%M:%S')
check "guide: systemctl enable --now /lib/systemd/system/rtcd.service" sx systemctl enable --now /lib/systemd/system/rtcd.service
guide_journal() { sx journalctl -u rtcd.service --no-pager --since "$journal_since" -o cat; }
if wait_until 60 in_ns curl -fs -m 2 -o "$work/version.json" http://localhost:8045/version; then
    pass "guide: curl http://localhost:8045/version: $(tr -d '\n' <"$work/version.json")"
    # Longer than RestartSec=10: a crash loop would have restarted it by now.
    sleep 12
    restarts=$(sx systemctl show -p NRestarts --value rtcd.service)
    check "guide: stays up (NRestarts=$restarts)" [ "$restarts" = 0 ]
    check "guide: still active" sx systemctl is-active --quiet rtcd.service
    guide_journal >"$work/guide.journal"
    warning=$(grep -m1 'cannot open log file' "$work/guide.journal")
    check "guide: console warns that /rtcd.log cannot be opened and names the fix: $warning" \
        bash -c '[[ "$1" == */rtcd.log* && "$1" == *RTCD_LOGGER_ENABLEFILE=false* && "$1" == *RTCD_LOGGER_FILELOCATION* ]]' _ "$warning"
    code=$(register guide-client)
    check "guide: self-registration from the unprefixed Environment=: POST /register 201 (got $code)" [ "$code" = 201 ]
    check "guide: the store is the default /tmp/rtcd_db" sx test -e /tmp/rtcd_db/rtcd.db
    # A default store directory left by an earlier run as root: a clear error, not a mystery.
    sx systemctl stop rtcd.service
    sx sh -c 'rm -rf /tmp/rtcd_db && mkdir -m 0700 /tmp/rtcd_db'
    journal_since=$(sx date '+%Y-%m-%d %H:%M:%S')
    sx systemctl start rtcd.service
    sleep 2
    guide_journal >"$work/guide-store.journal"
    error=$(grep -m1 'store directory /tmp/rtcd_db' "$work/guide-store.journal")
    check "guide: a root-owned /tmp/rtcd_db is refused naming the directory and RTCD_STORE_DATASOURCE: $error" \
        bash -c '[[ "$1" == *RTCD_STORE_DATASOURCE* ]]' _ "$error"
    sx systemctl stop rtcd.service
    sx rm -rf /tmp/rtcd_db
else
    fail "guide: curl http://localhost:8045/version never answered"
    sx journalctl -u rtcd.service --no-pager -n 40 >&2
fi
if [ "$failed" -gt 0 ]; then
    log "---- systemctl status / journal ----"
    sx systemctl status --no-pager rtcd.service >&2
    sx journalctl -u rtcd.service --no-pager -n 40 >&2
fi
timing live
finish
