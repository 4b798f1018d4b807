#!/usr/bin/env python3
"""Random 4 KiB reads: N preads at random 4 KiB-aligned offsets of random
files under DIR (the same sequence for every DIR, given the same seed).

    random_reads.py DIR N SEED
"""
import os
import random
import sys

top, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = []
for d, dirs, names in os.walk(top):
    if d == top and ".packages" in dirs:
        dirs.remove(".packages")  # exos's per-package metadata
    for name in names:
        p = os.path.join(d, name)
        if os.path.isfile(p) and not os.path.islink(p):
            size = os.path.getsize(p)
            if size >= 4096:
                files.append((os.path.relpath(p, top), size))
files.sort()
rng = random.Random(seed)
fds = {}
total = 0
for _ in range(n):
    rel, size = files[rng.randrange(len(files))]
    off = rng.randrange(size // 4096) * 4096
    fd = fds.get(rel)
    if fd is None:
        fd = fds[rel] = os.open(os.path.join(top, rel), os.O_RDONLY)
    total += len(os.pread(fd, 4096, off))
for fd in fds.values():
    os.close(fd)
print(total)
