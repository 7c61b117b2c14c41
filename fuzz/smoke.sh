#!/usr/bin/env bash
# Smoke run of every fuzz target (CI): builds the fuzz crate, then runs
# each target for a few seconds on its committed corpus. Exits non-zero if
# a target crashes, hangs (-timeout) or fails to build. The committed
# corpus is only read: new inputs go to a scratch directory.
#
#   fuzz/smoke.sh               # 5 s per target
#   FUZZ_SMOKE_SECONDS=30 fuzz/smoke.sh
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). cargo-fuzz passes
# nightly-only flags to rustc (-Zsanitizer=address...); RUSTC_BOOTSTRAP=1
# lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SMOKE_SECONDS:-5}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 1
fi

cargo fuzz build
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in $(cargo fuzz list); do
    echo "== fuzz smoke: $target (${seconds}s)"
    mkdir -p "$scratch/$target"
    dict=()
    if [ -f "dicts/$target.dict" ]; then
        dict=("-dict=dicts/$target.dict")
    fi
    if ! cargo fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" 2>"$scratch/$target.log"; then
        tail -n 60 "$scratch/$target.log" >&2
        failed+=("$target")
    else
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$scratch/$target.log" || true
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke: all targets ran ${seconds}s without a finding"
