#!/usr/bin/env bash
# A/B timing through two exos builds, alternating so that the machine's
# drift hits both alike; a fresh mount and dropped caches for every run.
# What is timed:
#   walk  a cold metadata walk (find, size and mode of every entry)
#   read  a cold read of every file in sorted path order (`xargs cat`, as
#         bench/packagefs.sh reads)
# Usage (as root): bench/ab.sh walk|read OLD/exos NEW/exos PACKAGE.hpkg [RUNS]
# Prints each run, then the median per build.
set -euo pipefail
what=$1 old=$2 new=$3 pkg=$4 runs=${5:-9}
case $what in walk|read) ;; *) echo "usage: bench/ab.sh walk|read OLD NEW PACKAGE [RUNS]" >&2; exit 2 ;; esac
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/mnt"
"$new" init -q "$work/root"
"$new" install -q -y -r "$work/root" "$pkg"
mount_with() { # EXOS
  # (Builds from before the exec cache have no such option.)
  local nocache
  nocache=$("$1" mount --help | grep -q -- --no-exec-cache && echo --no-exec-cache || true)
  "$1" mount -q $nocache --daemon --pid-file "$work/pid" "$work/root" "$work/mnt"
}
unmount_with() { # EXOS
  "$1" unmount "$work/mnt" > /dev/null
  while [ -e "$work/pid" ]; do sleep 0.01; done
}
# The file list, in the order bench/packagefs.sh uses, taken once.
mount_with "$new"
(cd "$work/mnt/system" && find . -type f -print0 | sort -z) > "$work/list"
unmount_with "$new"
for _ in $(seq "$runs"); do
  for v in old new; do
    exos=$old; [ $v = new ] && exos=$new
    mount_with "$exos"
    # Sharing digests every package once, in the background: wait for it
    # (as bench/fslib.sh does) so it does not compete with the timing.
    for _ in $(seq 300); do
      "$exos" status --json "$work/mnt" 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin).get("sharing"); sys.exit(bool(s) and s.get("packages_digested") != s.get("packages"))' && break
      sleep 0.1
    done
    sync; echo 3 > /proc/sys/vm/drop_caches
    s=$(date +%s%N)
    case $what in
      walk) find "$work/mnt/system" -printf '%s %m\n' > /dev/null ;;
      read) (cd "$work/mnt/system" && xargs -0 cat < "$work/list" > /dev/null) ;;
    esac
    e=$(date +%s%N)
    echo "$v $(( (e - s) / 1000 )) us"
    unmount_with "$exos"
  done
done | tee "$work/times"
for v in old new; do
  grep "^$v " "$work/times" | awk '{print $2}' | sort -n |
    awk -v v=$v '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%s median %.3f s\n", v, m / 1e6}'
done
