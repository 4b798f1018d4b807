#!/usr/bin/env python3
"""The shape of the code: lines per crate (sources, not tests), the CLI's
share, and the longest functions. `scripts/code-shape.py [N]` prints the N
longest (default 15). Functions are found by `fn NAME` and their braces
(good enough for rustfmt-formatted code: strings with braces are rare)."""
import os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates")

def sources(crate):
    d = os.path.join(ROOT, crate, "src")
    for base, _, files in os.walk(d):
        for f in files:
            if f.endswith(".rs"):
                yield os.path.join(base, f)

def functions(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    out = []
    in_tests = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"\s*#\[cfg\(test\)\]", line):
            in_tests = True
        m = re.match(r"\s*(pub(\([a-z]+\))? )?(async )?(const )?(unsafe )?fn (\w+)", line)
        if m and not in_tests:
            depth, start, j, opened = 0, i, i, False
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                if lines[j].count("{"):
                    opened = True
                if opened and depth <= 0:
                    break
                if not opened and lines[j].rstrip().endswith(";"):
                    break
                j += 1
            if opened:
                out.append((j - start + 1, m.group(6), path, start + 1))
            i = j + 1
            continue
        i += 1
    return out

crates = sorted(os.listdir(ROOT))
total = 0
per = {}
fns = []
for c in crates:
    n = 0
    for p in sources(c):
        n += sum(1 for _ in open(p, encoding="utf-8"))
        fns += functions(p)
    per[c] = n
    total += n
for c in crates:
    print(f"{c:16} {per[c]:6} lines  {100 * per[c] / total:5.1f}%")
print(f"{'all':16} {total:6} lines")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 15
fns.sort(reverse=True)
lengths = sorted(f[0] for f in fns)
print(f"\n{len(fns)} functions, mean {sum(lengths) / len(lengths):.1f} lines, median {lengths[len(lengths) // 2]}; the longest:")
for length, name, path, line in fns[:n]:
    print(f"{length:5}  {name}  {os.path.relpath(path, os.path.join(ROOT, '..'))}:{line}")
