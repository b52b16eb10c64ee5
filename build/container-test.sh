#!/usr/bin/env bash
# Container test: builds the image (build/image.sh) and runs the operator
# guide's `docker run` lines against it, verbatim except for the image name,
# with the docker CLI talking to a private `podman system service`.
#
#   build/container-test.sh [BINARY]     (root; BINARY defaults to target/release/rtcd)
#
# Environment: RTCD_IMAGE (default rtcd), RTCD_SKIP_IMAGE_BUILD=1 to test an
# image that is already built, RTCD_START_TIMEOUT (seconds, default 60),
# RTCD_REQUIRE_MEDIA_PORTS=1 to fail (not just warn) when nothing listens on
# 8443/udp and 8443/tcp.
#
# Prints one PASS/FAIL line per check and a closing "N passed, N failed" line;
# exits non-zero if any check failed. Containers, the volume and the podman
# service it started are removed on exit, also on failure or Ctrl-C.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${RTCD_IMAGE:-rtcd}
start_timeout=${RTCD_START_TIMEOUT:-60}
bin_arg=("$@")

passed=0
failed=0
log() { printf '[container-test] %s\n' "$*" >&2; }
pass() { passed=$((passed + 1)); printf 'PASS: %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL: %s\n' "$*"; }
check() { # check "description" command...
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
step_t=$SECONDS
timing() { log "timing: $1 took $((SECONDS - step_t))s"; step_t=$SECONDS; }
t0=$SECONDS

[ "$(id -u)" -eq 0 ] || { echo "FAIL: must run as root"; exit 1; }

work=$(mktemp -d /tmp/rtcd-container-test.XXXXXX)
sock_dir=/run/rtcd-container-test
sock=$sock_dir/podman.sock
service_pid=""
bg_pids=()
containers=(rtcd rtcd-defaults rtcd-data)
volume=rtcd-container-test-data

cleanup() {
    local rc=$?
    set +e
    for c in "${containers[@]}"; do podman rm -f -t 2 "$c" >/dev/null 2>&1; done
    podman volume rm -f "$volume" >/dev/null 2>&1
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; done
    if [ -n "$service_pid" ]; then
        kill "$service_pid" 2>/dev/null
        wait "$service_pid" 2>/dev/null
    fi
    rm -f "$sock"
    rmdir "$sock_dir" 2>/dev/null
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -------------------------------------------------------------------
hexport() { printf '%04X' "$1"; }
# tcp_listening PID PORT: a TCP socket in LISTEN state on PORT in PID's netns.
tcp_listening() {
    awk -v p=":$(hexport "$2")" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
        "/proc/$1/net/tcp" "/proc/$1/net/tcp6" 2>/dev/null
}
udp_bound() {
    awk -v p=":$(hexport "$2")" 'substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
        "/proc/$1/net/udp" "/proc/$1/net/udp6" 2>/dev/null
}
cpid() { docker inspect -f '{{.State.Pid}}' "$1" 2>/dev/null; }
# in_ns PID cmd...: run a host command in the container's network namespace
# (its loopback), so no tool is needed inside the image.
in_ns() { local pid=$1; shift; nsenter --target "$pid" --net -- "$@"; }
# has_version_keys FILE: the six /version keys, each with a string value.
has_version_keys() {
    local k
    for k in buildDate buildVersion buildHash goVersion goOS goArch; do
        grep -qE "\"$k\"[[:space:]]*:[[:space:]]*\"" "$1" || { log "/version lacks string key $k: $(cat "$1")"; return 1; }
    done
}
uid_is_65532() { # all four of real/effective/saved/fs uid and gid
    local pid=$1
    awk '/^Uid:|^Gid:/ { for (i = 2; i <= 5; i++) if ($i != 65532) bad = 1; n++ } END { exit (bad || n != 2) }' "/proc/$pid/status"
}
# wait_until SECONDS cmd...: poll until cmd succeeds.
wait_until() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.3
    done
}
container_running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
# wait_api NAME SECONDS cmd...: poll cmd until it succeeds; give up early
# (status 2) when container NAME has stopped running after it was seen running.
wait_api() {
    local name=$1 deadline=$((SECONDS + $2)) seen=false; shift 2
    until "$@"; do
        if container_running "$name"; then seen=true
        elif [ "$seen" = true ] || [ "$(docker inspect -f '{{.State.Status}}' "$name" 2>/dev/null)" = exited ]; then
            log "container $name is not running any more (exit status $(docker inspect -f '{{.State.ExitCode}}' "$name" 2>/dev/null))"
            return 2
        fi
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.3
    done
}
# register URL_CURL_PREFIX... : POST /register for a fresh client, prints the HTTP status.
register_status() { # register_status OUTFILE CLIENTID curl-prefix...
    local out=$1 id=$2; shift 2
    "$@" curl -sS -m 10 -o "$out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        --data "{\"clientID\":\"$id\",\"authKey\":\"container-test-auth-key-0123456789abcdef\"}" \
        "${url_base}/register"
}
show_logs() { # show_logs FILE: the captured output of a foreground docker run
    log "---- output of $1 (last 40 lines) ----"
    tail -n 40 "$1" >&2 || true
    log "----"
}
# stop_and_check NAME RUN_PID LOGFILE: graceful `docker stop`, exit status 0.
stop_and_check() {
    local name=$1 rpid=$2 out=$3 t=$SECONDS code
    if ! container_running "$name"; then
        fail "$name: the container had already exited (status $(docker inspect -f '{{.State.ExitCode}}' "$name" 2>/dev/null)) before docker stop"
        [ -n "$rpid" ] && wait "$rpid"
        docker rm "$name" >/dev/null 2>&1
        return
    fi
    # -t 10 is Docker's default; podman's docker-compatible API (4.3) turns a
    # stop without an explicit timeout into an immediate SIGKILL.
    docker stop -t 10 "$name" >/dev/null 2>&1
    code=$(docker inspect -f '{{.State.ExitCode}}' "$name" 2>/dev/null)
    if [ "$code" = 0 ] && [ $((SECONDS - t)) -lt 10 ]; then
        pass "$name: SIGTERM (docker stop) exits cleanly with status 0 in $((SECONDS - t))s"
    else
        fail "$name: docker stop gave exit status '${code}' after $((SECONDS - t))s (137 = needed SIGKILL: PID 1 must handle SIGTERM)"
        show_logs "$out"
    fi
    if [ -n "$rpid" ]; then
        wait "$rpid"; local rc=$?
        check "$name: foreground 'docker run' returned the container's status (0)" [ "$rc" -eq 0 ]
    fi
    docker rm "$name" >/dev/null 2>&1
}

# --- 0. tools --------------------------------------------------------------------
need=()
command -v curl >/dev/null || need+=(curl)
command -v nsenter >/dev/null || need+=(util-linux)
if ! command -v docker >/dev/null; then
    # No docker CLI on this machine: Debian's podman-docker gives a `docker`
    # command (a podman wrapper that ignores DOCKER_HOST).
    need+=(podman-docker)
fi
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || log "apt-get update reported errors; trying the install anyway"
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- 1. image --------------------------------------------------------------------
if [ "${RTCD_SKIP_IMAGE_BUILD:-0}" != 1 ]; then
    if RTCD_IMAGE=$IMAGE "$repo/build/image.sh" "${bin_arg[@]}" >"$work/image.log" 2>&1; then
        pass "image $IMAGE built (build/image.sh)"
        grep -E '^\[image.sh\] (step|done)' "$work/image.log" >&2
    else
        fail "image build (build/image.sh)"
        tail -n 40 "$work/image.log"
        echo "container-test: $passed passed, $failed failed"
        exit 1
    fi
fi
timing image
podman image exists "$IMAGE" || { fail "image $IMAGE does not exist"; echo "container-test: $passed passed, $failed failed"; exit 1; }

# --- 2. docker API served by podman -------------------------------------------
mkdir -p "$sock_dir"
rm -f "$sock"
podman system service --time=0 "unix://$sock" >"$work/podman-service.log" 2>&1 &
service_pid=$!
export DOCKER_HOST=unix://$sock
if wait_until 30 docker version >/dev/null 2>&1; then
    pass "docker CLI talks to podman system service at $DOCKER_HOST"
else
    fail "podman system service did not come up"
    cat "$work/podman-service.log"
    echo "container-test: $passed passed, $failed failed"
    exit 1
fi
for c in "${containers[@]}"; do
    if podman container exists "$c"; then log "removing leftover container $c"; podman rm -f -t 2 "$c" >/dev/null; fi
done
podman volume rm -f "$volume" >/dev/null 2>&1
for p in 8045 8443; do
    if tcp_listening self "$p" || udp_bound self "$p"; then
        fail "port $p is already in use on this host (stop whatever listens there)"
    fi
done
[ "$failed" -eq 0 ] || { echo "container-test: $passed passed, $failed failed"; exit 1; }
timing service

# --- 3. the guide's first line: defaults + env, published ports ----------------
log "running: docker run --name rtcd -e \"RTCD_LOGGER_ENABLEFILE=false\" -e \"RTCD_API_SECURITY_ALLOWSELFREGISTRATION=true\" -p 8443:8443/udp -p 8443:8443/tcp -p 8045:8045/tcp $IMAGE"
docker run --name rtcd -e "RTCD_LOGGER_ENABLEFILE=false" -e "RTCD_API_SECURITY_ALLOWSELFREGISTRATION=true" -p 8443:8443/udp -p 8443:8443/tcp -p 8045:8045/tcp "$IMAGE" \
    >"$work/run1.log" 2>&1 </dev/null &
run1=$!
bg_pids+=("$run1")
url_base=http://localhost:8045
if wait_api rtcd "$start_timeout" curl -fs -m 2 -o "$work/version1.json" http://localhost:8045/version; then
    pass "line 1: curl http://localhost:8045/version answers ($(tr -d '\n' <"$work/version1.json"))"
    check "line 1: /version has the six string keys" has_version_keys "$work/version1.json"
    pid=$(cpid rtcd)
    check "line 1: the daemon runs as uid/gid 65532 (calls)" uid_is_65532 "$pid"
    check "line 1: image config user is 65532:65532" [ "$(docker inspect -f '{{.Config.User}}' rtcd)" = 65532:65532 ]
    check "line 1: working directory /opt/rtcd/bin, binary /opt/rtcd/bin/rtcd" \
        [ "$(readlink "/proc/$pid/cwd")" = /opt/rtcd/bin -a "$(readlink "/proc/$pid/exe")" = /opt/rtcd/bin/rtcd ]
    check "line 1: no rtcd.log written (RTCD_LOGGER_ENABLEFILE=false)" [ ! -e "/proc/$pid/root/opt/rtcd/bin/rtcd.log" ]
    code=$(register_status "$work/reg1.json" "ct-$$-1")
    check "line 1: POST /register self-registers a client (201; got $code $(tr -d '\n' <"$work/reg1.json"))" [ "$code" = 201 ]
    code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' http://localhost:8045/healthz)
    check "line 1: GET /healthz answers 200 (got $code)" [ "$code" = 200 ]
    code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' http://localhost:8045/readyz)
    log "info: GET /readyz answered $code"
    # Media ports: hard checks only with RTCD_REQUIRE_MEDIA_PORTS=1 (until the
    # media plane opens its listeners they are reported as WARN lines).
    media_check() {
        if "${@:2}"; then pass "$1"
        elif [ "${RTCD_REQUIRE_MEDIA_PORTS:-0}" = 1 ]; then fail "$1"
        else printf 'WARN: not yet: %s (set RTCD_REQUIRE_MEDIA_PORTS=1 to make this a failure)\n' "$1"
        fi
    }
    media_check "line 1: media listeners inside the container: 8443/udp and 8443/tcp" \
        eval 'wait_until 10 udp_bound "$pid" 8443 && wait_until 10 tcp_listening "$pid" 8443'
    media_check "line 1: published 8443/tcp accepts a connection on localhost" \
        timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/8443' 2>/dev/null
else
    fail "line 1: curl http://localhost:8045/version did not answer (container stopped, or ${start_timeout}s passed)"
    show_logs "$work/run1.log"
fi
stop_and_check rtcd "$run1" "$work/run1.log"
timing line1

# --- 4. the guide's second line: a mounted config file --------------------------
# The operator copies config/config.sample.toml into a directory, edits it and
# mounts that directory at /config. Our edits: self-registration on (default
# off) and a different API port, so both prove the file is read. File logging
# stays as in the sample (enabled, rtcd.log in the working directory, which
# the image makes writable for `calls`).
cfgdir=$work/rtcd/config
mkdir -p "$cfgdir"
chmod 0755 "$work" "$work/rtcd" "$cfgdir"   # readable by uid 65532
cfg=$cfgdir/config.toml
sample=$repo/config/config.sample.toml
port2=8055
lre='^[[:space:]]*(http\.)?listen_address[[:space:]]*=[[:space:]]*'
sre='^[[:space:]]*(security\.)?allow_self_registration[[:space:]]*=[[:space:]]*'
cfg_ok=false
if [ -f "$sample" ]; then
    sed -E -e "s/(${lre})\"[^\"]*\"/\\1\":$port2\"/" -e "s/(${sre})false/\\1true/" "$sample" >"$cfg"
    if grep -qE "${lre}\":$port2\"" "$cfg" && grep -qE "${sre}true" "$cfg"; then
        cfg_ok=true
        log "config: copy of config/config.sample.toml with listen_address \":$port2\" and allow_self_registration = true"
    else
        log "config/config.sample.toml has no listen_address/allow_self_registration lines to edit; writing a minimal config"
    fi
fi
if [ "$cfg_ok" != true ]; then
    cat >"$cfg" <<EOF
[api.http]
listen_address = ":$port2"

[api.security]
allow_self_registration = true

[logger]
enable_file = true
file_location = "rtcd.log"
EOF
fi
chmod 0644 "$cfg"
expect_log=false
grep -qE '^[[:space:]]*enable_file[[:space:]]*=[[:space:]]*true' "$cfg" \
    && grep -qE '^[[:space:]]*file_location[[:space:]]*=[[:space:]]*"rtcd.log"' "$cfg" && expect_log=true

log "running: docker run --name rtcd -v $cfgdir:/config $IMAGE -config /config/config.toml"
docker run --name rtcd -v "$cfgdir":/config "$IMAGE" -config /config/config.toml \
    >"$work/run2.log" 2>&1 </dev/null &
run2=$!
bg_pids+=("$run2")
pid=""
get_pid2() { container_running rtcd && pid=$(cpid rtcd) && [ -n "$pid" ] && [ "$pid" != 0 ]; }
if wait_api rtcd "$start_timeout" get_pid2 \
    && wait_api rtcd "$start_timeout" in_ns "$pid" curl -fs -m 2 -o "$work/version2.json" "http://127.0.0.1:$port2/version"; then
    pass "line 2: -config /config/config.toml honoured: API on :$port2 ($(tr -d '\n' <"$work/version2.json"))"
    check "line 2: /version has the six string keys" has_version_keys "$work/version2.json"
    check "line 2: nothing listens on the default :8045" eval '! tcp_listening "$pid" 8045'
    check "line 2: the daemon runs as uid/gid 65532" uid_is_65532 "$pid"
    url_base=http://127.0.0.1:$port2
    code=$(register_status "$work/reg2.json" "ct-$$-2" in_ns "$pid")
    check "line 2: allow_self_registration from the file: POST /register 201 (got $code)" [ "$code" = 201 ]
    if [ "$expect_log" = true ]; then
        check "line 2: file logging from the config writes /opt/rtcd/bin/rtcd.log" \
            wait_until 10 test -s "/proc/$pid/root/opt/rtcd/bin/rtcd.log"
    fi
else
    fail "line 2: the API did not answer on :$port2 inside the container (container stopped, or ${start_timeout}s passed)"
    show_logs "$work/run2.log"
fi
stop_and_check rtcd "$run2" "$work/run2.log"
timing line2

# --- 5. no config, no env at all -------------------------------------------------
docker run --name rtcd-defaults "$IMAGE" >"$work/run3.log" 2>&1 </dev/null &
run3=$!
bg_pids+=("$run3")
get_pid3() { container_running rtcd-defaults && pid=$(cpid rtcd-defaults) && [ -n "$pid" ] && [ "$pid" != 0 ]; }
if wait_api rtcd-defaults "$start_timeout" get_pid3 \
    && wait_api rtcd-defaults "$start_timeout" in_ns "$pid" curl -fs -m 2 -o /dev/null http://127.0.0.1:8045/version; then
    pass "no config/env: the image starts on defaults (API on :8045)"
    check "no config/env: default log file rtcd.log written in the working directory" \
        wait_until 10 test -s "/proc/$pid/root/opt/rtcd/bin/rtcd.log"
    check "no config/env: default store /tmp/rtcd_db created" test -e "/proc/$pid/root/tmp/rtcd_db"
    url_base=http://127.0.0.1:8045
    code=$(register_status /dev/null "ct-$$-3" in_ns "$pid")
    check "no config/env: self-registration is off by default (POST /register 401; got $code)" [ "$code" = 401 ]
else
    fail "no config/env: the image did not start on defaults"
    show_logs "$work/run3.log"
fi
stop_and_check rtcd-defaults "$run3" "$work/run3.log"
timing defaults

# --- 6. persistent store on a named volume (the documented recipe) -------------
data_run() {
    docker run -d --name rtcd-data -v "$volume:/opt/rtcd/data" \
        -e RTCD_STORE_DATASOURCE=/opt/rtcd/data/db -e RTCD_LOGGER_ENABLEFILE=false \
        -e RTCD_API_SECURITY_ALLOWSELFREGISTRATION=true "$IMAGE" >/dev/null 2>"$work/run4.err"
}
get_pid4() { container_running rtcd-data && pid=$(cpid rtcd-data) && [ -n "$pid" ] && [ "$pid" != 0 ]; }
up4() { wait_api rtcd-data "$start_timeout" get_pid4 && wait_api rtcd-data "$start_timeout" in_ns "$pid" curl -fs -m 2 -o /dev/null http://127.0.0.1:8045/version; }
url_base=http://127.0.0.1:8045
if data_run && up4; then
    code=$(register_status "$work/reg4.json" "ct-persist" in_ns "$pid")
    check "volume: register a client with the store on $volume (201; got $code)" [ "$code" = 201 ]
    docker stop -t 10 rtcd-data >/dev/null 2>&1
    docker logs rtcd-data >"$work/run4.log" 2>&1
    docker rm rtcd-data >/dev/null 2>&1
    if data_run && up4; then
        code=$(register_status "$work/reg4b.json" "ct-persist" in_ns "$pid")
        check "volume: registration survives a new container (400 already registered; got $code $(tr -d '\n' <"$work/reg4b.json"))" \
            [ "$code" = 400 ]
    else
        fail "volume: second container did not start"
        docker logs rtcd-data >&2 2>&1; cat "$work/run4.err" >&2
    fi
else
    fail "volume: container with RTCD_STORE_DATASOURCE on a named volume did not start"
    docker logs rtcd-data >&2 2>&1; cat "$work/run4.err" >&2
fi
podman rm -f -t 10 rtcd-data >/dev/null 2>&1
timing volume

log "total $((SECONDS - t0))s"
echo "container-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
