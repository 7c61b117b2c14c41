#!/usr/bin/env python3
"""Polls qosd's metrics (127.0.0.1:9477, run it in the gateway's namespace)
once a second for argv[1] seconds and prints, per poll, the wall clock and
the series that follow the line (autorate's rates, capacity, WAN delay,
rate changes, delay samples, the ISP-queue guard) as "time|series value|series value...".
Used by tests/lab_autorate.rs and deploy/lab/autorate.sh."""
import sys
import time
import urllib.request

KEEP = (
    "qosd_link_rate_bits_per_second",
    "qosd_autorate_capacity_bits_per_second",
    "qosd_wan_delay_seconds",
    "qosd_autorate_changes_total",
    "qosd_wan_delay_samples_total",
    "qosd_isp_queue_",
)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    t = time.time()
    try:
        body = urllib.request.urlopen("http://127.0.0.1:9477/metrics", timeout=1).read().decode()
    except Exception:
        body = ""
    print("|".join(["%.3f" % t] + [l for l in body.splitlines() if l.startswith(KEEP)]), flush=True)
    time.sleep(max(0.0, 1.0 - (time.time() - t)))
