#!/usr/bin/env python3
"""Rewrite a build context's Dockerfile without heredocs, for Docker 20.10's
built-in BuildKit frontend (it predates them; a `# syntax=` line would fetch
a newer frontend from Docker Hub, unreachable here). Both builders then
build the same file.

  RUN [flags] <<EOF … EOF   ->  RUN [flags] line1 && line2 …   (comments and
                                `set -e` dropped: && stops at the first failure)
  COPY <<EOF /path … EOF    ->  COPY heredoc-N /path, with the body as a file
  ARG A B                   ->  ARG A / ARG B

Usage: no_heredoc.py CONTEXT_DIR   (rewrites CONTEXT_DIR/Dockerfile in place)
"""
import os
import re
import sys

ctx = sys.argv[1]
path = os.path.join(ctx, "Dockerfile")
lines = open(path).read().split("\n")
out = []
i = 0
n = 0
while i < len(lines):
    line = lines[i]
    m = re.match(r"^(RUN|COPY)(.*?)<<-?(['\"]?)(\w+)\3(.*)$", line)
    if not m:
        a = re.match(r"^ARG\s+(\S+(?:\s+\S+)+)\s*$", line)
        if a and "=" not in a.group(1):
            out.extend(f"ARG {name}" for name in a.group(1).split())
        else:
            out.append(line)
        i += 1
        continue
    kind, flags, _, delim, rest = m.groups()
    body = []
    i += 1
    while i < len(lines) and lines[i].strip() != delim:
        body.append(lines[i])
        i += 1
    i += 1  # the delimiter
    if kind == "RUN":
        cmds = [b.strip() for b in body if b.strip() and not b.strip().startswith("#")]
        cmds = [c for c in cmds if not re.fullmatch(r"set -e\w*", c)]
        out.append(f"RUN{flags}" + " && ".join(cmds))
    else:
        n += 1
        name = f"heredoc-{n}"
        with open(os.path.join(ctx, name), "w") as f:
            f.write("\n".join(body) + "\n")
        out.append(f"COPY{flags}{name}{rest}")
open(path, "w").write("\n".join(out))
