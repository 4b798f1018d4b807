#!/usr/bin/env bash
# Delta packages on real Debian version pairs, against zstd --patch-from
# and bsdiff on the same packages.
#
#   bench/delta.sh [-l LEVEL] [-c zlib|zstd|none] [PAIR...]
#       PAIR: a Debian package name (its two newest versions in the apt
#       sources), OLDNAME:NEWNAME (the newest version of each, e.g. two
#       kernel images), or tree:TREE (a tree of bench/trees.sh, e.g.
#       tree:boost, built with `exos build` twice, the second time with one
#       line of its middle file changed). Default: the pairs in
#       BENCHMARKS.md.
#
# Each .deb is fetched with `apt-get download` and imported with
# `exos import-deb` (zlib 9, what a repository publishes; with -c, then
# rebuilt with that compression: `-c none` makes packages of their full
# uncompressed size, for the memory bound). Then, for each
# pair, on the .hpkg files:
#   * exos delta OLD NEW (zstd level LEVEL, default exos's own) and exos apply, the
#     rebuilt package compared byte for byte with NEW;
#   * zstd -19 --long=31 --patch-from=OLD NEW (zstd's own delta mode);
#   * bsdiff OLD NEW (skipped for packages over 64 MB: it needs about 17
#     bytes of memory per byte of OLD and hours on such files).
# Prints, per pair: sizes (and % of NEW), wall time and peak RSS
# (/usr/bin/time) of making and applying.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
level="" comp=zlib
while getopts l:c: o; do
  case $o in l) level=$OPTARG ;; c) comp=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
pairs=("$@")
[ ${#pairs[@]} -gt 0 ] || pairs=(libpython3.11-minimal libpython3.11-stdlib libssl3 firefox-esr
  tzdata libxml2 git postgresql-15 openjdk-17-jre-headless linux-image-6.1.0-50-amd64:linux-image-6.1.0-56-amd64 tree:boost)
(cd "$top" && cargo build --release -q -p exos-cli)
for t in zstd bsdiff /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "delta.sh: $t is missing (apt-get install zstd bsdiff time)" >&2; exit 1; }
done
exos=$top/target/release/exos
work=$here/work/delta
mkdir -p "$work/debs"
# "SECONDS MAXRSS_KB" of a command (output discarded).
measure() { /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>&1 || echo "FAILED: $*" >&2; cat "$work/time"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
# Newest two versions of NAME in the apt sources, oldest first.
versions() { apt-cache madison "$1" | awk '{print $3}' | sort -u | sort -V | tail -2; }
fetch() { # NAME VERSION -> path of the .hpkg
  local name=$1 ver=$2 dir=$work/debs
  local deb
  # By the version inside (not by modification time: apt keeps the
  # server's, so the newest download need not be the newest file).
  with_version() { ls "$dir/${name}_"*.deb 2>/dev/null | while read -r f; do
    [ "$(dpkg-deb -f "$f" Version)" = "$ver" ] && echo "$f"; done | head -1; }
  deb=$(with_version)
  if [ -z "$deb" ]; then
    (cd "$dir" && apt-get download -q "$name=$ver" >/dev/null 2>&1)
    deb=$(with_version)
    [ -n "$deb" ] || { echo "delta.sh: apt-get download $name=$ver failed" >&2; exit 1; }
  fi
  local out=$work/hpkg/$(basename "$deb" .deb)
  if [ ! -d "$out" ]; then
    mkdir -p "$out" && "$exos" import-deb -q "$deb" -o "$out"
  fi
  local pkg
  pkg=$(ls "$out"/"${name}"_*.hpkg)
  if [ "$comp" != zlib ]; then
    local re=$work/hpkg-$comp/$(basename "$pkg")
    if [ ! -f "$re" ]; then
      mkdir -p "$work/hpkg-$comp"
      rm -rf "$work/tree" && "$exos" extract -q "$pkg" "$work/tree"
      "$exos" build -q -c "$comp" "$work/tree" -o "$re"
      rm -rf "$work/tree"
    fi
    pkg=$re
  fi
  echo "$pkg"
}
# tree:NAME -> "OLD NEW" packages of the tree, one line changed in NEW.
tree_pair() {
  local src t=$work/tree-$1
  src=$("$here/trees.sh" "$1")
  if [ ! -f "$t/new.hpkg" ]; then
    rm -rf "$t" && mkdir -p "$t"
    cp -a "$src" "$t/old" && cp -a "$src" "$t/new"
    local f
    f=$(cd "$t/new" && find . -type f -size +1k | sort | awk '{ a[NR] = $0 } END { print a[int(NR / 2) + 1] }')
    sed -i '3s/$/ (changed)/' "$t/new/$f"
    for v in old new; do
      printf '{"name":"%s","version":"1.%s","summary":"delta bench","license":"MIT","copyright":"bench"}' \
        "$1" "$([ $v = old ] && echo 0 || echo 1)" > "$t/$v/manifest.json"
      "$exos" build -q "$t/$v" -o "$t/$v.hpkg"
    done
  fi
  echo "$t/old.hpkg $t/new.hpkg"
}
printf '| pair | new package | exos delta | zstd --patch-from | bsdiff | exos make: s, MB RSS | exos apply: s, MB RSS | zstd: s, MB RSS | bsdiff: s, MB RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for p in "${pairs[@]}"; do
  if [[ $p == tree:* ]]; then
    read -r old new < <(tree_pair "${p#tree:}")
    label="${p#tree:} tree, one line changed"
  elif [[ $p == *:* ]]; then
    on=${p%%:*} nn=${p##*:}
    old=$(fetch "$on" "$(versions "$on" | tail -1)")
    new=$(fetch "$nn" "$(versions "$nn" | tail -1)")
    label="$on → $nn"
  else
    vs=($(versions "$p"))
    [ ${#vs[@]} -eq 2 ] || { echo "delta.sh: $p has fewer than two versions in the apt sources" >&2; continue; }
    old=$(fetch "$p" "${vs[0]}") new=$(fetch "$p" "${vs[1]}")
    label="$p ${vs[0]} → ${vs[1]}"
  fi
  d=$work/pair.delta z=$work/pair.zst b=$work/pair.bsdiff r=$work/rebuilt.hpkg
  rm -f "$d" "$z" "$b" "$r"
  sync; echo 3 > /proc/sys/vm/drop_caches
  tm=$(measure "$exos" delta -q "$old" "$new" -o "$d" ${level:+--level "$level"})
  sync; echo 3 > /proc/sys/vm/drop_caches
  ta=$(measure "$exos" apply -q "$old" "$d" -o "$r")
  cmp -s "$r" "$new" || { echo "delta.sh: $label: the rebuilt package differs" >&2; exit 1; }
  tz=$(measure zstd -q -f -19 --long=31 --patch-from="$old" "$new" -o "$z")
  size=$(stat -c %s "$new")
  if [ "$(stat -c %s "$old")" -le 64000000 ]; then
    tb=$(measure bsdiff "$old" "$new" "$b")
    bs=$(stat -c %s "$b")
    bcol="$(mb "$bs") ($(pct "$bs" "$size"))"
  else
    tb="skipped -"; bcol="skipped"
  fi
  ds=$(stat -c %s "$d") zs=$(stat -c %s "$z")
  fmt() { set -- $1; [ "$1" = skipped ] && echo "—" || awk -v s="$1" -v k="$2" 'BEGIN { printf "%.2f, %.0f", s, k / 1024 }'; }
  printf '| %s | %s | %s (%s) | %s (%s) | %s | %s | %s | %s | %s |\n' "$label" "$(mb "$size")" \
    "$(mb "$ds")" "$(pct "$ds" "$size")" "$(mb "$zs")" "$(pct "$zs" "$size")" "$bcol" \
    "$(fmt "$tm")" "$(fmt "$ta")" "$(fmt "$tz")" "$(fmt "$tb")"
done
