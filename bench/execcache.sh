#!/usr/bin/env bash
# The persistent exec cache: cold start-up of real programs from the
# imported Debian userland (scripts/userland.sh), timed inside `exos run` by
# the view's bash, each run on a fresh mount after dropping caches:
#   * mount: the programs decompressed from the packages on demand;
#   * mount + exec cache: the same, with `--exec-cache` filled by an earlier
#     mount (entries verified on first use, then served by FUSE
#     passthrough);
#   * disk: the same .debs extracted to a directory, chrooted into.
#
#   bench/execcache.sh [-r RUNS]       (as root; default 5 runs, medians)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
runs=5
while getopts r: o; do case $o in r) runs=$OPTARG ;; *) exit 2 ;; esac; done
exos=$top/target/release/exos
work=$here/work/execcache
mnt=$work/mnt root=$work/root cache=$work/exec-cache disk=$work/disk
umount -l "$mnt" 2>/dev/null || true
rm -rf "$work" && mkdir -p "$mnt" "$disk"
debs=$("$top/scripts/userland.sh" | wc -l)
"$exos" import-deb -q "$here"/work/userland-debs/*.deb -o "$work/pkgs"
"$exos" init "$root" >/dev/null
"$exos" install -q -r "$root" "$work"/pkgs/*.hpkg
for d in "$here"/work/userland-debs/*.deb; do dpkg-deb -x "$d" "$disk"; done
mkdir -p "$disk/dev" "$disk/proc"

programs=("python3.11 -c pass" "perl -e 1" "gawk BEGIN{}")
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
mount_it() { "$exos" mount "$root" "$mnt" --daemon --pid-file "$work/pid" --log-file "$work/log" "$@" >/dev/null
  # Wait for the content digests (the exec cache is named by them).
  for _ in $(seq 300); do
    "$exos" status --json "$mnt" | python3 -c 'import json,sys; s=json.load(sys.stdin)["sharing"]; sys.exit(s["packages_digested"] != s["packages"])' && break
    sleep 0.1
  done; }
# Wall time of PROGRAM, by the started bash's microsecond clock.
span() { tail -1 | awk '{printf "%.4f\n", $2 - $1}'; }
in_view() { "$exos" run -r "$root" -- bash -c "s=\$EPOCHREALTIME; $1 >/dev/null; e=\$EPOCHREALTIME; echo \$s \$e" 2>/dev/null | span; }
in_disk() { unshare -m sh -c 'mount --bind /dev "$1/dev" && exec chroot "$1" /bin/bash -c "s=\$EPOCHREALTIME; $2 > /dev/null; e=\$EPOCHREALTIME; echo \$s \$e"' sh "$disk" "$1" 2>/dev/null | span; }

# Fill the exec cache once.
mount_it --exec-cache "$cache"
for p in "${programs[@]}"; do in_view "$p" >/dev/null; done
sleep 1
"$exos" unmount "$mnt"
entries=$(ls "$cache" | wc -l); bytes=$(du -sb "$cache" | cut -f1)

declare -A result
for mode in mount cached passthrough disk; do
  for p in "${programs[@]}"; do
    t=()
    for _ in $(seq "$runs"); do
      case $mode in
        mount) mount_it --no-exec-cache; cold; t+=("$(in_view "$p")"); "$exos" unmount "$mnt" ;;
        cached) mount_it --exec-cache "$cache"; cold; t+=("$(in_view "$p")"); "$exos" unmount "$mnt" ;;
        passthrough) mount_it --exec-cache "$cache" --exec-cache-passthrough; cold; t+=("$(in_view "$p")"); "$exos" unmount "$mnt" ;;
        disk) cold; t+=("$(in_disk "$p")") ;;
      esac
    done
    result[$mode,$p]=$(printf '%s\n' "${t[@]}" | median)
  done
done
echo "cold start-up from the imported Debian userland ($debs packages); exec cache: $entries entries, $((bytes / 1048576)) MiB; median of $runs runs"
echo "| program | mount | mount + exec cache | + passthrough | disk | mount ÷ disk | with cache ÷ disk | passthrough ÷ disk |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for p in "${programs[@]}"; do
  m=${result[mount,$p]} c=${result[cached,$p]} x=${result[passthrough,$p]} d=${result[disk,$p]}
  printf '| `%s` | %s s | %s s | %s s | %s s | %.2f× | %.2f× | %.2f× |\n' "$p" "$m" "$c" "$x" "$d" \
    "$(echo "$m / $d" | bc -l)" "$(echo "$c / $d" | bc -l)" "$(echo "$x / $d" | bc -l)"
done
