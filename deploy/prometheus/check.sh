#!/usr/bin/env bash
# Checks the Prometheus side: the alert rules (syntax and unit tests), the
# example scrape configuration, and the metrics qosd exposes (promtool's
# naming lint on the exposition of a simulated office).
# Usage: deploy/prometheus/check.sh [QOSD_BINARY]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
QOSD=$(realpath "${1:-$HERE/../../target/debug/qosd}")
cd "$HERE"
command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus"; exit 2; }
promtool check rules qosd-alerts.yml
promtool test rules qosd-alerts.test.yml
promtool check config prometheus.yml
"$QOSD" simulate --duration 10s --prometheus > "${TMPDIR:-/tmp}/qosd-metrics.txt"
promtool check metrics < "${TMPDIR:-/tmp}/qosd-metrics.txt"
grep -q '^qosd_category_queue_delay_seconds_bucket' "${TMPDIR:-/tmp}/qosd-metrics.txt"
echo "prometheus checks: ok"
