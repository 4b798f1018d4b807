#!/usr/bin/env bash
# packagefs read and metadata benchmark against squashfuse, the kernel's
# squashfs and the kernel's erofs, on the same tree, in the same run.
#
#   bench/packagefs.sh [SOURCE_TREE] [RUNS]        (as root)
#
# SOURCE_TREE defaults to /usr/lib/python3.11 (about 1,400 files, 53 MB).
# Images: `exos build` (zlib 9), `mksquashfs -comp gzip` (zlib 9), and
# `mkfs.erofs -zlz4hc` (Debian 12's erofs-utils has no deflate). Every cold
# measurement starts from a fresh mount after dropping the kernel's caches.
# Then: 1,000 small packages mounted at once (mount time, memory).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
src=${1:-/usr/lib/python3.11}
runs=${2:-5}
work=$here/work/fs
exos=$root/target/release/exos
for t in mksquashfs squashfuse mkfs.erofs fusermount3; do
  command -v $t >/dev/null || { echo "$t missing: apt-get install squashfs-tools squashfuse erofs-utils fuse3" >&2; exit 1; }
done
(cd "$root" && cargo build --release -q -p exos-cli)

cleanup() {
  for m in "$work"/mnt/*; do mountpoint -q "$m" 2>/dev/null && umount "$m" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup
rm -rf "$work" && mkdir -p "$work"/{mnt/exos,mnt/squashfuse,mnt/squashfs,mnt/erofs,root/system/packages}
cp -a "$src" "$work/tree"
files=$(find "$work/tree" -type f | wc -l)
bytes=$(du -sb "$work/tree" | cut -f1)
mksquashfs "$work/tree" "$work/t.sqfs" -comp gzip -noappend -quiet -no-progress >/dev/null
mkfs.erofs -zlz4hc "$work/t.erofs" "$work/tree" >/dev/null 2>&1
# The package's manifest.json is hidden from the mounted view, so all
# four show the same files.
echo '{"name":"benchtree","version":"1.0","summary":"benchmark tree","license":"MIT","copyright":"benchmark"}' > "$work/tree/manifest.json"
"$exos" build -q "$work/tree" -o "$work/root/system/packages/tree.hpkg"
rm "$work/tree/manifest.json"

dir_of() { case $1 in exos) echo "$work/mnt/exos/system" ;; *) echo "$work/mnt/$1" ;; esac; }
mount_tool() {
  case $1 in
    exos) "$exos" mount -q --daemon --pid-file "$work/exos.pid" "$work/root" "$work/mnt/exos" 2>/dev/null ;;
    squashfuse) squashfuse "$work/t.sqfs" "$work/mnt/squashfuse" ;;
    squashfs) mount -t squashfs -o loop,ro "$work/t.sqfs" "$work/mnt/squashfs" ;;
    erofs) mount -t erofs -o loop,ro "$work/t.erofs" "$work/mnt/erofs" ;;
  esac
}
umount_tool() {
  umount "$work/mnt/$1"
  if [ "$1" = exos ]; then while [ -e "$work/exos.pid" ]; do sleep 0.01; done; fi
}
fresh() { umount_tool "$1" 2>/dev/null || true; sync; echo 3 > /proc/sys/vm/drop_caches; mount_tool "$1"; }
now() { date +%s.%N; }
timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; }
# exos shows package metadata under .packages/; the others have no such dir.
read_all() { find "$1" -path "$1/.packages" -prune -o -type f -print0 | sort -z | xargs -0 cat; }
walk() { find "$1" -path "$1/.packages" -prune -o -printf '%s %m %T@ %p\n'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

tools=(exos squashfuse squashfs erofs)
# One untimed round first: right after a memory-hungry job (a build, the
# image creation above) the kernel is still reclaiming memory and slows
# whichever tool runs first.
for tool in "${tools[@]}"; do fresh "$tool"; read_all "$(dir_of "$tool")" >/dev/null; umount_tool "$tool"; done
declare -A cold warm meta rnd
for tool in "${tools[@]}"; do
  c=(); w=(); m=(); r=()
  for i in $(seq "$runs"); do
    fresh "$tool"; d=$(dir_of "$tool")
    c+=("$(timed read_all "$d")"); w+=("$(timed read_all "$d")")
    fresh "$tool"; m+=("$(timed walk "$d")")
    fresh "$tool"; r+=("$(timed python3 "$here/random_reads.py" "$d" 2000 "$i")")
  done
  cold[$tool]=$(printf '%s\n' "${c[@]}" | median); warm[$tool]=$(printf '%s\n' "${w[@]}" | median)
  meta[$tool]=$(printf '%s\n' "${m[@]}" | median); rnd[$tool]=$(printf "%s\n" "${r[@]}" | median)
  umount_tool "$tool"
done
# Correctness guard: the four views hold the same bytes.
for tool in "${tools[@]}"; do mount_tool "$tool"; done
sums() { (cd "$1" && find . -path ./.packages -prune -o -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum); }
ref=$(sums "$(dir_of squashfs)")
for tool in exos squashfuse erofs; do
  got=$(sums "$(dir_of $tool)")
  [ "$got" = "$ref" ] || { echo "content differs between $tool and squashfs" >&2; exit 1; }
done
for tool in "${tools[@]}"; do umount_tool "$tool"; done

echo "tree: $src ($files files, $bytes bytes), $(nproc) cores, median of $runs runs; images: exos $(stat -c %s "$work/root/system/packages/tree.hpkg") B, squashfs $(stat -c %s "$work/t.sqfs") B, erofs(lz4hc) $(stat -c %s "$work/t.erofs") B"
printf '| test | exos (FUSE) | squashfuse | kernel squashfs | kernel erofs (lz4hc) | squashfuse ÷ exos (speed-up) | exos ÷ kernel squashfs (time) |\n|---|---:|---:|---:|---:|---:|---:|\n'
row() { # name array
  local -n a=$2
  printf '| %s | %.3f s | %.3f s | %.3f s | %.3f s | %.2f× | %.2f× |\n' "$1" "${a[exos]}" "${a[squashfuse]}" "${a[squashfs]}" "${a[erofs]}" \
    "$(echo "${a[squashfuse]} / ${a[exos]}" | bc -l)" "$(echo "${a[exos]} / ${a[squashfs]}" | bc -l)"
}
row "cold read of every file" cold
row "warm re-read of every file" warm
row "metadata walk (find, stat of every entry), cold" meta
row "2,000 random 4 KiB reads, cold" rnd

# 1,000 packages at once.
many=$work/many
mkdir -p "$many/root/system/packages" "$many/mnt"
for i in $(seq -w 1 1000); do
  d=$many/src/p$i
  mkdir -p "$d/share/p$i" "$d/bin" "$d/lib"
  echo "{\"name\":\"p$i\",\"version\":\"1.$i\",\"summary\":\"p\",\"license\":\"MIT\",\"copyright\":\"bench\"}" > "$d/manifest.json"
  for j in $(seq 1 8); do head -c $((j * 300)) /dev/urandom | base64 > "$d/share/p$i/f$j"; done
  printf '#!/bin/sh\necho p%s\n' "$i" > "$d/bin/p$i"; chmod 755 "$d/bin/p$i"
  ln -s "../share/p$i/f1" "$d/lib/p$i.link"
done
for i in $(seq -w 1 1000); do "$exos" build -q "$many/src/p$i" -o "$many/root/system/packages/p$i.hpkg" & if (( 10#$i % 8 == 0 )); then wait; fi; done; wait
# Baseline: the same process with one of those packages.
mkdir -p "$many/one/system/packages"
cp "$many/root/system/packages/p0001.hpkg" "$many/one/system/packages/"
"$exos" mount -q --daemon --pid-file "$many/pid" "$many/one" "$many/mnt" 2>/dev/null
rss1=$(awk '/VmRSS/ {print $2}' "/proc/$(cat "$many/pid")/status")
umount "$many/mnt"; while [ -e "$many/pid" ]; do sleep 0.01; done
mt=()
for i in $(seq "$runs"); do
  sync; echo 3 > /proc/sys/vm/drop_caches
  t0=$(now); "$exos" mount -q --daemon --pid-file "$many/pid" "$many/root" "$many/mnt" 2>/dev/null; t1=$(now)
  mt+=("$(echo "$t1 - $t0" | bc -l)")
  pid=$(cat "$many/pid")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  nodes=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['nodes'])" "$many/mnt/.exos/status.json")
  index=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['index_bytes'])" "$many/mnt/.exos/status.json")
  entries=$(find "$many/mnt/system" -mindepth 1 | wc -l)
  umount "$many/mnt"; while [ -e "$many/pid" ]; do sleep 0.01; done
done
echo
echo "1,000 packages ($(find "$many/src" -mindepth 1 | wc -l) entries in all) mounted at once, cold caches, median of $runs:"
printf '| mount time (until visible) | process RSS | RSS with 1 package | view nodes (4 views + metadata) | view index | RSS added per package entry |\n|---:|---:|---:|---:|---:|---:|\n'
printf '| %.3f s | %d KiB | %d KiB | %d | %d KiB | %.0f B |\n' "$(printf '%s\n' "${mt[@]}" | median)" "$rss" "$rss1" "$nodes" "$((index / 1024))" "$(echo "($rss - $rss1) * 1024 / $entries" | bc -l)"
