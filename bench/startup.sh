#!/usr/bin/env bash
# Program start-up from a mounted package: a Debian 12 userland
# (bench/trees.sh userland) packed as one exos package, chrooted into, and
# programs started from it: cold (fresh mount, caches dropped) and warm.
# Compared with the same files extracted to disk and with kernel squashfs.
#
#   bench/startup.sh [-r RUNS] [-c zlib|zstd] [-x]        (as root)
#
# -c: the exos package's compression (default zlib, like the squashfs
# image; `exos import-deb` makes zstd packages).
# -x: also with the exec cache (`--exec-cache`, filled by one untimed start
# of each program): its reads answered from the cache (exos-x) and served
# with FUSE passthrough (exos-xp).
#
# Every run starts each program in every place in turn, so a machine
# getting slower or faster during the benchmark does not favour one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=5
exos_compression=zlib
places=(exos squashfs disk)
while getopts r:c:x o; do case $o in r) runs=$OPTARG ;; c) exos_compression=$OPTARG ;; x) places=(exos exos-x exos-xp squashfs disk) ;; *) exit 2 ;; esac; done
work=$here/work/fs
source "$here/fslib.sh"
prepare_tree userland
disk=$work/tree

programs=("python3.11 -c pass" "perl -e 1" "git --version")
# Runs PROGRAM inside ROOT (with /dev bound in, in a private mount
# namespace) and prints its wall time in seconds, timed by the bash of ROOT
# with microsecond clocks ($EPOCHREALTIME; `time` prints milliseconds only,
# too coarse for programs starting in 5-10 ms).
start() { # ROOT PROGRAM
  local t
  t=$(unshare -m sh -c 'mount --bind /dev "$1/dev" && exec chroot "$1" /bin/bash -c "s=\$EPOCHREALTIME; $2 > /dev/null; e=\$EPOCHREALTIME; echo \$s \$e"' sh "$1" "$2" 2>/dev/null | tail -1)
  echo "${t#* } - ${t% *}" | bc -l
}
dir_for() { case $1 in disk) echo "$disk" ;; *) dir_of "$1" ;; esac; }
prepare() { case $1 in disk) sync; echo 3 > /proc/sys/vm/drop_caches ;; exos-x|exos-xp) fresh_with_cache "$1" ;; *) fresh "$1" ;; esac; }
finish() { case $1 in disk) ;; *) umount_tool "$1" ;; esac; }

rm -rf "$work/exec-cache"
for p in "${places[@]}"; do  # untimed; fills the exec cache
  prepare "$p"; for prog in "${programs[@]}"; do start "$(dir_for "$p")" "$prog" >/dev/null; done; sleep 1; finish "$p"
done
declare -A cold warm
for prog in "${programs[@]}"; do
  for _ in $(seq "$runs"); do
    for p in "${places[@]}"; do
      prepare "$p"
      cold[$p,$prog]+="$(start "$(dir_for "$p")" "$prog") "
      warm[$p,$prog]+="$(start "$(dir_for "$p")" "$prog") "
      finish "$p"
    done
  done
done
med() { tr ' ' '\n' | grep . | median; }
echo "userland: $src ($files files, $bytes bytes), $(nproc) cores, exos through $(transport_note), exos package $exos_compression, median of $runs runs"
[ ! -d "$work/exec-cache" ] || echo "exec cache: $(ls "$work/exec-cache" | wc -l) entries, $(du -sm "$work/exec-cache" | cut -f1) MiB"
printf '| program | place | cold | warm | cold ÷ disk | warm ÷ disk |\n|---|---|---:|---:|---:|---:|\n'
for prog in "${programs[@]}"; do
  dc=$(echo "${cold[disk,$prog]}" | med); dw=$(echo "${warm[disk,$prog]}" | med)
  for p in "${places[@]}"; do
    c=$(echo "${cold[$p,$prog]}" | med); w=$(echo "${warm[$p,$prog]}" | med)
    printf '| `%s` | %s | %.4f s | %.4f s | %.2f× | %.2f× |\n' "$prog" "$p" "$c" "$w" "$(echo "$c / $dc" | bc -l)" "$(echo "$w / $dw" | bc -l)"
  done
done
