#!/usr/bin/env bash
# A/B timing of a cold metadata walk through two exos builds, alternating so
# that the machine's drift hits both alike. Usage (as root):
#   bench/walk-ab.sh OLD/exos NEW/exos PACKAGE.hpkg [RUNS]
# Prints each run, then the median per build.
set -euo pipefail
old=$1 new=$2 pkg=$3 runs=${4:-12}
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/root/system/packages" "$work/mnt"
cp "$pkg" "$work/root/system/packages/"
for _ in $(seq "$runs"); do
  for v in old new; do
    exos=$old; [ $v = new ] && exos=$new
    "$exos" mount -q --no-exec-cache --daemon --pid-file "$work/pid" "$work/root" "$work/mnt"
    sync; echo 3 > /proc/sys/vm/drop_caches
    s=$(date +%s%N); find "$work/mnt/system" -printf '%s %m\n' > /dev/null; e=$(date +%s%N)
    echo "$v $(( (e - s) / 1000 )) us"
    "$exos" unmount "$work/mnt" > /dev/null
    while [ -e "$work/pid" ]; do sleep 0.01; done
  done
done | tee "$work/times"
for v in old new; do
  grep "^$v " "$work/times" | awk '{print $2}' | sort -n |
    awk -v v=$v '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%s median %.3f s\n", v, m / 1e6}'
done
