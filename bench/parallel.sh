#!/usr/bin/env bash
# Concurrent readers: N processes each read their own contiguous share of
# a tree's files (in sorted order) at once, from cold caches, through exos,
# squashfuse, kernel squashfs and kernel erofs.
#
#   bench/parallel.sh [-r RUNS] [TREE]        (as root; TREE as in bench/trees.sh, default boost)
#
# Prints the wall time per tool and reader count, and the speed-up over one
# reader: how well each scales with concurrency.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=3
while getopts r: o; do case $o in r) runs=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
tree=${1:-boost}
work=$here/work/fs
source "$here/fslib.sh"
prepare_tree "$tree"

# Splits sorted.list into N shares and reads them at once.
readers() { # DIR N
  local dir=$1 n=$2 total i
  total=$(tr -cd '\0' < "$work/sorted.list" | wc -c)
  rm -rf "$work/shares" && mkdir "$work/shares"
  python3 - "$work/sorted.list" "$work/shares" "$n" <<'PY'
import sys
paths = open(sys.argv[1], "rb").read().split(b"\0")[:-1]
n = int(sys.argv[3])
per = -(-len(paths) // n)
for i in range(n):
    open(f"{sys.argv[2]}/{i}", "wb").write(b"".join(p + b"\0" for p in paths[i * per:(i + 1) * per]))
PY
  for i in $(seq 0 $((n - 1))); do (cd "$dir" && xargs -0 cat < "$work/shares/$i" > /dev/null) & done
  wait
}

counts=(1 8 32 64)
tools=(exos squashfuse squashfs erofs)
declare -A t
for tool in "${tools[@]}"; do
  fresh "$tool"; readers "$(dir_of "$tool")" 8; umount_tool "$tool"   # untimed warm-up
  for n in "${counts[@]}"; do
    v=()
    for _ in $(seq "$runs"); do fresh "$tool"; v+=("$(timed readers "$(dir_of "$tool")" "$n")"); done
    t[$tool,$n]=$(printf '%s\n' "${v[@]}" | median)
    umount_tool "$tool"
  done
done
echo "tree $tree: $src ($files files, $bytes bytes), $(nproc) cores, exos through $(transport_note), median of $runs runs, cold caches"
printf '| readers | exos (FUSE) | squashfuse | kernel squashfs | kernel erofs (lz4hc) | exos ÷ kernel squashfs |\n|---:|---:|---:|---:|---:|---:|\n'
for n in "${counts[@]}"; do
  printf '| %d |' "$n"
  for tool in "${tools[@]}"; do
    printf ' %.3f s (%.2f×) |' "${t[$tool,$n]}" "$(echo "${t[$tool,1]} / ${t[$tool,$n]}" | bc -l)"
  done
  printf ' %.2f× |\n' "$(echo "${t[exos,$n]} / ${t[squashfs,$n]}" | bc -l)"
done
echo "(in brackets: speed-up over one reader of the same tool)"
