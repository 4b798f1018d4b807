#!/usr/bin/env bash
# Peak memory of every exos command over the hostile corpus
# (crates/exos-hostile): one row per input, the largest peak RSS of each
# command, and the exit code it gave (0 ok, 3 invalid file). The mount
# daemon is measured with each package alone in a root (VmHWM after
# `ls -lR` of the whole mount), and with the whole corpus at once.
#
#   bench/hostile.sh            (needs /usr/bin/time; the daemon part needs /dev/fuse and root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
(cd "$root" && cargo build --release -q -p exos-cli -p exos-hostile)
exos=$root/target/release/exos
work=$(mktemp -d)
trap 'for m in "$work"/mnt*; do "$exos" unmount "$m" 2>/dev/null || true; done; rm -rf "$work"' EXIT
"$root/target/release/exos-hostile" "$work/corpus" >/dev/null
"$exos" init "$work/root" >/dev/null

rss() { # prints "peakKiB:exit" of one command
  local code=0
  /usr/bin/time -f %M -o "$work/t" "$exos" "$@" >/dev/null 2>&1 || code=$?
  echo "$(tail -1 "$work/t"):$code"
}
mb() { awk -v k="${1%%:*}" -v c="${1##*:}" 'BEGIN { printf "%.1f (%s)", k / 1024, c }'; }

daemon_hwm() { # peak RSS of a mount of root $1 after walking it
  local mnt=$work/mnt-$2
  mkdir -p "$mnt"
  "$exos" mount -q --no-exec-cache --daemon --pid-file "$work/pid" "$1" "$mnt" 2>/dev/null
  ls -lR "$mnt" >/dev/null 2>&1 || true
  find "$mnt/merged" -type f -exec cat {} + >/dev/null 2>&1 || true
  awk '/VmHWM/ {print $2}' "/proc/$(cat "$work/pid")/status"
  "$exos" unmount "$mnt"
  sleep 0.3
}

echo "peak RSS in MB (exit code) per command; inputs from crates/exos-hostile"
printf '| input | bytes | list -a | info --json | extract | install | check | mount daemon |\n|---|---:|---:|---:|---:|---:|---:|---:|\n'
fuse=0
[ -e /dev/fuse ] && [ "$(id -u)" = 0 ] && fuse=1
while IFS=$'\t' read -r file bytes class expect; do
  f=$work/corpus/$file
  row="| $file | $bytes | $(mb "$(rss list -a "$f")") | $(mb "$(rss info --json "$f")")"
  if [[ $file == *.hpkg ]]; then
    row+=" | $(mb "$(rss extract -q "$f" "$work/x-$file")") | $(mb "$(rss install -q -r "$work/root" "$f")") | $(mb "$(rss check -r "$work/root")")"
    if [ $fuse = 1 ]; then
      r=$work/r-$file
      mkdir -p "$r/system/packages"
      cp "$f" "$r/system/packages/"
      row+=" | $(awk -v k="$(daemon_hwm "$r" "${file%.*}")" 'BEGIN { printf "%.1f", k / 1024 }')"
    else
      row+=" | n/a"
    fi
  else
    row+=" | - | - | - | -"
  fi
  echo "$row |"
done < "$work/corpus/cases.tsv"
if [ $fuse = 1 ]; then
  all=$work/all
  mkdir -p "$all/system/packages" "$work/empty/system/packages"
  cp "$work"/corpus/*.hpkg "$all/system/packages/"
  echo
  echo "mount daemon, empty root: $(awk -v k="$(daemon_hwm "$work/empty" empty)" 'BEGIN { printf "%.1f", k / 1024 }') MB; whole corpus at once: $(awk -v k="$(daemon_hwm "$all" all)" 'BEGIN { printf "%.1f", k / 1024 }') MB"
fi
