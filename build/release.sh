#!/usr/bin/env bash
# Release tarball: builds the daemon and packs it with the sample config, the
# systemd unit and the getting-started guide.
#
#   build/release.sh
#
# Produces dist/rtcd-<version>-linux-<arch>.tar.gz (arch in Go/Docker naming:
# amd64, arm64, ...) plus a .sha256 beside it, and prints the tarball's path
# as the last line of its output. <version> is the crate version from
# Cargo.toml. RTCD_RELEASE_SKIP_BUILD=1 packs the existing
# target/release/rtcd without running cargo.
#
# Layout inside the tarball:
#   rtcd-<version>-linux-<arch>/rtcd                       (stripped binary)
#   rtcd-<version>-linux-<arch>/config/config.sample.toml
#   rtcd-<version>-linux-<arch>/systemd/rtcd.service
#   rtcd-<version>-linux-<arch>/docs/getting-started.md    (if present)
#   rtcd-<version>-linux-<arch>/README.md, LICENSE*        (if present)
set -euo pipefail
log_tag=release.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[%s] %s\n' "$log_tag" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$log_tag" "$*" >&2; exit 1; }
cd "$repo"

if [ "${RTCD_RELEASE_SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release --locked"
    cargo build --release --locked >&2
fi
bin=target/release/rtcd
[ -x "$bin" ] || die "$bin not found"

# Crate version: `cargo pkgid` prints e.g. path+file:///src/rtcd#0.1.0 or ...#rtcd@0.1.0.
pkgid=$(cargo pkgid --offline 2>/dev/null || cargo pkgid)
version=${pkgid##*[#@]}
[ -n "$version" ] || die "could not determine the crate version from '$pkgid'"

case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    armv7l) arch=arm ;;
    i?86) arch=386 ;;
    *) arch=$(uname -m) ;;
esac

name=rtcd-$version-linux-$arch
mkdir -p dist
stage=$(mktemp -d "$repo/dist/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/$name
mkdir -p "$root/config" "$root/systemd"

install -m 0755 "$bin" "$root/rtcd"
if command -v strip >/dev/null; then strip "$root/rtcd"; fi
[ -f config/config.sample.toml ] || die "config/config.sample.toml missing"
install -m 0644 config/config.sample.toml "$root/config/config.sample.toml"
install -m 0644 systemd/rtcd.service "$root/systemd/rtcd.service"
if [ -f docs/getting-started.md ]; then
    mkdir -p "$root/docs"
    install -m 0644 docs/getting-started.md "$root/docs/getting-started.md"
fi
for f in README.md LICENSE LICENSE.txt LICENSE-MIT LICENSE-APACHE; do
    [ -f "$f" ] && install -m 0644 "$f" "$root/$f"
done

# Reproducible archive: fixed order, owners and timestamps (the commit time
# when in a git checkout with commits, else now).
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
out=dist/$name.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$stage" -cf - "$name" | gzip -n -9 >"$out.tmp"
mv "$out.tmp" "$out"
(cd dist && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")

log "contents:"
tar -tvzf "$out" >&2
echo "$repo/$out"
