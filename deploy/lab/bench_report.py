#!/usr/bin/env python3
"""Summarises a deploy/lab/bench.sh run: medians over repetitions, as the
markdown tables BENCHMARKS.md shows, plus results.json and the voice round
trips of each setup (voice-<setup>.txt, one value in ms per line)."""
import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])
reps = int(sys.argv[2])
SETUPS = [("bridge", "no shaping (kernel bridge)"), ("htb", "kernel HTB script"), ("qosd", "qosd")]


def load(path):
    try:
        text = path.read_text()
        return json.loads(text[text.index("{"):])
    except Exception:
        return None


def voice(path):
    d = load(path)
    if not d:
        return None
    rtts = sorted(r["delay"]["rtt"] / 1e6 for r in d.get("round_trips", []) if r.get("lost") == "false")
    if not rtts:
        return None
    q = lambda p: rtts[min(len(rtts) - 1, int(round((len(rtts) - 1) * p)))]
    return {
        "p50": q(0.5),
        "p99": q(0.99),
        "jitter": d["stats"]["ipdv_round_trip"].get("mean", 0) / 1e6,
        "loss": d["stats"]["packet_loss_percent"],
        "samples": rtts,
    }


def mbit(path, key="sum_received"):
    d = load(path)
    try:
        return d["end"][key]["bits_per_second"] / 1e6
    except Exception:
        return float("nan")


def udp_rate(path):
    d = load(path)
    try:
        s = d["end"]["sum"]
        secs = s["seconds"]
        received = s["packets"] - s["lost_packets"]
        return received / secs, s["bytes"] * 8 * (1 - s["lost_percent"] / 100) / secs / 1e6
    except Exception:
        return float("nan"), float("nan")


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def cpu(path):
    try:
        t0, t1, s0, s1, hz = path.read_text().split()
        return (float(t1) - float(t0)) / float(hz) / (float(s1) - float(s0)) * 100
    except Exception:
        return float("nan")


results = {"scenario": {}, "forwarding": {}}
print()
print("| medians of %d runs | p50 RTT ms | p99 RTT ms | jitter ms | loss %% | business up | business down | bulk up | bulk down | qosd CPU %% |" % reps)
print("|---|---|---|---|---|---|---|---|---|---|")
for key, label in SETUPS:
    runs = [voice(out / f"{key}-{r}.voice") for r in range(1, reps + 1)]
    runs = [r for r in runs if r]
    row = {
        "voice_p50_ms": med([r["p50"] for r in runs]),
        "voice_p99_ms": med([r["p99"] for r in runs]),
        "voice_jitter_ms": med([r["jitter"] for r in runs]),
        "voice_loss_pct": med([r["loss"] for r in runs]),
        "business_up_mbit": med([mbit(out / f"{key}-{r}.biz-up") for r in range(1, reps + 1)]),
        "business_down_mbit": med([mbit(out / f"{key}-{r}.biz-down") for r in range(1, reps + 1)]),
        "bulk_up_mbit": med([mbit(out / f"{key}-{r}.bulk-up") for r in range(1, reps + 1)]),
        "bulk_down_mbit": med([mbit(out / f"{key}-{r}.bulk-down") for r in range(1, reps + 1)]),
        "cpu_pct": med([cpu(out / f"{key}-{r}.cpu") for r in range(1, reps + 1)]) if key == "qosd" else None,
    }
    results["scenario"][key] = row
    (out / f"voice-{key}.txt").write_text("\n".join("%.4f" % v for r in runs for v in r["samples"]) + "\n")
    cpu_s = "%.1f" % row["cpu_pct"] if row["cpu_pct"] is not None else "-"
    print("| %s | %.2f | %.2f | %.2f | %.2f | %.1f | %.1f | %.1f | %.1f | %s |" % (
        label, row["voice_p50_ms"], row["voice_p99_ms"], row["voice_jitter_ms"], row["voice_loss_pct"],
        row["business_up_mbit"], row["business_down_mbit"], row["bulk_up_mbit"], row["bulk_down_mbit"], cpu_s))

for key in ("bridge", "qosd"):
    idle = voice(out / f"{key}.idle")
    if idle:
        results["scenario"].setdefault(key, {})["idle_p50_ms"] = idle["p50"]
        results["scenario"][key]["idle_p99_ms"] = idle["p99"]
print()
print("idle round trip (no load): bridge p50 %.2f ms, qosd p50 %.2f ms, p99 %.2f ms" % (
    results["scenario"].get("bridge", {}).get("idle_p50_ms", float("nan")),
    results["scenario"].get("qosd", {}).get("idle_p50_ms", float("nan")),
    results["scenario"].get("qosd", {}).get("idle_p99_ms", float("nan"))))

print()
print("| forwarding, no line limit (medians of %d) | TCP Mbit/s | UDP 1500-byte frames Mbit/s | UDP 64-byte frames packets/s |" % reps)
print("|---|---|---|---|")
for key, label in (("bridge", "kernel bridge"), ("qosd-pnet", "qosd, unshaped, pnet backend"), ("qosd-ring", "qosd, unshaped, ring backend")):
    tcp = med([mbit(out / f"{key}-tcp-{r}") for r in range(1, reps + 1)])
    big = med([udp_rate(out / f"{key}-udp1500-{r}")[1] for r in range(1, reps + 1)])
    small = med([udp_rate(out / f"{key}-udp64-{r}")[0] for r in range(1, reps + 1)])
    results["forwarding"][key] = {"tcp_mbit": tcp, "udp1500_mbit": big, "udp64_pps": small}
    print("| %s | %.0f | %.0f | %.0f |" % (label, tcp, big, small))
for be in ("pnet", "ring"):
    c = cpu(out / f"qosd-unshaped-{be}.cpu")
    results["forwarding"][f"qosd_{be}_cpu_pct"] = c
    print("qosd CPU while forwarding unshaped (%s): %.0f%% of one core (all its threads)" % (be, c))
(out / "results.json").write_text(json.dumps(results, indent=2))
