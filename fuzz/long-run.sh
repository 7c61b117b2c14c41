#!/usr/bin/env bash
# Long run of every fuzz target (by hand, not CI), growing the committed
# corpora, then a table for SECURITY.md ("Results of the long runs"):
# executions, coverage (libFuzzer's cov: edges, ft: features), corpus size,
# and when the edge count last grew, as a share of the run's executions (a
# value well below 100% means the target had reached a plateau).
#
#   fuzz/long-run.sh [SECONDS_PER_TARGET] [PARALLEL_TARGETS] [TARGET...]
#
# Afterwards shrink the corpora before committing them:
#   for t in $(cargo fuzz list); do cargo fuzz cmin "$t" "corpus/$t"; done
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
parallel="${2:-2}"
shift 2 2>/dev/null || shift $#
export RUSTC_BOOTSTRAP=1
cargo fuzz build
logs="${FUZZ_LOGS:-/tmp/qosd-fuzz-logs}"
mkdir -p "$logs"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

run() { # target
    local t=$1 dict=()
    [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
    mkdir -p "corpus/$t" "artifacts/$t"
    if cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" >"$logs/$t.log" 2>&1; then
        echo ok >"$logs/$t.rc"
    else
        echo "FINDING" >"$logs/$t.rc"
    fi
}
running=0
for t in "${targets[@]}"; do
    run "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

printf '| target | seconds | executions | exec/s | cov at start | cov at end (edges) | ft at end (features) | corpus | edges last grew at | result |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    start=$(grep -m1 'INITED' "$log" | sed -nE 's/.* cov: ([0-9]+).*/\1/p')
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/p' <<<"$last")
    # The execution at which the edge count first reached its final value:
    # far below 100% means the target had reached a plateau.
    grew=$(awk -v c="$cov" '/^#[0-9]+/ && $0 ~ (" cov: " c " ") { sub(/^#/, "", $1); print $1; exit }' "$log")
    share="?"
    if [ -n "$grew" ] && [ "$execs" != "?" ] && [ "$execs" -gt 0 ]; then
        share="$((grew * 100 / execs))% of the executions"
    fi
    # shellcheck disable=SC2016 # the backquotes are Markdown, not a command
    printf '| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$t" "$seconds" "$execs" "$rate" "$start" "$cov" "$ft" "$corp" "$share" "$(cat "$logs/$t.rc")"
done
