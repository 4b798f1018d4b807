#!/usr/bin/env bash
# packagefs against squashfuse, the kernel's squashfs and the kernel's
# erofs: the same trees, the same run, a table per tree.
#
#   bench/packagefs.sh [-r RUNS] [-e] [TREE...]        (as root)
#
# -e: encrypted packages instead of the peers — the same exos package,
# plain and sealed with a package key (`exos encrypt`), mounted the same
# way, read the same way; one table per tree with the ratio.
#
# -p NS: run with the guest's idle halt polling set to NS nanoseconds
# (/sys/module/haltpoll/parameters/guest_halt_poll_ns, restored at the
# end). Virtual machines whose cpuidle driver is haltpoll with polling 0
# (this project's machines) halt an idle vCPU at once, and every FUSE
# round trip then pays for waking one; 200000 is the kernel's default.
#
# -d: also mount exos with --io-uring never (requests through /dev/fuse)
# and print a table comparing it with the default (FUSE over io_uring,
# which the script turns on for its run, see bench/fslib.sh).
#
# TREEs are names known to bench/trees.sh (python, boost, userland, include, perldoc, locale, cargo) or
# directories; the default is all three names. Images: `exos build` (zlib
# 9), `mksquashfs -comp gzip` (zlib 9), and `mkfs.erofs -zlz4hc` (Debian
# 12's erofs-utils has no deflate). Every cold measurement starts from a
# fresh mount after dropping the kernel's caches. Reads go through every
# file in sorted path order and in one fixed shuffled order. Then: 1,000
# small packages mounted at once (mount time, memory).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=5 encrypted=0 haltpoll= devfuse=0
while getopts r:ep:d o; do case $o in r) runs=$OPTARG ;; e) encrypted=1 ;; p) haltpoll=$OPTARG ;; d) devfuse=1 ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
poll_knob=/sys/module/haltpoll/parameters/guest_halt_poll_ns
if [ -n "$haltpoll" ]; then
  [ -w "$poll_knob" ] || { echo "-p: $poll_knob is missing (no haltpoll cpuidle driver)" >&2; exit 1; }
  poll_was=$(cat "$poll_knob")
  echo "$haltpoll" > "$poll_knob"
  restore_poll() { echo "$poll_was" > "$poll_knob"; }
else
  restore_poll() { :; }
fi
[ $# -gt 0 ] || set -- python boost userland
work=$here/work/fs
source "$here/fslib.sh"
trap 'cleanup; restore_poll; restore_uring' EXIT
poll_note=$([ -f "$poll_knob" ] && echo ", guest halt polling $(cat "$poll_knob") ns")
[ "$encrypted" = 1 ] && tools=(exos exos-enc)
[ "$devfuse" = 1 ] && tools+=(exos-dev)

bench_tree() { # NAME
  prepare_tree "$1"
  # One untimed round first: right after a memory-hungry job (a build, the
  # image creation above) the kernel is still reclaiming memory and slows
  # whichever tool runs first.
  for tool in "${tools[@]}"; do fresh "$tool"; read_list "$(dir_of "$tool")" "$work/sorted.list" >/dev/null; umount_tool "$tool"; done
  declare -A cold shuf warm meta ls rnd
  local tool i d
  for tool in "${tools[@]}"; do
    local c=() s=() w=() m=() l=() r=()
    for i in $(seq "$runs"); do
      fresh "$tool"; d=$(dir_of "$tool")
      c+=("$(timed read_list "$d" "$work/sorted.list")"); w+=("$(timed read_list "$d" "$work/sorted.list")")
      fresh "$tool"; s+=("$(timed read_list "$d" "$work/shuffled.list")")
      fresh "$tool"; m+=("$(timed walk "$d")")
      fresh "$tool"; l+=("$(timed lslr "$d")")
      fresh "$tool"; r+=("$(timed python3 "$here/random_reads.py" "$d" 2000 "$i")")
    done
    cold[$tool]=$(printf '%s\n' "${c[@]}" | median); shuf[$tool]=$(printf '%s\n' "${s[@]}" | median)
    warm[$tool]=$(printf '%s\n' "${w[@]}" | median); meta[$tool]=$(printf '%s\n' "${m[@]}" | median)
    ls[$tool]=$(printf '%s\n' "${l[@]}" | median); rnd[$tool]=$(printf "%s\n" "${r[@]}" | median)
    umount_tool "$tool"
  done
  # Correctness guard: the views hold the same bytes.
  for tool in "${tools[@]}"; do mount_tool "$tool"; done
  local ref got
  sums() { (cd "$1" && xargs -0 sha256sum < "$work/sorted.list" | sha256sum); }
  ref=$(sums "$(dir_of "${tools[0]}")")
  for tool in "${tools[@]:1}"; do
    got=$(sums "$(dir_of $tool)")
    [ "$got" = "$ref" ] || { echo "content differs between $tool and squashfs" >&2; exit 1; }
  done
  for tool in "${tools[@]}"; do umount_tool "$tool"; done

  if [ "$encrypted" = 1 ]; then
    echo "tree $1 (encrypted): $src ($files files, $bytes bytes), $(nproc) cores$poll_note, exos through $(transport_note), median of $runs runs; package $(stat -c %s "$work/root/system/packages/tree.hpkg") B, sealed $(stat -c %s "$work/root-enc/system/packages/tree.hpkg") B"
    printf '| test | exos | exos, encrypted | encrypted ÷ plain |\n|---|---:|---:|---:|\n'
    erow() { local -n a=$2; printf '| %s | %.3f s | %.3f s | %.2f× |\n' "$1" "${a[exos]}" "${a[exos-enc]}" "$(echo "${a[exos-enc]} / ${a[exos]}" | bc -l)"; }
    erow "cold read of every file, sorted order" cold
    erow "cold read of every file, shuffled order" shuf
    erow "warm re-read of every file" warm
    erow "metadata walk (find, stat of every entry), cold" meta
    erow "2,000 random 4 KiB reads, cold" rnd
    echo
    return
  fi
  echo "tree $1: $src ($files files, $small under 4 KiB, $bytes bytes), $(nproc) cores$poll_note, exos through $(transport_note), median of $runs runs; images: exos $(stat -c %s "$work/root/system/packages/tree.hpkg") B, squashfs $(stat -c %s "$work/t.sqfs") B, erofs(lz4hc) $(stat -c %s "$work/t.erofs") B"
  printf '| test | exos (FUSE) | squashfuse | kernel squashfs | kernel erofs (lz4hc) | exos ÷ squashfuse | exos ÷ kernel squashfs | exos ÷ kernel erofs |\n|---|---:|---:|---:|---:|---:|---:|---:|\n'
  row() { # name array
    local -n a=$2
    printf '| %s | %.3f s | %.3f s | %.3f s | %.3f s | %.2f× | %.2f× | %.2f× |\n' "$1" "${a[exos]}" "${a[squashfuse]}" "${a[squashfs]}" "${a[erofs]}" \
      "$(echo "${a[exos]} / ${a[squashfuse]}" | bc -l)" "$(echo "${a[exos]} / ${a[squashfs]}" | bc -l)" "$(echo "${a[exos]} / ${a[erofs]}" | bc -l)"
  }
  row "cold read of every file, sorted order" cold
  row "cold read of every file, shuffled order" shuf
  row "warm re-read of every file" warm
  row "metadata walk (find, stat of every entry), cold" meta
  row "ls -lR, cold" ls
  row "2,000 random 4 KiB reads, cold" rnd
  echo
  if [ "$devfuse" = 1 ]; then
    echo "tree $1: exos through FUSE over io_uring against the same mount kept to /dev/fuse (--io-uring never), same runs"
    printf '| test | exos, io_uring | exos, /dev/fuse | kernel squashfs | io_uring ÷ /dev/fuse | /dev/fuse ÷ kernel squashfs |\n|---|---:|---:|---:|---:|---:|\n'
    drow() { local -n a=$2; printf '| %s | %.3f s | %.3f s | %.3f s | %.2f× | %.2f× |\n' "$1" "${a[exos]}" "${a[exos-dev]}" "${a[squashfs]}" \
      "$(echo "${a[exos]} / ${a[exos-dev]}" | bc -l)" "$(echo "${a[exos-dev]} / ${a[squashfs]}" | bc -l)"; }
    drow "cold read of every file, sorted order" cold
    drow "cold read of every file, shuffled order" shuf
    drow "warm re-read of every file" warm
    drow "metadata walk (find, stat of every entry), cold" meta
    drow "ls -lR, cold" ls
    drow "2,000 random 4 KiB reads, cold" rnd
    echo
  fi
}

for t in "$@"; do bench_tree "$t"; done
[ "$encrypted" = 1 ] && exit 0

# Many packages at once: 1,000 small ones (mount time, memory), and the
# same number of entries in 100 packages, which splits memory into a cost
# per package and a cost per entry.
many=$work/many
rm -rf "$many" && mkdir -p "$many/mnt"
make_packages() { # ROOT COUNT FILES_PER_PACKAGE
  local root=$1 count=$2 files=$3 i j d
  mkdir -p "$root/system/packages"
  for i in $(seq -w 1 "$count"); do
    d=$many/src/$count/p$i
    mkdir -p "$d/share/p$i" "$d/bin" "$d/lib"
    echo "{\"name\":\"p$i\",\"version\":\"1.$i\",\"summary\":\"p\",\"license\":\"MIT\",\"copyright\":\"bench\"}" > "$d/manifest.json"
    for j in $(seq 1 "$files"); do head -c $(((j % 8 + 1) * 300)) /dev/urandom | base64 > "$d/share/p$i/f$j"; done
    printf '#!/bin/sh\necho p%s\n' "$i" > "$d/bin/p$i"; chmod 755 "$d/bin/p$i"
    ln -s "../share/p$i/f1" "$d/lib/p$i.link"
  done
  for i in $(seq -w 1 "$count"); do "$exos" build -q "$many/src/$count/p$i" -o "$root/system/packages/p$i.hpkg" & if (( 10#$i % 8 == 0 )); then wait; fi; done; wait
}
make_packages "$many/root" 1000 8
make_packages "$many/few" 100 152
# Baseline: the same process with one of those packages.
mkdir -p "$many/one/system/packages"
cp "$many/root/system/packages/p0001.hpkg" "$many/one/system/packages/"
rss_of() { # ROOT -> "RSS-in-KiB ENTRIES" (the package entries it mounts)
  local n
  "$exos" mount -q --no-exec-cache --daemon --pid-file "$many/pid" "$1" "$many/mnt" 2>/dev/null
  n=$(find "$many/mnt/system" -mindepth 1 -path "$many/mnt/system/.packages" -prune -o -print | wc -l)
  echo "$(awk '/VmRSS/ {print $2}' "/proc/$(cat "$many/pid")/status") $n"
  umount "$many/mnt"; while [ -e "$many/pid" ]; do sleep 0.01; done
}
read -r rss1 e1 < <(rss_of "$many/one")
read -r rss_few e_few < <(rss_of "$many/few")
mt=()
for i in $(seq "$runs"); do
  sync; echo 3 > /proc/sys/vm/drop_caches
  t0=$(now); "$exos" mount -q --no-exec-cache --daemon --pid-file "$many/pid" "$many/root" "$many/mnt" 2>/dev/null; t1=$(now)
  mt+=("$(echo "$t1 - $t0" | bc -l)")
  pid=$(cat "$many/pid")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  nodes=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['nodes'])" "$many/mnt/.exos/status.json")
  index=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['index_bytes'])" "$many/mnt/.exos/status.json")
  entries=$(find "$many/mnt/system" -mindepth 1 -path "$many/mnt/system/.packages" -prune -o -print | wc -l)
  umount "$many/mnt"; while [ -e "$many/pid" ]; do sleep 0.01; done
done
# rss - rss1 = (packages - 1) * per_package + (entries - e1) * per_entry, for both sets.
read -r per_package per_entry < <(python3 - "$rss" "$rss_few" "$rss1" "$entries" "$e_few" "$e1" <<'PY'
import sys
a, b, one, ea, eb, e1 = [float(x) for x in sys.argv[1:]]
ya, yb = (a - one) * 1024, (b - one) * 1024
pa, qa, pb, qb = 999, ea - e1, 99, eb - e1
det = pa * qb - pb * qa
print((ya * qb - yb * qa) / det, (pa * yb - pb * ya) / det)
PY
)
echo
echo "1,000 packages ($entries entries) mounted at once, cold caches, median of $runs; the same number of entries in 100 packages ($e_few entries) for the split:"
printf '| mount time (until visible) | process RSS | RSS with 1 package | RSS, 100 packages | view nodes (4 views + metadata) | view index | RSS per package | RSS per entry |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n'
printf '| %.3f s | %d KiB | %d KiB | %d KiB | %d | %d KiB | %.0f B | %.0f B |\n' "$(printf '%s\n' "${mt[@]}" | median)" "$rss" "$rss1" "$rss_few" "$nodes" "$((index / 1024))" "$per_package" "$per_entry"
