#!/usr/bin/env bash
# Shared pages: two versions of the same real package set — Debian 12's
# point release and its security update of python3.11, perl, libc6, openssl
# and tzdata (both in Debian's archive today) — imported, the older in the
# system layer and the newer in the user layer of one mount, and every file
# of both read (caches dropped first). Reported: page-cache growth reading
# the first version, then the second, with sharing (default) and without
# (`--no-share`), the daemon's resident memory, against the bytes that
# actually differ between the versions (files of the new version whose
# content is in no file of the old one, counted by sha256sum on the
# extracted .debs).
#
#   bench/shared.sh [-r RUNS]        (as root; default 3 runs, medians)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
runs=3
while getopts r: o; do case $o in r) runs=$OPTARG ;; *) exit 2 ;; esac; done
exos=$top/target/release/exos
work=$here/work/shared
packages=(python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
          perl perl-base perl-modules-5.36 libperl5.36 libc6 libc-bin libssl3 openssl tzdata)
mkdir -p "$work/old" "$work/new"
for p in "${packages[@]}"; do
  mapfile -t versions < <(apt-cache madison "$p" | awk -F'|' '{gsub(/ /,"",$2); print $2}' | sort -u -V -r)
  [ "${#versions[@]}" -ge 2 ] || { echo "bench/shared.sh: $p has one version in the archive" >&2; exit 1; }
  ls "$work/new/${p}_"*.deb >/dev/null 2>&1 || (cd "$work/new" && apt-get download -qq "$p=${versions[0]}" 2>/dev/null)
  ls "$work/old/${p}_"*.deb >/dev/null 2>&1 || (cd "$work/old" && apt-get download -qq "$p=${versions[1]}" 2>/dev/null)
done
for v in old new; do
  rm -rf "$work/pkgs-$v" "$work/x-$v" && mkdir -p "$work/x-$v"
  "$exos" import-deb -q "$work/$v"/*.deb -o "$work/pkgs-$v"
  for d in "$work/$v"/*.deb; do dpkg-deb -x "$d" "$work/x-$v"; done
done
changed=$(python3 - "$work/x-old" "$work/x-new" <<'PY'
import hashlib, os, sys
def files(root):
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                yield p
def digest(p):
    return hashlib.sha256(open(p, 'rb').read()).hexdigest()
old = {digest(p) for p in files(sys.argv[1])}
total = changed = 0
for p in files(sys.argv[2]):
    size = os.path.getsize(p)
    total += size
    if digest(p) not in old:
        changed += size
print(total, changed)
PY
)
read -r new_bytes changed_bytes <<<"$changed"
old_bytes=$(du -sb --apparent-size "$work/x-old" | cut -f1)

root=$work/root mnt=$work/mnt
umount -l "$mnt" 2>/dev/null || true
rm -rf "$root" && mkdir -p "$root/system/packages" "$root/user/packages" "$mnt"
cp "$work"/pkgs-old/*.hpkg "$root/system/packages/"
cp "$work"/pkgs-new/*.hpkg "$root/user/packages/"

cached_kb() { awk '/^Cached:/ {print $2}' /proc/meminfo; }
# Page cache held by the mount's own files: one path per inode, fincore.
mount_cache_mib() {
  find "$mnt/system" "$mnt/user" -type f -printf '%i %p\n' | sort -u -k1,1 | cut -d' ' -f2- |
    tr '\n' '\0' | xargs -0 -r fincore --bytes --noheadings --output RES 2>/dev/null |
    awk '{s += $1} END {print int(s / 1048576)}'
}
read_all() { find "$1" -type f -exec cat {} + >/dev/null; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A first second rss held
for mode in share no-share; do
  f=(); s=(); r=(); h=()
  for _ in $(seq "$runs"); do
    extra=(); [ "$mode" = no-share ] && extra=(--no-share)
    "$exos" mount "$root" "$mnt" --no-exec-cache --daemon --pid-file "$work/pid" --log-file "$work/log" "${extra[@]}" >/dev/null
    if [ "$mode" = share ]; then
      # Digests are computed once, in the background; wait for them.
      for _ in $(seq 600); do
        "$exos" status --json "$mnt" | python3 -c 'import json,sys; s=json.load(sys.stdin)["sharing"]; sys.exit(s["packages_digested"] != s["packages"])' && break
        sleep 0.1
      done
      sleep 0.3
    fi
    sync; echo 3 > /proc/sys/vm/drop_caches
    c0=$(cached_kb); read_all "$mnt/system"; c1=$(cached_kb); read_all "$mnt/user"; c2=$(cached_kb)
    f+=($(( (c1 - c0) / 1024 ))); s+=($(( (c2 - c1) / 1024 ))); h+=($(mount_cache_mib))
    r+=($(( $(awk '/^VmRSS:/ {print $2}' "/proc/$(cat "$work/pid")/status") / 1024 )))
    "$exos" unmount "$mnt"
    sleep 0.5
  done
  first[$mode]=$(printf '%s\n' "${f[@]}" | median)
  second[$mode]=$(printf '%s\n' "${s[@]}" | median)
  rss[$mode]=$(printf '%s\n' "${r[@]}" | median)
  held[$mode]=$(printf '%s\n' "${h[@]}" | median)
done
mib() { echo $(( $1 / 1048576 )); }
echo "${#packages[@]} Debian packages in two versions (old: $(ls "$work/old" | wc -l) .debs, $(mib "$old_bytes") MiB of files; new: $(mib "$new_bytes") MiB, of which $(mib "$changed_bytes") MiB differ); median of $runs runs, caches dropped"
echo "| | page cache growth, reading the old version | then the new version | mount's files in the page cache, both read | daemon RSS |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '| sharing (default) | %s MiB | **%s MiB** | **%s MiB** | %s MiB |\n' "${first[share]}" "${second[share]}" "${held[share]}" "${rss[share]}"
printf '| `--no-share` | %s MiB | %s MiB | %s MiB | %s MiB |\n' "${first[no-share]}" "${second[no-share]}" "${held[no-share]}" "${rss[no-share]}"
printf '| the files themselves | %s MiB | %s MiB differ | %s MiB (old + what differs) | |\n' "$(mib "$old_bytes")" "$(mib "$changed_bytes")" "$(mib $((old_bytes + changed_bytes)))"
