#!/usr/bin/env python3
"""Convert Debian `Packages` indexes into EXOS manifests, one JSON per line.

    debian2exos.py OUT.jsonl Packages...

Mapping (what the EXOS model can express):
  Package            -> name ('-' becomes '_': Haiku names forbid '-', and
                        Debian names never contain '_', so no collisions)
  Version            -> an order-preserving Haiku version: for every API name,
                        all versions that appear with it (package versions,
                        provided versions, versions in relations) are sorted
                        with dpkg's own comparison and numbered, giving
                        `1.<rank>`; so ranges compare exactly as in Debian
                        (one major: Debian allows one version per package)
  Depends, Pre-Depends -> requires; 'a | b' -> {"any": [a, b]}
  Provides           -> provides (with '(= v)' as the provided version)
  Conflicts, Breaks  -> conflicts
  Architecture       -> amd64 = x86_64, all = any
Recommends/Suggests are weak dependencies the model does not have; they are
dropped (and libsolv is told to ignore them too, for a like-for-like run).
"""
import functools
import json
import re
import sys

OPS = {"<<": "<", "<=": "<=", "=": "=", ">=": ">=", ">>": ">", "<": "<=", ">": ">="}
ARCH = {"amd64": "x86_64", "all": "any", "i386": "x86", "arm64": "arm64"}


def name(n):
    return n.split(":")[0].strip().replace("-", "_")


def split_version(v):
    v = v.strip()
    epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
    upstream, _, rev = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, rev


def order(c):
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def verrevcmp(a, b):
    """dpkg's comparison of one version part."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = order(a[i]) if i < len(a) else 0
            bc = order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def dpkg_compare(a, b):
    ea, ua, ra = split_version(a)
    eb, ub, rb = split_version(b)
    return (ea > eb) - (ea < eb) or verrevcmp(ua, ub) or verrevcmp(ra, rb)


RANKS = {}  # api -> {debian version string -> haiku version}


def version(api, v):
    return RANKS[api][v.strip()]


def parse_dep(text):
    m = re.match(r"^([^\s(\[]+)\s*(?:\(\s*([<>=]+)\s*([^)]+)\))?", text.strip())
    if not m:
        return None
    n, op, ver = m.groups()
    return name(n), op, ver.strip() if ver else None


def dep(text):
    parsed = parse_dep(text)
    if not parsed:
        return None
    api, op, ver = parsed
    if op:
        return {"api": api, "version": OPS[op] + version(api, ver)}
    return {"api": api}


def relations(field):
    out = []
    for group in field.split(","):
        alts = [d for d in (dep(a) for a in group.split("|")) if d]
        if len(alts) == 1:
            out.append(alts[0])
        elif alts:
            out.append({"any": alts})
    return out


def paragraphs(path):
    fields, key = {}, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line == "\n":
                if fields:
                    yield fields
                fields, key = {}, None
            elif line[0] in " \t":
                if key:
                    fields[key] += " " + line.strip()
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    if fields:
        yield fields


RELATION_FIELDS = ("Pre-Depends", "Depends", "Provides", "Conflicts", "Breaks")


def rank_versions(packages):
    seen = {}
    for p in packages:
        seen.setdefault(name(p["Package"]), set()).add(p["Version"].strip())
        for field in RELATION_FIELDS:
            for group in p.get(field, "").split(","):
                for alt in group.split("|"):
                    parsed = parse_dep(alt)
                    if parsed and parsed[2]:
                        seen.setdefault(parsed[0], set()).add(parsed[2])
    key = functools.cmp_to_key(dpkg_compare)
    for api, versions in seen.items():
        ranked, rank, prev = {}, 0, None
        for v in sorted(versions, key=key):
            if prev is None or dpkg_compare(prev, v) != 0:
                rank += 1
            ranked[v] = f"1.{rank}"
            prev = v
        RANKS[api] = ranked


def main():
    out, inputs = sys.argv[1], sys.argv[2:]
    packages = [p for path in inputs for p in paragraphs(path)]
    rank_versions(packages)
    n = 0
    with open(out, "w") as o:
        if True:
            for p in packages:
                m = {
                    "name": name(p["Package"]),
                    "version": version(name(p["Package"]), p["Version"]),
                    "architecture": ARCH.get(p.get("Architecture", "all"), "any"),
                }
                requires = relations(p.get("Pre-Depends", "")) + relations(p.get("Depends", ""))
                if requires:
                    m["requires"] = requires
                provides = []
                for d in relations(p.get("Provides", "")):
                    if "version" in d:
                        provides.append({"api": d["api"], "version": d["version"].lstrip("=")})
                    else:
                        provides.append(d)
                if provides:
                    m["provides"] = provides
                conflicts = [d for d in relations(p.get("Conflicts", "") + "," + p.get("Breaks", ""))
                             if "any" not in d]
                if conflicts:
                    m["conflicts"] = conflicts
                o.write(json.dumps(m, separators=(",", ":")) + "\n")
                n += 1
    print(f"{n} manifests -> {out}", file=sys.stderr)


main()
