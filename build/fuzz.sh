#!/usr/bin/env bash
# Fuzzes the parsers hostile input reaches (fuzz/fuzz_targets: ws_message, dc_message,
# stun_and_ice_tcp, offer_filter, config) with cargo fuzz (libFuzzer, AddressSanitizer).
# Needs a nightly toolchain (rustup) and cargo-fuzz (installed into target/tools if missing).
#
#   bash build/fuzz.sh smoke [SECONDS]   every target for SECONDS (default 20): the CI smoke
#   bash build/fuzz.sh full [RUNS [TARGET...]]  every target (or those named) for RUNS
#                                        executions (default 10000000)
#   bash build/fuzz.sh TARGET ARGS...    one target, libFuzzer arguments as given
#
# FUZZ_SANITIZER=none runs without AddressSanitizer (the targets are safe Rust; ASan makes the
# allocation-heavy config loader ~10x slower) in its own build directory, target/fuzz-none.
#
# Crashes land in fuzz/artifacts/<target>/ and fail the run. New inputs found go to
# fuzz/corpus/<target>/; `full` minimises each corpus afterwards (cargo fuzz cmin).
# Without a nightly toolchain it prints one line saying so and exits 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[fuzz] %s\n' "$*" >&2; }

if ! command -v rustup >/dev/null 2>&1 || ! rustup run nightly rustc --version >/dev/null 2>&1; then
    log "SKIPPED: no nightly toolchain (cargo fuzz needs one: rustup toolchain install nightly)"
    exit 0
fi
# cargo-fuzz: the one on PATH, or one installed into target/tools (CARGO_HOME may be
# read-only, e.g. a toolchain mounted into a container).
export RUSTUP_TOOLCHAIN=nightly
if command -v cargo-fuzz >/dev/null 2>&1; then
    cargo_fuzz=cargo-fuzz
else
    cargo_fuzz=$PWD/target/tools/bin/cargo-fuzz
    if [ ! -x "$cargo_fuzz" ]; then
        log "installing cargo-fuzz into target/tools"
        cargo install --locked --root "$PWD/target/tools" cargo-fuzz >&2 ||
            { log "FAILED: cargo install cargo-fuzz (is crates.io reachable?)"; exit 1; }
    fi
fi

sanitizer=${FUZZ_SANITIZER:-address}
build_args=(--release -s "$sanitizer")
[ "$sanitizer" = address ] || build_args+=(--target-dir "$PWD/target/fuzz-$sanitizer")
targets=(ws_message dc_message stun_and_ice_tcp offer_filter config)
mode=${1:-smoke}
shift || true
logs=target/fuzz-logs
mkdir -p "$logs"
run() { # run TARGET libfuzzer-args...
    local target=$1; shift
    mkdir -p "fuzz/corpus/$target"
    log "=== $target $* (sanitizer: $sanitizer; full output: $logs/$target.log)"
    "$cargo_fuzz" fuzz run "${build_args[@]}" "$target" "fuzz/corpus/$target" -- \
        -print_final_stats=1 -max_len=65536 "$@" 2>&1 | tee "$logs/$target.log" | grep -E "^(stat::|Done|==[0-9]+==|SUMMARY|INFO: .*seed)" >&2
}
case "$mode" in
    smoke)
        seconds=${1:-20}
        for t in "${targets[@]}"; do run "$t" -max_total_time="$seconds"; done
        ;;
    full)
        runs=${1:-10000000}
        shift || true
        [ $# -gt 0 ] && targets=("$@")
        for t in "${targets[@]}"; do
            run "$t" -runs="$runs"
            "$cargo_fuzz" fuzz cmin "${build_args[@]}" "$t" "fuzz/corpus/$t" >/dev/null 2>&1 || true
        done
        ;;
    *)
        run "$mode" "$@"
        ;;
esac
log "done: no crash"
