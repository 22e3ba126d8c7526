#!/usr/bin/env python3
"""Summarise what a 20 ms poller (bench/lib/poll.py) saw while a command ran.

Usage: outage.py POLL_FILE T0 T1 EXPECTED
  POLL_FILE  poll.py's output: `<monotonic start> <ok 0|1> <body's last line>`
  T0, T1     monotonic times the command started and returned
  EXPECTED   text of the new version's body
Prints one JSON object: requests, failed, longest_outage_s (the longest run of
failed requests, from the first failed one to the next success), up_s (T1 - T0)
and new_version_after_s (from T0 to the first 200 whose body has EXPECTED;
null when none did before the poller stopped).
"""
import json
import sys

path, t0, t1, expected = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rows = []
for line in open(path):
    parts = line.rstrip("\n").split(" ", 2)
    if len(parts) >= 2:
        rows.append((float(parts[0]), parts[1] == "1", parts[2] if len(parts) > 2 else ""))
failed = sum(1 for _, ok, _ in rows if not ok)
longest, start = 0.0, None
for t, ok, _ in rows:
    if not ok and start is None:
        start = t
    if ok and start is not None:
        longest, start = max(longest, t - start), None
if start is not None and rows:
    longest = max(longest, rows[-1][0] - start)
served = next((t for t, ok, body in rows if ok and expected in body and t >= t0), None)
print(json.dumps({
    "requests": len(rows),
    "failed": failed,
    "longest_outage_s": round(longest, 3),
    "up_s": round(t1 - t0, 3),
    "new_version_after_s": None if served is None else round(served - t0, 3),
}))
