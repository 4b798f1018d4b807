#!/usr/bin/env python3
"""The shape of the code: lines per crate (sources, not tests) — all lines,
and code lines (not blank, not a comment) —, each crate's share of the code
lines, and the longest functions. `scripts/code-shape.py [N]` prints the N
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

def is_code(line):
    t = line.strip()
    return bool(t) and not t.startswith("//")

crates = sorted(c for c in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, c, "src")))
total = code_total = 0
per = {}
fns = []
for c in crates:
    n = code = 0
    for p in sources(c):
        lines = open(p, encoding="utf-8").read().split("\n")
        n += len(lines)
        code += sum(1 for l in lines if is_code(l))
        fns += functions(p)
    per[c] = (n, code)
    total += n
    code_total += code
for c in crates:
    n, code = per[c]
    print(f"{c:16} {n:6} lines {code:6} code  {100 * code / code_total:5.1f}% of code")
print(f"{'all':16} {total:6} lines {code_total:6} code")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 15
fns.sort(reverse=True)
lengths = sorted(f[0] for f in fns)
print(f"\n{len(fns)} functions, mean {sum(lengths) / len(lengths):.1f} lines, median {lengths[len(lengths) // 2]}; the longest:")
for length, name, path, line in fns[:n]:
    print(f"{length:5}  {name}  {os.path.relpath(path, os.path.join(ROOT, '..'))}:{line}")
