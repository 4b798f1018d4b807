#!/usr/bin/env bash
# A/B timing of a cold read of every file (sorted path order, `xargs cat`,
# as bench/packagefs.sh reads) through two exos builds, alternating so that
# the machine's drift hits both alike; a fresh mount and dropped caches for
# every run. Usage (as root):
#   bench/read-ab.sh OLD/exos NEW/exos PACKAGE.hpkg [RUNS]
# Prints each run, then the median per build.
set -euo pipefail
old=$1 new=$2 pkg=$3 runs=${4:-9}
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/mnt"
"$new" init -q "$work/root"
"$new" install -q -y -r "$work/root" "$pkg"
# The list, in the order bench/packagefs.sh uses, taken once.
"$new" mount -q --no-exec-cache --daemon --pid-file "$work/pid" "$work/root" "$work/mnt"
(cd "$work/mnt/system" && find . -type f -print0 | sort -z) > "$work/list"
"$new" unmount "$work/mnt" > /dev/null
while [ -e "$work/pid" ]; do sleep 0.01; done
for _ in $(seq "$runs"); do
  for v in old new; do
    exos=$old; [ $v = new ] && exos=$new
    # (Builds from before the exec cache have no such option.)
    nocache=$("$exos" mount --help | grep -q -- --no-exec-cache && echo --no-exec-cache || true)
    "$exos" mount -q $nocache --daemon --pid-file "$work/pid" "$work/root" "$work/mnt"
    # Sharing digests every package once, in the background: wait for it
    # (as bench/fslib.sh does) so it does not compete with the read.
    for _ in $(seq 300); do
      "$exos" status --json "$work/mnt" 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin).get("sharing"); sys.exit(bool(s) and s.get("packages_digested") != s.get("packages"))' && break
      sleep 0.1
    done
    sync; echo 3 > /proc/sys/vm/drop_caches
    s=$(date +%s%N); (cd "$work/mnt/system" && xargs -0 cat < "$work/list" > /dev/null); e=$(date +%s%N)
    echo "$v $(( (e - s) / 1000 )) us"
    "$exos" unmount "$work/mnt" > /dev/null
    while [ -e "$work/pid" ]; do sleep 0.01; done
  done
done | tee "$work/times"
for v in old new; do
  grep "^$v " "$work/times" | awk '{print $2}' | sort -n |
    awk -v v=$v '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%s median %.3f s\n", v, m / 1e6}'
done
