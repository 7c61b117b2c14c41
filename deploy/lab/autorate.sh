#!/usr/bin/env bash
# The variable-capacity lab (issue 13; run by hand as root, not part of
# CI's pass/fail). The office under load (4 TCP uploads, 4 downloads, a
# voice-like stream every 20 ms) while the ISP line drops from 20/50 to
# 6/15 Mbit/s for 30 s and comes back (lab.sh line: the modem's buffer
# keeps its 300 ms of the nominal rate in bytes, so 1 s at the low rate),
# through three gateways on the same namespaces:
#
#   autorate  qosd with autorate between 2/5 and 19/47 Mbit/s
#   fixed     qosd at its fixed 19/47 Mbit/s (autorate off)
#   bridge    a plain kernel bridge (the modem's buffer alone)
#
# Prints per phase (before the drop, during it, after it) the voice round
# trip p50/p99 and loss and the TCP goodput each way, then how long each
# gateway took to settle: from the drop until every 1 s window of the call
# has its p99 within 15 ms of idle, and from the line's return until every
# 3 s of upload / download carry 80 % of qosd's nominal 19/47 Mbit/s;
# with qosd, its CPU (% of one core) over the run and its shaping rate
# during the drop. Takes about 4 minutes with one repetition.
#
#   sudo deploy/lab/autorate.sh [-r REPS] [-o OUTDIR] [-g "autorate fixed bridge"] [-c cubic|bbr]
#
# -c: the TCP senders' congestion control, both ways (iperf3 -C; default
# cubic, the default of Linux and Windows). With bbr (BBRv1, which does
# not slow down on a drop) see BENCHMARKS.md, "Downloads from BBR senders".
#
# Writes OUTDIR/results.json, OUTDIR/trace-<gateway>-<rep>.txt (each
# second: the call's p99, goodput each way, qosd's shaping rate, capacity
# estimate and WAN delay) and every run's raw output (iperf3 and irtt
# JSON, qosd's log and its metrics once a second) to OUTDIR.
set -euo pipefail

REPS=1 OUT=autorate-results SETUPS="autorate fixed bridge"
CC=cubic
while getopts "r:o:g:c:" opt; do
  case $opt in
    r) REPS=$OPTARG ;;
    o) OUT=$OPTARG ;;
    g) SETUPS=$OPTARG ;;
    c) CC=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "autorate.sh needs root"; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QOSD=${QOSD:-$ROOT/target/release/qosd}
[ -x "$QOSD" ] || (cd "$ROOT" && cargo build --release --quiet)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
LAB="$HERE/lab.sh"; P=qrate
QOSD_PID='' POLL_PID=''
cleanup() {
  set +e
  [ -z "$POLL_PID" ] || kill "$POLL_PID" 2>/dev/null
  [ -z "$QOSD_PID" ] || { kill "$QOSD_PID" 2>/dev/null; wait "$QOSD_PID" 2>/dev/null; }
  "$LAB" down -p $P >/dev/null 2>&1
}
trap cleanup EXIT INT TERM
x() { "$LAB" exec -p $P "$@"; }

UP=20 DOWN=50            # the line, Mbit/s
LOW_UP=6 LOW_DOWN=15     # ... during the drop
UP_Q=19 DOWN_Q=47        # qosd's rates (autorate's maximums)
BEFORE=15 DROP=30 AFTER=20
TOTAL=$((BEFORE + DROP + AFTER))


run_qosd() { # log autorate(true|false)
  QOSD_LINK__UPLOAD="$UP_Q Mbit" QOSD_LINK__DOWNLOAD="$DOWN_Q Mbit" \
    QOSD_AUTORATE__ENABLED="$2" \
    QOSD_AUTORATE__UPLOAD_MIN="2 Mbit" QOSD_AUTORATE__UPLOAD_MAX="$UP_Q Mbit" \
    QOSD_AUTORATE__DOWNLOAD_MIN="5 Mbit" QOSD_AUTORATE__DOWNLOAD_MAX="$DOWN_Q Mbit" \
    ip netns exec $P-gw "$QOSD" run --config "$HERE/qosd-lab.toml" 2> "$1" &
  QOSD_PID=$!
  for _ in $(seq 100); do
    grep -q running "$1" && return 0
    kill -0 "$QOSD_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "qosd did not start:"; cat "$1"; exit 1
}
stop_qosd() { kill "$QOSD_PID"; wait "$QOSD_PID" 2>/dev/null || true; QOSD_PID=''; }

now() { date +%s.%N; }
sleep_until() { sleep "$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; print (d > 0 ? d : 0) }')"; }
cpu_ticks() { if [ -n "$QOSD_PID" ]; then awk '{print $14 + $15}' /proc/"$QOSD_PID"/stat; else echo 0; fi; }

# One run of the scenario through whatever gateway is in place.
scenario() { # tag
  local tag=$1 pids=() t0 t_drop t_back c0 c1 t1
  x lan irtt client -i 20ms -d 5s -l 172 -q -o - 198.18.0.20:5004 > "$OUT/$tag.idle" 2>/dev/null || true
  x gw python3 "$HERE/poll_metrics.py" $((TOTAL + 1)) > "$OUT/$tag.rates" 2>/dev/null & POLL_PID=$!
  t0=$(now); c0=$(cpu_ticks)
  x lan iperf3 -c 198.18.0.20 -p 5201 -t $TOTAL -P 4 -C "$CC" -i 1 -J --get-server-output > "$OUT/$tag.up" 2> "$OUT/$tag.up.err" & pids+=($!)
  x lan iperf3 -c 198.18.0.20 -p 5202 -t $TOTAL -P 4 -C "$CC" -R -i 1 -J > "$OUT/$tag.down" 2> "$OUT/$tag.down.err" & pids+=($!)
  x lan irtt client -i 20ms -d ${TOTAL}s -l 172 -q -o - 198.18.0.20:5004 > "$OUT/$tag.voice" 2>/dev/null & pids+=($!)
  sleep_until "$(awk -v t="$t0" -v s=$BEFORE 'BEGIN { printf "%.3f", t + s }')"
  "$LAB" line -p $P -u ${LOW_UP}mbit -d ${LOW_DOWN}mbit >/dev/null; t_drop=$(now)
  sleep_until "$(awk -v t="$t0" -v s=$((BEFORE + DROP)) 'BEGIN { printf "%.3f", t + s }')"
  "$LAB" line -p $P -u ${UP}mbit -d ${DOWN}mbit >/dev/null; t_back=$(now)
  wait "${pids[@]}" || true
  c1=$(cpu_ticks); t1=$(now)
  wait "$POLL_PID" 2>/dev/null || true; POLL_PID=''
  echo "$t0 $t_drop $t_back $t1 $c0 $c1 $(getconf CLK_TCK)" > "$OUT/$tag.times"
  sleep 2   # the modem's buffer empties before the next run
}

echo "== variable line: ${UP}/${DOWN} Mbit for ${BEFORE}s, ${LOW_UP}/${LOW_DOWN} for ${DROP}s, ${UP}/${DOWN} for ${AFTER}s; 300 ms modem buffer (bytes); $REPS x ($SETUPS)"
"$LAB" up -p $P -u ${UP}mbit -d ${DOWN}mbit -b 300 >/dev/null
x srv sh -c 'iperf3 -s -D -J -p 5201; iperf3 -s -D -J -p 5202; irtt server -b 198.18.0.20:5004 >/dev/null 2>&1 &'
sleep 0.5
for rep in $(seq 1 "$REPS"); do
  for setup in $SETUPS; do
    echo "   rep $rep: $setup"
    case $setup in
      autorate) run_qosd "$OUT/autorate-$rep.log" true; scenario "autorate-$rep"; stop_qosd ;;
      fixed) run_qosd "$OUT/fixed-$rep.log" false; scenario "fixed-$rep"; stop_qosd ;;
      bridge) "$LAB" bridge -p $P; scenario "bridge-$rep"; "$LAB" unbridge -p $P ;;
      *) echo "unknown setup $setup (autorate, fixed, bridge)"; exit 2 ;;
    esac
  done
done
"$LAB" down -p $P >/dev/null

python3 - "$OUT" "$REPS" "$SETUPS" "$UP_Q" "$DOWN_Q" <<'PY'
import json, statistics, sys
from pathlib import Path

out, reps, setups = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split()
nominal = (float(sys.argv[4]) * 1e6, float(sys.argv[5]) * 1e6)
RAMP, ADAPT, RECOVER, MARGIN = 5.0, 5.0, 10.0, 15.0
LABELS = {"autorate": "qosd, autorate", "fixed": "qosd, fixed rate", "bridge": "kernel bridge"}


def load(path):
    try:
        text = path.read_text()
        return json.loads(text[text.index("{"):])
    except Exception:
        return None


def trips(path):
    """(seconds since epoch sent, rtt ms or None) of every round trip."""
    d = load(path) or {}
    return [(r["timestamps"]["client"]["send"]["wall"] / 1e9,
             r["delay"]["rtt"] / 1e6 if r.get("lost") == "false" else None)
            for r in d.get("round_trips", [])]


def q(xs, p):
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))] if xs else float("nan")


def voice(ts, a, b):
    inside = [r for t, r in ts if a <= t < b]
    got = sorted(r for r in inside if r is not None)
    loss = 100.0 * (len(inside) - len(got)) / len(inside) if inside else float("nan")
    return q(got, 0.5), q(got, 0.99), loss


def intervals(path):
    """(start, end, bits/s) as the receiver counted them, seconds since the test began."""
    d = load(path)
    if not d:
        return []
    rx = d if d.get("start", {}).get("test_start", {}).get("reverse") == 1 else d.get("server_output_json", {})
    return [(i["sum"]["start"], i["sum"]["end"], i["sum"]["bits_per_second"]) for i in rx.get("intervals", [])]


def mean_bps(iv, a, b):
    sel = [(e - s, bps) for s, e, bps in iv if a <= (s + e) / 2 < b]
    secs = sum(d for d, _ in sel)
    return sum(d * bps for d, bps in sel) / secs if secs else float("nan")


def settled(windows, since):
    """Seconds from `since` until the first window from which all are good."""
    start = None
    for t, good in windows:
        if good and start is None:
            start = t
        elif not good:
            start = None
    return max(0.0, start - since) if start is not None else float("inf")


def rates(path, t0, a, b):
    """Median shaping rate (Mbit/s) up and down between a and b seconds."""
    got = {"upload": [], "download": []}
    try:
        lines = path.read_text().splitlines()
    except Exception:
        return None
    for line in lines:
        parts = line.split("|")
        t = float(parts[0]) - t0
        if not a <= t < b:
            continue
        for s in parts[1:]:
            k, _, v = s.rpartition(" ")
            for d in got:
                if k == 'qosd_link_rate_bits_per_second{direction="%s"}' % d:
                    got[d].append(float(v) / 1e6)
    if not got["upload"]:
        return None
    return statistics.median(got["upload"]), statistics.median(got["download"])


def one(tag):
    t0, t_drop, t_back, t1, c0, c1, hz = map(float, (out / f"{tag}.times").read_text().split())
    drop, back, end = t_drop - t0, t_back - t0, t1 - t0
    ts = trips(out / f"{tag}.voice")
    idle = voice(trips(out / f"{tag}.idle"), 0, float("inf"))
    up, down = intervals(out / f"{tag}.up"), intervals(out / f"{tag}.down")
    # "before" ends a second before the drop: what was sent then met it.
    phases = {"before": (RAMP, drop - 1), "drop": (drop + ADAPT, back), "after": (back + RECOVER, end)}
    r = {"idle_p50_ms": idle[0], "idle_p99_ms": idle[1]}
    for name, (a, b) in phases.items():
        p50, p99, loss = voice(ts, t0 + a, t0 + b)
        r[name] = {"voice_p50_ms": p50, "voice_p99_ms": p99, "voice_loss_pct": loss,
                   "up_mbit": mean_bps(up, a, b) / 1e6, "down_mbit": mean_bps(down, a, b) / 1e6}
    windows = [(s, voice(ts, t0 + s, t0 + s + 1)[1] <= idle[0] + MARGIN)
               for s in [drop + k for k in range(int(back - drop))] if s + 1 <= back]
    r["voice_settled_s"] = settled(windows, drop)
    for key, iv, nom in (("up", up, nominal[0]), ("down", down, nominal[1])):
        # over 3 s from each second: one slow second of TCP's sawtooth does not reset the clock
        # (whole intervals only: iperf3 ends with a sliver of one)
        full = [i for i in iv if i[1] - i[0] >= 0.5]
        last = max([e for _, e, _ in full] or [0])
        r[f"{key}_recovered_s"] = settled([(s, mean_bps(full, s, s + 3) >= 0.8 * nom)
                                           for s, e, bps in full if back - 0.5 <= s and s + 3 <= last + 0.5], back)
    r["cpu_pct"] = (c1 - c0) / hz / (t1 - t0) * 100 if c1 > 0 else None
    rate = rates(out / f"{tag}.rates", t0, drop + ADAPT, back)
    r["drop_rate_mbit"] = list(rate) if rate else None
    write_trace(tag, t0, ts, up, down)
    return r


def write_trace(tag, t0, ts, up, down):
    """OUTDIR/trace-TAG.txt: per second, the call's p99, the goodput each
    way and qosd's shaping rate, capacity estimate and WAN delay."""
    polls = []
    try:
        for line in (out / f"{tag}.rates").read_text().splitlines():
            parts = line.split("|")
            polls.append((float(parts[0]) - t0, dict(p.rpartition(" ")[::2] for p in parts[1:])))
    except Exception:
        pass
    rows = ["s voice_p99_ms up_mbit down_mbit rate_up rate_down capacity_up capacity_down wan_delay_up_ms wan_delay_down_ms"]
    for k in range(int(max([e for _, e, _ in up + down] or [0]))):
        m = next((m for t, m in polls if k <= t < k + 1), {})
        def get(name, d, scale):
            v = m.get('%s{direction="%s"}' % (name, d))
            return "%.2f" % (float(v) / scale) if v else "-"
        rows.append(" ".join([str(k), "%.2f" % voice(ts, t0 + k, t0 + k + 1)[1],
                              "%.2f" % (mean_bps(up, k, k + 1) / 1e6), "%.2f" % (mean_bps(down, k, k + 1) / 1e6)]
                             + [get(n, d, sc) for n, sc in (("qosd_link_rate_bits_per_second", 1e6),
                                                             ("qosd_autorate_capacity_bits_per_second", 1e6),
                                                             ("qosd_wan_delay_seconds", 1e-3))
                                for d in ("upload", "download")]))
    (out / f"trace-{tag}.txt").write_text("\n".join(rows) + "\n")


def med(xs):
    xs = [x for x in xs if x is not None and x == x]
    return statistics.median(xs) if xs else float("nan")


results = {}
for s in setups:
    runs = [one(f"{s}-{rep}") for rep in range(1, reps + 1)]
    m = {k: med([r[k] for r in runs]) for k in runs[0] if not isinstance(runs[0][k], (dict, list)) and runs[0][k] is not None}
    for ph in ("before", "drop", "after"):
        m[ph] = {k: med([r[ph][k] for r in runs]) for k in runs[0][ph]}
    dr = [r["drop_rate_mbit"] for r in runs if r["drop_rate_mbit"]]
    m["drop_rate_mbit"] = [med([d[0] for d in dr]), med([d[1] for d in dr])] if dr else None
    m["cpu_pct"] = med([r["cpu_pct"] for r in runs]) if runs[0]["cpu_pct"] is not None else None
    results[s] = {"median": m, "runs": runs}
(out / "results.json").write_text(json.dumps(results, indent=2))

print()
print("| %s | phase | voice p50 ms | voice p99 ms | voice loss %% | upload Mbit/s | download Mbit/s |" %
      ("median of %d runs" % reps if reps > 1 else "gateway"))
print("|---|---|---|---|---|---|---|")
PH = {"before": "20/50, before (%g s..drop-1 s)" % RAMP, "drop": "6/15, drop (+%g s..)" % ADAPT,
      "after": "20/50, after (+%g s..)" % RECOVER}
for s in setups:
    m = results[s]["median"]
    for ph in ("before", "drop", "after"):
        p = m[ph]
        print("| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
            LABELS.get(s, s), PH[ph], p["voice_p50_ms"], p["voice_p99_ms"], p["voice_loss_pct"],
            p["up_mbit"], p["down_mbit"]))
print()
print("| gateway | idle p50/p99 ms | voice within %g ms of idle, after the drop | upload at 80 %% of %g Mbit/s, after the return | download at 80 %% of %g Mbit/s, after the return | shaping rate in the drop Mbit/s | qosd CPU %% |" % (
    MARGIN, nominal[0] / 1e6, nominal[1] / 1e6))
print("|---|---|---|---|---|---|---|")
secs = lambda v: "never" if v == float("inf") else ("-" if v != v else "%.0f s" % v)
for s in setups:
    m = results[s]["median"]
    rate = "%.1f / %.1f" % tuple(m["drop_rate_mbit"]) if m.get("drop_rate_mbit") else "-"
    cpu = "%.1f" % m["cpu_pct"] if m.get("cpu_pct") is not None else "-"
    print("| %s | %.2f / %.2f | %s | %s | %s | %s | %s |" % (
        LABELS.get(s, s), m["idle_p50_ms"], m["idle_p99_ms"], secs(m["voice_settled_s"]),
        secs(m["up_recovered_s"]), secs(m["down_recovered_s"]), rate, cpu))
PY
