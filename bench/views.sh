#!/usr/bin/env bash
# Start-up cost of a per-process view: `exos run -- true` against Debian's
# bubblewrap (what Flatpak uses) making the same root — a tmpfs with the
# mount's layers bound read-only at /system, /common and /user, /data
# bound writable, and every other top-level entry of the host bound (or
# linked) in — and the same for a sandbox (`exos run --sandbox` against
# `bwrap --unshare-user --unshare-net --unshare-ipc --unshare-pid` with the
# sandbox's binds), both run by the unprivileged user nobody. The mount
# holds the Debian userland of scripts/userland.sh, so /usr and its links
# come from the packages in both.
#
#   bench/views.sh [-n RUNS]        (as root; default 300 runs per case)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
runs=300
while getopts n: o; do case $o in n) runs=$OPTARG ;; *) exit 2 ;; esac; done
exos=$top/target/release/exos
command -v bwrap >/dev/null || { echo "bench/views.sh: bwrap missing (apt-get install bubblewrap)" >&2; exit 1; }
work=$here/work/views
umount -l "$work/mnt" 2>/dev/null || true
rm -rf "$work/root" "$work/pkgs" && mkdir -p "$work/mnt"
chmod 755 "$here/work" "$work"
debs=$("$top/scripts/userland.sh" | wc -l)
"$exos" import-deb -q "$here"/work/userland-debs/*.deb -o "$work/pkgs"
"$exos" init "$work/root" >/dev/null
"$exos" install -q -r "$work/root" "$work"/pkgs/*.hpkg
"$exos" mount "$work/root" "$work/mnt" --no-exec-cache --daemon --pid-file "$work/pid" --log-file "$work/log" >/dev/null
trap 'umount -l "$work/mnt" 2>/dev/null || true' EXIT
mnt=$work/mnt root=$work/root

# bwrap arguments for the plain view: the same entries exos makes.
plain=(--tmpfs / --ro-bind "$mnt/system" /system --ro-bind "$mnt/common" /common
       --ro-bind "$mnt/user" /user --bind "$root/data" /data --ro-bind "$mnt/merged/usr" /usr)
for l in bin sbin lib lib64; do plain+=(--symlink "usr/$l" "/$l"); done
for e in /*; do
  n=${e#/}
  case $n in system|common|user|data|usr|bin|sbin|lib|lib64|lib32|libx32) continue ;; esac
  if [ -L "$e" ]; then plain+=(--symlink "$(readlink "$e")" "$e")
  elif [ -d "$e" ]; then plain+=(--dev-bind "$e" "$e")
  fi
done
plain+=(--remount-ro /)

# bwrap arguments for the sandbox.
mkdir -p "$root/data/users/nobody/bench" && chown -R nobody:nogroup "$root/data/users/nobody"
sandbox=(--unshare-user --unshare-net --unshare-ipc --unshare-pid --die-with-parent
         --ro-bind "$mnt/system" /system --ro-bind "$mnt/common" /common --ro-bind "$mnt/user" /user
         --ro-bind "$mnt/merged/usr" /usr --dev /dev --proc /proc --tmpfs /tmp
         --bind "$root/data/users/nobody/bench" /data/bench)
for l in bin sbin lib lib64; do sandbox+=(--symlink "usr/$l" "/$l"); done
for f in passwd group hosts resolv.conf nsswitch.conf ld.so.cache; do
  [ -e "/etc/$f" ] && sandbox+=(--ro-bind "/etc/$f" "/etc/$f")
done
sandbox+=(--chdir /data/bench --remount-ro /)

as_nobody() { setpriv --reuid 65534 --regid 65534 --clear-groups -- "$@"; }
# Wall seconds per run, over RUNS runs of the command.
per_run() {
  local t0 t1
  "$@" >/dev/null 2>&1 || { echo "bench/views.sh: failed: $*" >&2; "$@"; exit 1; }
  t0=$(date +%s%N)
  for _ in $(seq "$runs"); do "$@" >/dev/null 2>&1; done
  t1=$(date +%s%N)
  echo "scale=6; ($t1 - $t0) / $runs / 1000000000" | bc
}

e_plain=$(per_run "$exos" run -r "$root" -- true)
b_plain=$(per_run bwrap "${plain[@]}" -- true)
e_box=$(per_run as_nobody "$exos" run -r "$root" --sandbox --data bench -- true)
b_box=$(per_run as_nobody bwrap "${sandbox[@]}" -- true)
e_sh=$(per_run "$exos" run -r "$root" -- bash -c true)
b_sh=$(per_run bwrap "${plain[@]}" -- bash -c true)

ms() { echo "scale=2; $1 * 1000 / 1" | bc; }
echo "views over a mounted Debian userland ($debs packages), $runs runs each, $(nproc) cores"
echo "| case | exos run | bwrap | exos ÷ bwrap |"
echo "| --- | ---: | ---: | ---: |"
printf '| view, `true` (root) | %s ms | %s ms | %.2f× |\n' "$(ms "$e_plain")" "$(ms "$b_plain")" "$(echo "$e_plain / $b_plain" | bc -l)"
printf '| view, `bash -c true` from the packages (root) | %s ms | %s ms | %.2f× |\n' "$(ms "$e_sh")" "$(ms "$b_sh")" "$(echo "$e_sh / $b_sh" | bc -l)"
printf '| sandbox, `true` (as nobody) | %s ms | %s ms | %.2f× |\n' "$(ms "$e_box")" "$(ms "$b_box")" "$(echo "$e_box / $b_box" | bc -l)"
