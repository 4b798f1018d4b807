#!/usr/bin/env bash
# Dependency-resolution benchmark on Debian's own package graph:
# `exos resolve` vs libsolv (python3-solv), same input, same run.
#
#   bench/resolve.sh [RUNS] [TARGET...]
#
# Debian's Packages indexes (after `apt-get update`) are converted to EXOS
# manifests by bench/debian2exos.py (the mapping is documented there); exos
# resolves from that JSON-lines index, libsolv from the Packages files
# themselves (recommends ignored by both). Each tool runs as its own
# process, RUNS times; the table gives medians and the peak RSS.
# Needs python3-solv and apt lists (apt-get update).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=${1:-5}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(build-essential task-gnome-desktop task-kde-desktop)
work=$here/work/debian
exos=$root/target/release/exos
/usr/bin/python3 -c "import solv" 2>/dev/null || { echo "python3-solv missing: apt-get install python3-solv" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p exos-cli)

mkdir -p "$work"
rm -f "$work"/*_Packages
shopt -s nullglob
lists=(/var/lib/apt/lists/*_Packages*)
[ ${#lists[@]} -gt 0 ] || { echo "no apt lists: run apt-get update" >&2; exit 1; }
for f in "${lists[@]}"; do
  out=$work/$(basename "${f%.*}")
  case "$f" in *_Packages) out=$work/$(basename "$f") ;; esac
  /usr/lib/apt/apt-helper cat-file "$f" > "$out"
done
packages=("$work"/*_Packages)
python3 "$here/debian2exos.py" "$work/index.jsonl" "${packages[@]}"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
max() { sort -n | tail -1; }

echo "input: $(grep -c '^Package:' "${packages[@]}" | awk -F: '{s+=$NF} END {print s}') Debian packages ($(basename -a "${packages[@]}" | tr '\n' ' ')), $(nproc) cores, median of $runs runs"
printf '| target | tool | result (packages) | load (s) | solve (s) | wall (s) | peak RSS (MB) | wall vs libsolv |\n|---|---|---:|---:|---:|---:|---:|---:|\n'
for t in "${targets[@]}"; do
  name=${t//-/_}
  : > "$work/exos.runs"; : > "$work/solv.runs"
  # One untimed run of each first: the first runs after a memory-hungry job
  # are slowed by the kernel reclaiming memory, whichever tool it is.
  "$exos" resolve -q -a "$work/index.jsonl" install "$name" >/dev/null 2>&1 || true
  /usr/bin/python3 "$here/libsolv_resolve.py" "$t" "${packages[@]}" >/dev/null 2>&1 || true
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "TIME %e %M" "$exos" resolve --stats --json -a "$work/index.jsonl" install "$name" \
      > "$work/exos.json" 2> "$work/exos.err" || { cat "$work/exos.err" >&2; exit 1; }
    load=$(sed -n 's/.*load \([0-9.]*\) s.*/\1/p' "$work/exos.err")
    solve=$(sed -n 's/.*solve \([0-9.]*\) s.*/\1/p' "$work/exos.err")
    read -r wall rss < <(sed -n 's/^TIME //p' "$work/exos.err")
    count=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['plan']['result']))" "$work/exos.json")
    echo "$load $solve $wall $rss $count" >> "$work/exos.runs"
    /usr/bin/time -f "TIME %e %M" /usr/bin/python3 "$here/libsolv_resolve.py" "$t" "${packages[@]}" \
      > "$work/solv.json" 2> "$work/solv.err" || { cat "$work/solv.err" >&2; exit 1; }
    read -r wall rss < <(sed -n 's/^TIME //p' "$work/solv.err")
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['load_s'], d['solve_s'], sys.argv[2], sys.argv[3], d['result'])" \
      "$work/solv.json" "$wall" "$rss" >> "$work/solv.runs"
  done
  ew=$(cut -d' ' -f3 "$work/exos.runs" | median); sw=$(cut -d' ' -f3 "$work/solv.runs" | median)
  for tool in exos libsolv; do
    f=$work/$([ $tool = exos ] && echo exos || echo solv).runs
    printf '| %s | %s | %s | %.3f | %.3f | %.2f | %.0f | %.2f× |\n' "$t" \
      "$([ $tool = exos ] && echo 'exos resolve' || echo 'libsolv (python3-solv)')" \
      "$(cut -d' ' -f5 "$f" | median)" "$(cut -d' ' -f1 "$f" | median)" "$(cut -d' ' -f2 "$f" | median)" \
      "$(cut -d' ' -f3 "$f" | median)" "$(echo "$(cut -d' ' -f4 "$f" | max) / 1024" | bc -l)" \
      "$(echo "$(cut -d' ' -f3 "$f" | median) / $sw" | bc -l)"
  done
done
echo
echo "exos wall includes process start and reading the 20 MB JSON index; libsolv's includes starting Python (about 0.02 s) and reading the Packages files."
