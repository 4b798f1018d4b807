#!/usr/bin/python3
"""Resolve `install NAME` from Debian Packages files with libsolv
(python3-solv), the solver behind zypper/dnf and Haiku's pkgman.

    libsolv_resolve.py NAME Packages...

Prints one JSON line: load and solve seconds, packages in the result.
"""
import json
import sys
import time

import solv

name, files = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pool = solv.Pool()
pool.setdisttype(solv.Pool.DISTTYPE_DEB)
pool.setarch("amd64")
repo = pool.add_repo("debian")
for f in files:
    repo.add_debpackages(solv.xfopen(f))
pool.addfileprovides()
pool.createwhatprovides()
t1 = time.perf_counter()
jobs = pool.select(name, solv.Selection.SELECTION_NAME).jobs(solv.Job.SOLVER_INSTALL)
solver = pool.Solver()
solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
problems = solver.solve(jobs)
count = len(solver.transaction().newsolvables()) if not problems else 0
t2 = time.perf_counter()
print(json.dumps({"tool": "libsolv", "target": name, "packages": len(repo.solvables),
                  "load_s": t1 - t0, "solve_s": t2 - t1, "result": count,
                  "problems": [str(p) for p in problems]}))
