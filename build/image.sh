#!/usr/bin/env bash
# Build the rtcd container image locally, without any image registry.
#
#   build/image.sh [BINARY]        (as root, from anywhere)
#
# BINARY defaults to target/release/rtcd, built with
# `cargo build --release --locked` if it does not exist yet.
#
# Steps, each skipped when already done (the script is idempotent):
#   1. podman, runc and debootstrap from Debian; podman engine settings for
#      these machines (/etc/containers/containers.conf);
#   2. a Debian bookworm minbase root file system made with debootstrap from
#      the mirror in apt's sources, cached as a tarball in $RTCD_BUILD_CACHE
#      (default /var/cache/rtcd-build) and imported as $RTCD_BASE_IMAGE
#      (default localhost/rtcd-base:bookworm);
#   3. `podman build` of the repository's Dockerfile with that image as the
#      runtime base and the host binary in place of the `builder` stage
#      (--build-context builder=DIR, DIR/out/rtcd), tagged $RTCD_IMAGE
#      (default rtcd, i.e. localhost/rtcd:latest).
#
# Elsewhere, with a registry at hand, `docker build -t rtcd .` builds the
# same image from source. `RTCD_IMAGE_FROM_SOURCE=1 build/image.sh` does that
# here too, builder stage included (a local stand-in for rust:1-bookworm plus
# the host's Rust toolchain; a few minutes): a check of the Dockerfile's
# normal build path.
set -euo pipefail
log_tag=image.sh
# shellcheck source=build/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

image=${RTCD_IMAGE:-rtcd}
base_image=${RTCD_BASE_IMAGE:-localhost/rtcd-base:$rtcd_suite}
bin=${1:-$rtcd_repo/target/release/rtcd}

t_start=$SECONDS
step_t=$SECONDS
timing() { log "step '$1' took $((SECONDS - step_t))s"; step_t=$SECONDS; }

ensure_podman
timing podman-setup

ensure_debian_image "$base_image" "$rtcd_suite-minbase.tar" "" --change 'CMD ["bash"]'
timing base-image

if [ "${RTCD_IMAGE_FROM_SOURCE:-0}" = 1 ]; then
    # Check the Dockerfile's own builder stage (what `docker build .` does
    # elsewhere) without a registry: a local stand-in for rust:1-bookworm
    # (the base image + a C toolchain + this host's extra CA certificates, for
    # crates.io over HTTPS) and the host's Rust toolchain mounted read-only.
    # Needs the Debian mirror and crates.io reachable from containers; takes a
    # few minutes (a full release build).
    rust_image=localhost/rtcd-rust-builder:$rtcd_suite
    sysroot=$(rustc --print sysroot) || die "rustc not found"
    if ! podman image exists "$rust_image"; then
        rctx=$(mktemp -d /tmp/rtcd-rust-ctx.XXXXXX)
        mkdir -p "$rctx/certs"
        cp /usr/local/share/ca-certificates/*.crt "$rctx/certs/" 2>/dev/null || true
        {
            echo "FROM $base_image"
            echo 'RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev binutils ca-certificates && rm -rf /var/lib/apt/lists/*'
            echo 'COPY certs/ /usr/local/share/ca-certificates/'
            echo 'RUN update-ca-certificates'
            echo 'ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
        } >"$rctx/Containerfile"
        if ! podman build --tag "$rust_image" "$rctx" >&2; then
            rm -rf "$rctx"
            die "could not build $rust_image"
        fi
        rm -rf "$rctx"
    fi
    timing rust-builder-image
    log "podman build -t $image from source (builder $rust_image, toolchain $sysroot)"
    podman build \
        --file "$rtcd_repo/Dockerfile" \
        --build-arg "BUILDER_IMAGE=$rust_image" \
        --build-arg "RUNTIME_IMAGE=$base_image" \
        --build-arg "RTCD_BUILD_HASH=$(git -C "$rtcd_repo" rev-parse --short=7 HEAD 2>/dev/null)" \
        --build-arg "RTCD_BUILD_DATE=$(git -C "$rtcd_repo" log -1 --format=%cd --date=format-local:'%Y-%m-%d %H:%M' 2>/dev/null)" \
        --volume "$sysroot:/usr/local/rust:ro" \
        --layers \
        --tag "$image" \
        "$rtcd_repo" >&2
    timing podman-build-from-source
    log "done in $((SECONDS - t_start))s: $image = $(podman image inspect --format '{{.Id}}' "$image" | cut -c1-12)"
    exit 0
fi

if [ $# -eq 0 ]; then build_binary_if_missing "$bin"; fi
[ -f "$bin" ] && [ -x "$bin" ] || die "binary $bin not found or not executable"
ctx=$(mktemp -d /tmp/rtcd-builder-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/out"
cp "$bin" "$ctx/out/rtcd"
chmod 0755 "$ctx/out/rtcd"
if command -v strip >/dev/null; then strip "$ctx/out/rtcd" 2>/dev/null || true; fi
timing stage-binary

log "podman build -t $image (runtime base $base_image, binary $bin)"
podman build \
    --file "$rtcd_repo/Dockerfile" \
    --build-context "builder=$ctx" \
    --build-arg "RUNTIME_IMAGE=$base_image" \
    --network none \
    --layers \
    --tag "$image" \
    "$rtcd_repo" >&2
timing podman-build

log "done in $((SECONDS - t_start))s: $image = $(podman image inspect --format '{{.Id}}' "$image" | cut -c1-12)"
