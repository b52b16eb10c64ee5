# shellcheck shell=bash
# Shared helpers for build/*.sh (sourced, not executed).
#
# ensure_podman                 podman + runc + debootstrap installed, engine configured
# ensure_debian_image IMG TAR INCLUDE CHANGES...
#                               a Debian bookworm minbase image made locally with
#                               debootstrap (cached as $RTCD_BUILD_CACHE/TAR), imported as IMG
# build_binary_if_missing BIN   cargo build --release --locked when BIN is absent

rtcd_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rtcd_cache=${RTCD_BUILD_CACHE:-/var/cache/rtcd-build}
rtcd_suite=bookworm

: "${log_tag:=build}"
log() { printf '[%s] %s\n' "$log_tag" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$log_tag" "$*" >&2; exit 1; }

apt_install() { # apt_install PKG...: install what is missing (with apt's default recommends)
    local p need=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
    done
    [ ${#need[@]} -gt 0 ] || return 0
    log "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || log "apt-get update reported errors; trying the install anyway"
    apt-get install -y -qq "${need[@]}" >/dev/null
}

ensure_podman() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (podman, debootstrap)"
    apt_install podman runc debootstrap
    # These machines: no systemd as PID 1 (cgroupfs), runc rather than crun,
    # and podman's default RLIMIT_NOFILE request cannot be granted.
    local marker='# managed by rtcd build/lib.sh' target body
    body="$marker
[containers]
default_ulimits = []

[engine]
cgroup_manager = \"cgroupfs\"
runtime = \"runc\"
"
    mkdir -p /etc/containers
    if [ ! -e /etc/containers/containers.conf ] || grep -qF "$marker" /etc/containers/containers.conf; then
        target=/etc/containers/containers.conf
    else
        # Someone else's containers.conf: leave it, add a drop-in (read after it).
        mkdir -p /etc/containers/containers.conf.d
        target=/etc/containers/containers.conf.d/50-rtcd.conf
    fi
    if [ "$(cat "$target" 2>/dev/null)" != "$(printf '%s' "$body")" ]; then
        printf '%s' "$body" >"$target"
        log "wrote $target"
    fi
}

detect_mirror() { # the first bookworm mirror in apt's sources
    local m="" f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        m=$(sed -E 's/\[[^]]*\]//' "$f" | awk -v s="$rtcd_suite" '$1 == "deb" && $3 == s { print $2; exit }')
        [ -n "$m" ] && { echo "$m"; return; }
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # deb822 stanzas: Types includes deb, Suites includes bookworm.
        m=$(awk -v s="$rtcd_suite" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; ok_suite = 0; ok_type = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^[ \t]*#/) continue
                    key = $i; sub(/:.*/, "", key); val = $i; sub(/^[^:]*:[ \t]*/, "", val)
                    n = split(val, w, /[ \t]+/)
                    if (key == "URIs" && uri == "") for (j = 1; j <= n; j++) if (w[j] != "") { uri = w[j]; break }
                    if (key == "Suites") for (j = 1; j <= n; j++) if (w[j] == s) ok_suite = 1
                    if (key == "Types") for (j = 1; j <= n; j++) if (w[j] == "deb") ok_type = 1
                }
                if (uri != "" && ok_suite && ok_type) { print uri; exit }
            }' "$f")
        [ -n "$m" ] && { echo "$m"; return; }
    done
    echo "http://deb.debian.org/debian"
}

# ensure_debian_image IMAGE TARNAME INCLUDE [--change ...]...
ensure_debian_image() {
    local image=$1 tarname=$2 include=$3
    shift 3
    if podman image exists "$image"; then
        log "image $image present"
        return 0
    fi
    mkdir -p "$rtcd_cache"
    local tarball=$rtcd_cache/$tarname
    if [ ! -s "$tarball" ]; then
        local mirror=${RTCD_DEBIAN_MIRROR:-$(detect_mirror)}
        local rootfs=$rtcd_cache/rootfs.$$ args=(--variant=minbase)
        [ -n "$include" ] && args+=("--include=$include")
        log "debootstrap ${args[*]} $rtcd_suite from $mirror (about a minute)"
        rm -rf "$rootfs"
        if ! debootstrap "${args[@]}" "$rtcd_suite" "$rootfs" "$mirror" >"$rtcd_cache/$tarname.debootstrap.log" 2>&1; then
            tail -n 30 "$rtcd_cache/$tarname.debootstrap.log" >&2
            rm -rf "$rootfs"
            die "debootstrap failed (log: $rtcd_cache/$tarname.debootstrap.log)"
        fi
        # Slim it like debian:*-slim. The container engine provides
        # /etc/hosts, resolv.conf and hostname.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
               "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
               "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log \
               "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
        : >"$rootfs/etc/resolv.conf"
        : >"$rootfs/etc/hostname"
        tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    else
        log "using cached $tarball"
    fi
    log "podman import $tarball as $image"
    podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$@" \
        --message "debootstrap --variant=minbase${include:+ --include=$include} $rtcd_suite" \
        "$tarball" "$image" >/dev/null
}

build_binary_if_missing() {
    local bin=$1
    [ -x "$bin" ] && return 0
    command -v cargo >/dev/null || die "$bin missing and cargo not found"
    log "$bin missing: cargo build --release --locked"
    (cd "$rtcd_repo" && cargo build --release --locked)
    [ -x "$bin" ] || die "cargo build did not produce $bin"
}
