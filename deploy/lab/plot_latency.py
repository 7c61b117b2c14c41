#!/usr/bin/env python3
"""Plots the voice round-trip distributions of a bench.sh run (one curve per
setup, as a CDF on a log time axis) into a PNG.

    python3 deploy/lab/plot_latency.py RESULTS_DIR [OUT.png]

Needs matplotlib (pip install matplotlib)."""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

out = Path(sys.argv[1])
png = Path(sys.argv[2]) if len(sys.argv) > 2 else out / "voice-latency.png"
fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
for key, label, color in (("bridge", "no shaping (modem buffer)", "#c0392b"), ("htb", "kernel HTB script", "#e67e22"), ("qosd", "qosd", "#2e86c1")):
    path = out / f"voice-{key}.txt"
    if not path.exists():
        continue
    xs = sorted(float(l) for l in path.read_text().split())
    if not xs:
        continue
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.plot(xs, ys, label=f"{label} (pooled p99 {xs[int(0.99 * (len(xs) - 1))]:.1f} ms)", color=color, linewidth=2)
ax.set_xscale("log")
ax.set_xlabel("voice round trip under load (ms, log scale)")
ax.set_ylabel("fraction of packets")
ax.set_title("Voice round trip, 20/50 Mbit line saturated by bulk and business transfers\n(every packet of all repetitions pooled)", fontsize=10)
ax.grid(True, which="both", alpha=0.3)
ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(png)
print(f"wrote {png}")
