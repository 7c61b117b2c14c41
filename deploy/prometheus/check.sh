#!/usr/bin/env bash
# Checks the Prometheus side: the alert rules (syntax and unit tests), the
# example scrape configuration, the Grafana dashboards' queries, and the
# metrics qosd exposes (promtool's naming lint on the exposition of a
# simulated office).
# Usage: deploy/prometheus/check.sh [QOSD_BINARY]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
QOSD=$(realpath "${1:-$HERE/../../target/debug/qosd}")
cd "$HERE"
command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus"; exit 2; }
promtool check rules qosd-alerts.yml
promtool test rules qosd-alerts.test.yml
promtool check config prometheus.yml
# The Grafana dashboards: valid JSON, and every query parses (each becomes
# a recording rule for promtool; $instance stands for an office).
python3 - "$HERE/../grafana" > "${TMPDIR:-/tmp}/qosd-dashboard-queries.yml" <<'PY'
import json, pathlib, sys
print("groups:\n  - name: dashboards\n    rules:")
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    for panel in json.loads(path.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$instance", "gw1")
            print("      - record: dashboard:%s:%d:%s" % (path.stem.replace("-", "_"), panel["id"], target["refId"]))
            print("        expr: %s" % json.dumps(expr))
PY
promtool check rules "${TMPDIR:-/tmp}/qosd-dashboard-queries.yml"
"$QOSD" simulate --duration 10s --prometheus > "${TMPDIR:-/tmp}/qosd-metrics.txt"
# promtool's lint wants rates in bytes; the *_bits_per_second gauges of
# autorate (issue 13) are in bits on purpose, as line rates are quoted.
# Any other problem fails.
lint=$(promtool check metrics < "${TMPDIR:-/tmp}/qosd-metrics.txt" 2>&1) || true
lint=$(printf '%s\n' "$lint" | grep -v -E '^(qosd_[a-z_]+_bits_per_second use base unit "bytes" instead of "bits")?$' || true)
[ -z "$lint" ] || { echo "promtool check metrics:"; echo "$lint"; exit 1; }
for family in qosd_category_queue_delay_seconds_bucket qosd_app_bytes_total qosd_app_packets_total \
    qosd_tcp_rtt_seconds_bucket qosd_tcp_data_packets_total qosd_tcp_retransmitted_packets_total \
    qosd_unclassified_bytes_total; do
    grep -q "^$family{" "${TMPDIR:-/tmp}/qosd-metrics.txt" || { echo "$family missing from the exposition"; exit 1; }
done
# The per-app label names are a contract (dashboards, alerts).
grep -q '^qosd_app_bytes_total{direction="[a-z]*",app="[^"]*",category="[^"]*"}' "${TMPDIR:-/tmp}/qosd-metrics.txt"
# So is the unknown traffic's: one series per direction, no other label.
for d in upload download; do
    grep -q "^qosd_unclassified_bytes_total{direction=\"$d\"} " "${TMPDIR:-/tmp}/qosd-metrics.txt" \
        || { echo "qosd_unclassified_bytes_total{direction=\"$d\"} missing"; exit 1; }
done
echo "prometheus checks: ok"
