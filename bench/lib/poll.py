#!/usr/bin/env python3
"""Poll a URL every 20 ms until a stop file appears (or 10 minutes pass).

Writes one line per request to OUT: `<monotonic start> <ok 0|1> <body's last line>`.
Used by bench/swap.sh to count failed requests and outages during an `up`.
"""
import os, sys, time, urllib.request

url, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.monotonic() + 600
with open(out, "w", buffering=1) as f:
    while not os.path.exists(stop) and time.monotonic() < deadline:
        t = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                body = r.read().decode(errors="replace").strip().splitlines()
                ok = r.status == 200
                last = body[-1] if body else ""
        except Exception as e:  # refused, reset, timeout: a failed request
            ok, last = False, type(e).__name__
        f.write(f"{t:.4f} {int(ok)} {last}\n")
        time.sleep(max(0.0, 0.02 - (time.monotonic() - t)))
