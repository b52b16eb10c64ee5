# rtcd container image (multi-stage).
#
# Normal build, on any machine with Docker (BuildKit) and registry access:
#
#     docker build -t rtcd .
#
# Offline build on our CI/dev machines: build/image.sh. It makes the base
# image locally (debootstrap), passes it in with
#     --build-arg RUNTIME_IMAGE=localhost/rtcd-base:bookworm
# and replaces the `builder` stage below by a directory holding a binary built
# on the host:
#     podman build --build-context builder=<dir with out/rtcd> ...
# so whatever the `builder` stage produces must live at /out/rtcd.
#
# Conventions kept from the upstream image: user `calls` (uid/gid 65532),
# binary at /opt/rtcd/bin/rtcd, WORKDIR /opt/rtcd/bin, ENTRYPOINT ["./rtcd"],
# no CMD (arguments such as `-config /config/config.toml` are appended).
# With no config file the daemon runs on built-in defaults plus RTCD_* env.

ARG BUILDER_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# ---------------------------------------------------------------------------
# builder: compile the release binary.
# ---------------------------------------------------------------------------
FROM ${BUILDER_IMAGE} AS builder
# The build context has no .git (see .dockerignore); pass the metadata that
# GET /version reports, e.g.
#   --build-arg RTCD_BUILD_HASH=$(git rev-parse --short=7 HEAD)
#   --build-arg RTCD_BUILD_DATE="$(git log -1 --format=%cd --date=format-local:'%Y-%m-%d %H:%M')"
ARG RTCD_BUILD_HASH=""
ARG RTCD_BUILD_DATE=""
WORKDIR /usr/src/rtcd
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/src/rtcd/target \
    cargo build --release --locked \
 && mkdir -p /out \
 && cp target/release/rtcd /out/rtcd \
 && strip /out/rtcd

# ---------------------------------------------------------------------------
# runtime: glibc base (the binary is a normal dynamically linked glibc
# executable; SQLite is linked in statically).
# ---------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}

LABEL org.opencontainers.image.title="rtcd" \
      org.opencontainers.image.description="Real-time communication daemon for Mattermost Calls (Rust implementation)"

# The upstream image's unprivileged user. /opt/rtcd/bin (the working
# directory) is writable by `calls` so that the default log file `rtcd.log`
# can be created when file logging is enabled (the default, and the setting
# in config.sample.toml); the binary itself stays root-owned.
# /opt/rtcd/data is an empty, calls-owned mount point for a persistent store
# (`-v rtcd-data:/opt/rtcd/data -e RTCD_STORE_DATASOURCE=/opt/rtcd/data/db`);
# a fresh named volume mounted there inherits that ownership.
RUN groupadd --system -K SYS_GID_MAX=65532 --gid 65532 calls \
 && useradd --system -K SYS_UID_MAX=65532 --uid 65532 --gid 65532 \
        --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin calls \
 && install -d -o root -g root -m 0755 /opt/rtcd \
 && install -d -o 65532 -g 65532 -m 0755 /opt/rtcd/bin /opt/rtcd/data \
 && chmod 1777 /tmp

COPY --from=builder --chown=0:0 /out/rtcd /opt/rtcd/bin/rtcd

# 8045/tcp: HTTP/WebSocket API (Calls plugin side).
# 8443/udp and 8443/tcp: media (ICE/UDP preferred, ICE-TCP fallback).
EXPOSE 8045/tcp 8443/udp 8443/tcp

USER 65532:65532
WORKDIR /opt/rtcd/bin
# SIGTERM starts a drain (the daemon waits for ongoing call sessions); give
# `docker stop` a long enough timeout (-t) when sessions may be active.
STOPSIGNAL SIGTERM
ENTRYPOINT ["./rtcd"]
