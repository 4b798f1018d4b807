#!/usr/bin/env bash
# Boot to a running system (systemctl is-system-running --wait) in
# systemd-nspawn: an EXOS root (`exos boot`, /usr from the packages) against
# the same packages extracted onto the disk (a directory tree of the same
# state's merged view, booted by systemd-nspawn directly). Medians of RUNS
# (default 3), same machine, same run; also the disk bytes both ways.
# Usage: bench/boot.sh ROOT   (a root made as docs/boot.md shows)
set -euo pipefail
root=$(realpath "${1:?usage: bench/boot.sh ROOT}")
runs=${RUNS:-3}
exos=${EXOS:-exos}
work=$(mktemp -d /var/tmp/exos-bootbench.XXXXXX)
trap 'umount -l "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
ms() { date +%s%3N; }
# Waits for systemd under $1 (a pid) to report running; prints the ms it took from $2.
wait_running() {
  local parent=$1 start=$2 init=""
  while [ -z "$init" ]; do
    init=$(pgrep -x systemd -P "$(pgrep -P "$parent" -d, || echo 0)" 2>/dev/null | head -1 || true)
    [ -z "$init" ] && init=$(pgrep -x systemd -P "$parent" 2>/dev/null | head -1 || true)
    sleep 0.02
  done
  until [ -S "/proc/$init/root/run/systemd/private" ]; do sleep 0.02; done
  nsenter -t "$init" -a /usr/bin/systemctl is-system-running --wait >/dev/null </dev/null || true
  echo $(( $(ms) - start ))
  nsenter -t "$init" -a /usr/bin/systemctl poweroff </dev/null >/dev/null 2>&1 || true
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The extracted tree: the current state's merged view copied onto disk.
mkdir -p "$work/mnt" "$work/tree"
"$exos" mount "$root" "$work/mnt" --daemon --pid-file "$work/pid" -q
cp -a "$work/mnt/merged-system/." "$work/tree/"
"$exos" unmount -q "$work/mnt"
exos_times=(); tree_times=()
for i in $(seq "$runs"); do
  start=$(ms)
  setsid "$exos" boot -r "$root" </dev/null >/dev/null 2>&1 &
  exos_times+=("$(wait_running $! "$start")")
  wait || true
  start=$(ms)
  setsid systemd-nspawn -D "$work/tree" --boot --register=no --keep-unit systemd.firstboot=off </dev/null >/dev/null 2>&1 &
  tree_times+=("$(wait_running $! "$start")")
  wait || true
done
e=$(printf '%s\n' "${exos_times[@]}" | median)
t=$(printf '%s\n' "${tree_times[@]}" | median)
pk=$(du -sb "$root/system/packages" | cut -f1)
tr=$(du -sb "$work/tree" | cut -f1)
echo "boot to running (nspawn), ms: exos $e, extracted $t, ratio $(echo "scale=2; $e / $t" | bc) (runs: ${exos_times[*]} / ${tree_times[*]})"
echo "system bytes: packages $pk, extracted $tr, ratio $(echo "scale=2; $pk / $tr" | bc)"
