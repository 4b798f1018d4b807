#!/usr/bin/env bash
# Build-time and size benchmark: `exos build` vs `mksquashfs -comp gzip`
# (both zlib/gzip level 9, all cores) on the same tree, in the same run;
# then full extraction: `exos extract` vs `unsquashfs` of those outputs.
#
#   bench/build.sh [SOURCE_TREE] [RUNS]
#
# SOURCE_TREE defaults to /usr/lib/x86_64-linux-gnu; it is first copied to
# bench/work/tree so both tools read the same, stable snapshot from the page
# cache. Needs squashfs-tools (apt-get install squashfs-tools).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
src=${1:-/usr/lib/x86_64-linux-gnu}
runs=${2:-3}
work=$here/work/build
exos=$root/target/release/exos

command -v mksquashfs >/dev/null || { echo "mksquashfs missing: apt-get install squashfs-tools" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p exos-cli)

rm -rf "$work" && mkdir -p "$work"
cp -a "$src" "$work/tree"
cat > "$work/tree/manifest.json" <<JSON
{ "name": "benchtree", "version": "1.0", "summary": "benchmark tree", "license": "MIT", "copyright": "benchmark" }
JSON
files=$(find "$work/tree" -type f | wc -l)
bytes=$(du -sb "$work/tree" | cut -f1)
# Warm the page cache so neither tool pays for the first read.
find "$work/tree" -type f -exec cat {} + >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_runs() { # command...
  for _ in $(seq "$runs"); do
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | median
}

t_sq=$(time_runs bash -c "rm -f '$work/t.sqfs'; mksquashfs '$work/tree' '$work/t.sqfs' -comp gzip -noappend -quiet -no-progress")
t_ex=$(time_runs bash -c "rm -f '$work/t.hpkg'; '$exos' build -q '$work/tree' -o '$work/t.hpkg'")
t_ex6=$(time_runs bash -c "rm -f '$work/t6.hpkg'; '$exos' build -q -l 6 '$work/tree' -o '$work/t6.hpkg'")
t_zs=$(time_runs bash -c "rm -f '$work/tz.hpkg'; '$exos' build -q -c zstd -l 19 '$work/tree' -o '$work/tz.hpkg'")
s_sq=$(stat -c %s "$work/t.sqfs"); s_ex=$(stat -c %s "$work/t.hpkg")
s_ex6=$(stat -c %s "$work/t6.hpkg"); s_zs=$(stat -c %s "$work/tz.hpkg")

echo "tree: $src ($files files, $bytes bytes), $(nproc) cores, median of $runs runs"
printf '| tool | wall time (s) | time vs mksquashfs | output bytes | size vs mksquashfs |\n|---|---:|---:|---:|---:|\n'
row() { printf '| %s | %.2f | %.2f× | %d | %.3f |\n' "$1" "$2" "$(echo "$2 / $t_sq" | bc -l)" "$3" "$(echo "$3 / $s_sq" | bc -l)"; }
row "mksquashfs -comp gzip (level 9)" "$t_sq" "$s_sq"
row "exos build (zlib 9, default)" "$t_ex" "$s_ex"
row "exos build -l 6 (zlib 6)" "$t_ex6" "$s_ex6"
row "exos build -c zstd -l 19" "$t_zs" "$s_zs"

t_unsq=$(time_runs bash -c "rm -rf '$work/x'; unsquashfs -q -n -d '$work/x' '$work/t.sqfs'")
t_exx=$(time_runs bash -c "rm -rf '$work/x'; '$exos' extract -q '$work/t.hpkg' '$work/x'")
t_exz=$(time_runs bash -c "rm -rf '$work/x'; '$exos' extract -q '$work/tz.hpkg' '$work/x'")
rm -rf "$work/x"
echo
printf '| extraction of the whole tree | wall time (s) | time vs unsquashfs |\n|---|---:|---:|\n'
xrow() { printf '| %s | %.2f | %.2f× |\n' "$1" "$2" "$(echo "$2 / $t_unsq" | bc -l)"; }
xrow "unsquashfs (gzip image)" "$t_unsq"
xrow "exos extract (zlib 9 package)" "$t_exx"
xrow "exos extract (zstd 19 package)" "$t_exz"
