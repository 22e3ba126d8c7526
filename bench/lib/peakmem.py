#!/usr/bin/env python3
"""Run a command and print the peak resident memory (MB) of everything it
involves: its own process tree, plus the trees of the daemons named with
--daemon (dockerd, containerd: a docker build runs its steps under them),
sampled every 20 ms. Exits with the command's status.

Usage: peakmem.py [--daemon NAME]... -- COMMAND [ARG]...
"""
import os
import subprocess
import sys
import time

args = sys.argv[1:]
daemons = []
while args and args[0] == "--daemon":
    daemons.append(args[1])
    args = args[2:]
if args and args[0] == "--":
    args = args[1:]


def table():
    parent, rss, comm = {}, {}, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/statm") as f:
                pages = int(f.read().split()[1])
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        parent[int(pid)] = int(fields[1])
        rss[int(pid)] = pages * os.sysconf("SC_PAGE_SIZE")
        comm[int(pid)] = name
    return parent, rss, comm


def tree_rss(roots, parent, rss):
    children = {}
    for p, pp in parent.items():
        children.setdefault(pp, []).append(p)
    seen, todo, total = set(), list(roots), 0
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
peak = 0
while True:
    parent, rss, comm = table()
    roots = [proc.pid] + [p for p, c in comm.items() if c in daemons]
    peak = max(peak, tree_rss(roots, parent, rss))
    if proc.poll() is not None:
        break
    time.sleep(0.02)
print(f"{peak / 2**20:.0f}")
sys.exit(proc.returncode)
