#!/usr/bin/env bash
# Program start-up from a mounted package: a Debian 12 userland
# (bench/trees.sh userland) packed as one exos package, chrooted into, and
# programs started from it: cold (fresh mount, caches dropped) and warm.
# Compared with the same files extracted to disk and with kernel squashfs.
#
#   bench/startup.sh [-r RUNS] [-c zlib|zstd]        (as root)
#
# -c: the exos package's compression (default zlib, like the squashfs
# image; `exos import-deb` makes zstd packages).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=5
exos_compression=zlib
while getopts r:c: o; do case $o in r) runs=$OPTARG ;; c) exos_compression=$OPTARG ;; *) exit 2 ;; esac; done
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
prepare() { case $1 in disk) sync; echo 3 > /proc/sys/vm/drop_caches ;; *) fresh "$1" ;; esac; }
finish() { case $1 in disk) ;; *) umount_tool "$1" ;; esac; }

places=(exos squashfs disk)
declare -A cold warm
for p in "${places[@]}"; do
  prepare "$p"; for prog in "${programs[@]}"; do start "$(dir_for "$p")" "$prog" >/dev/null; done; finish "$p"  # untimed
  for prog in "${programs[@]}"; do
    c=(); w=()
    for _ in $(seq "$runs"); do
      prepare "$p"
      c+=("$(start "$(dir_for "$p")" "$prog")")
      w+=("$(start "$(dir_for "$p")" "$prog")")
      finish "$p"
    done
    cold[$p,$prog]=$(printf '%s\n' "${c[@]}" | median)
    warm[$p,$prog]=$(printf '%s\n' "${w[@]}" | median)
  done
done
echo "userland: $src ($files files, $bytes bytes), $(nproc) cores, exos through $(transport_note), exos package $exos_compression, median of $runs runs"
printf '| program | exos cold | kernel squashfs cold | extracted (disk) cold | exos ÷ disk, cold | exos warm | disk warm | exos ÷ disk, warm |\n|---|---:|---:|---:|---:|---:|---:|---:|\n'
for prog in "${programs[@]}"; do
  printf '| `%s` | %.4f s | %.4f s | %.4f s | %.2f× | %.4f s | %.4f s | %.2f× |\n' "$prog" \
    "${cold[exos,$prog]}" "${cold[squashfs,$prog]}" "${cold[disk,$prog]}" "$(echo "${cold[exos,$prog]} / ${cold[disk,$prog]}" | bc -l)" \
    "${warm[exos,$prog]}" "${warm[disk,$prog]}" "$(echo "${warm[exos,$prog]} / ${warm[disk,$prog]}" | bc -l)"
done
