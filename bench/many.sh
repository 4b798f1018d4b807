#!/usr/bin/env bash
# Many packages in one root (issue 30, target 4): COUNT small packages
# (default 10,000; each a script, two data files and a link: 8 entries)
# installed into one EXOS root, then:
#   * the install of all of them at once (one state);
#   * a mount of the root: time until it is visible, cold caches, and the
#     daemon's RSS, per entry (all of it, the process's fixed cost included);
#   * `exos list --installed`;
#   * `exos install` of one more package into the root of COUNT, and its
#     `exos remove`, unmounted and with the root mounted (the mount then
#     re-activates: the time until the new package's file is visible).
# Medians of RUNS (default 3).
#
#   bench/many.sh [COUNT] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
count=${1:-10000} runs=${2:-3}
exos=$top/target/release/exos
(cd "$top" && cargo build --release -q -p exos-cli)
work=$here/work/many-$count
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

if [ ! -e "$work/built" ]; then
  rm -rf "$work" && mkdir -p "$work/src" "$work/pkgs"
  python3 - "$work/src" "$count" <<'PY'
import os, sys
src, count = sys.argv[1], int(sys.argv[2])
for i in range(count + 1):  # one more than COUNT: the package installed on top
    name = f"m{i:05d}"
    d = os.path.join(src, name)
    os.makedirs(f"{d}/bin"); os.makedirs(f"{d}/share/{name}"); os.makedirs(f"{d}/lib")
    with open(f"{d}/manifest.json", "w") as f:
        f.write(f'{{"name":"{name}","version":"1.{i}","summary":"many","license":"MIT","copyright":"bench"}}')
    with open(f"{d}/bin/{name}", "w") as f:
        f.write(f"#!/bin/sh\necho {name}\n")
    os.chmod(f"{d}/bin/{name}", 0o755)
    for j in (1, 2):
        with open(f"{d}/share/{name}/data{j}", "w") as f:
            f.write(f"{name} {j}\n" * (40 * j))
    os.symlink(f"../share/{name}/data1", f"{d}/lib/{name}.data")
PY
  (cd "$work/src" && ls) | xargs -P "$(nproc)" -I{} "$exos" build -q "$work/src/{}" -o "$work/pkgs/{}.hpkg"
  rm -rf "$work/src"
  touch "$work/built"
fi
extra=$(printf 'm%05d' "$count")
mapfile -t pkgs < <(ls "$work/pkgs"/*.hpkg | grep -v "/$extra.hpkg$")

rm -rf "$work/root" "$work/mnt" && mkdir -p "$work/mnt"
"$exos" init -q "$work/root"
t0=$(now)
"$exos" install -y -q -r "$work/root" "${pkgs[@]}"
t1=$(now)
install_all=$(echo "$t1 - $t0" | bc -l)

mount_root() { "$exos" mount -q --no-exec-cache --daemon --pid-file "$work/pid" "$work/root" "$work/mnt"; }
unmount_root() { umount "$work/mnt"; while [ -e "$work/pid" ]; do sleep 0.01; done; }
mt=() rss=0 entries=0
for _ in $(seq "$runs"); do
  sync; echo 3 > /proc/sys/vm/drop_caches
  t0=$(now); mount_root; t1=$(now)
  mt+=("$(echo "$t1 - $t0" | bc -l)")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$(cat "$work/pid")/status")
  entries=$(find "$work/mnt/system" -mindepth 1 -path "$work/mnt/system/.packages" -prune -o -print | wc -l)
  unmount_root
done

one_more() { # -> "INSTALL_S REMOVE_S [VISIBLE_S]"
  local t0 t1 t2 t3 vis=""
  t0=$(now); "$exos" install -y -q -r "$work/root" "$work/pkgs/$extra.hpkg"; t1=$(now)
  if [ "${1:-}" = mounted ]; then
    while [ ! -e "$work/mnt/system/bin/$extra" ]; do sleep 0.001; done
    vis=$(echo "$(now) - $t0" | bc -l)
  fi
  t2=$(now); "$exos" remove -y -q -r "$work/root" "$extra"; t3=$(now)
  if [ "${1:-}" = mounted ]; then
    while [ -e "$work/mnt/system/bin/$extra" ]; do sleep 0.001; done
  fi
  echo "$(echo "$t1 - $t0" | bc -l) $(echo "$t3 - $t2" | bc -l) $vis"
}
# `exos list --installed` (warm caches): every installed package's name,
# version and size, what `info`, `why` and every change read too.
lst=()
for _ in $(seq "$runs"); do
  t0=$(now); "$exos" list --installed -r "$work/root" >/dev/null; t1=$(now)
  lst+=("$(echo "$t1 - $t0" | bc -l)")
done
ins=() rem=() ins_m=() rem_m=() vis=()
for _ in $(seq "$runs"); do
  read -r a b < <(one_more); ins+=("$a") rem+=("$b")
done
mount_root
for _ in $(seq "$runs"); do
  read -r a b c < <(one_more mounted); ins_m+=("$a") rem_m+=("$b") vis+=("$c")
done
unmount_root

echo "$count packages ($entries entries in the mount), $(nproc) cores, median of $runs"
printf '| installing all %d at once | mount until visible, cold | daemon RSS | RSS per entry (all of it) | list --installed | install one more | remove it | install one more, mounted | … until its file is visible | remove it, mounted |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n' "$count"
m() { printf '%s\n' "$@" | median; }
printf '| %.2f s | %.3f s | %d KiB | %.0f B | %.3f s | %.3f s | %.3f s | %.3f s | %.3f s | %.3f s |\n' \
  "$install_all" "$(m "${mt[@]}")" "$rss" "$(echo "$rss * 1024 / $entries" | bc -l)" "$(m "${lst[@]}")" \
  "$(m "${ins[@]}")" "$(m "${rem[@]}")" "$(m "${ins_m[@]}")" "$(m "${vis[@]}")" "$(m "${rem_m[@]}")"
