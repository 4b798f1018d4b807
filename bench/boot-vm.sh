#!/usr/bin/env bash
# Boot to multi-user.target in a VM (qemu -accel tcg, this machine's
# Debian kernel): an EXOS root on the disk (the initramfs hook of
# contrib/initramfs-tools, /usr from the packages) against the same state's
# files extracted onto the disk (an ordinary initramfs, an ordinary root).
# Same kernel, same qemu, same run; medians of RUNS (default 3). Then the
# time to switch to another state from inside the booted system (`exos
# rollback`) and reboot into it: the switch, the shutdown, the next boot.
# Times are wall clock on the host (every console line is stamped as qemu
# prints it). Usage: bench/boot-vm.sh ROOT   (a root made as docs/boot.md
# shows; it is copied, not changed)
set -euo pipefail
src=$(realpath "${1:?usage: bench/boot-vm.sh ROOT}")
runs=${RUNS:-3}
exos=$(command -v "${EXOS:-exos}")
kernel=$(ls /boot/vmlinuz-* | sort | tail -1)
version=${kernel#/boot/vmlinuz-}
work=$(mktemp -d /var/tmp/exos-bootvm.XXXXXX)
trap 'rm -rf "$work"' EXIT
here=$(cd "$(dirname "$0")/.." && pwd)
ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# What runs once the machine is up: says so on the console (and, asked
# with exos.bench=switch, times a switch to the state before), then powers
# off.
up_unit() {
  local etc=$1
  mkdir -p "$etc/systemd/system/multi-user.target.wants"
  cat >"$etc/exos-bench-up" <<'EOF'
#!/bin/sh
echo "EXOS-BENCH-UP state=$(cat /run/exos/booted-state 2>/dev/null || echo none)"
if grep -q exos.bench=switch /proc/cmdline; then
  s=$(date +%s%N); exos rollback -q; e=$(date +%s%N)
  echo "EXOS-BENCH-SWITCHED $(( (e - s) / 1000000 ))"
fi
echo "EXOS-BENCH-POWEROFF"
EOF
  printf '[Unit]\nAfter=multi-user.target\n[Service]\nType=oneshot\nStandardOutput=tty\nTTYPath=/dev/ttyS0\nExecStart=/bin/sh /etc/exos-bench-up\nExecStopPost=/bin/systemctl poweroff\n' \
    >"$etc/systemd/system/exos-bench-up.service"
  ln -sf ../exos-bench-up.service "$etc/systemd/system/multi-user.target.wants/"
}

# The EXOS disk: the machine's /etc and the root at /exos, with one more
# state (a small package and exos installed) so that a rollback inside lands on a
# bootable state.
mkdir -p "$work/exos-disk/etc" "$work/hello/usr/bin"
cp -a "$src" "$work/exos-disk/exos"
rm -rf "$work/exos-disk/exos/data/machine" "$work/exos-disk/exos/data/boot-verdict"
printf '#!/bin/sh\necho hello\n' >"$work/hello/usr/bin/exos-bench-hello"
chmod 755 "$work/hello/usr/bin/exos-bench-hello"
echo '{"name": "exos_bench_hello", "version": "1", "summary": "bench", "license": "MIT", "copyright": "2026 The EXOS authors"}' >"$work/hello/manifest.json"
"$exos" build -q "$work/hello" -o "$work/hello.hpkg"
# exos itself, for the switch from inside (if the root lacks it).
pkgs=("$work/hello.hpkg")
if ! "$exos" info -q -r "$src" exos >/dev/null 2>&1; then
  pkgs+=("$(EXOS_BIN_DIR=$(dirname "$exos") "$here/scripts/exos-package.sh" "$work/pkg")")
fi
"$exos" install -q -y -r "$work/exos-disk/exos" "${pkgs[@]}"
up_unit "$work/exos-disk/etc"

# The extracted disk: the current state's merged view, copied.
mkdir -p "$work/mnt" "$work/tree-disk"
"$exos" mount "$src" "$work/mnt" --daemon --pid-file "$work/pid" -q
cp -a "$work/mnt/merged-system/." "$work/tree-disk/"
"$exos" unmount -q "$work/mnt"
for l in bin sbin lib lib64; do [ -e "$work/tree-disk/$l" ] || ln -s "usr/$l" "$work/tree-disk/$l"; done
mkdir -p "$work/tree-disk/"{dev,proc,sys,run,tmp,root}
up_unit "$work/tree-disk/etc"

for d in exos tree; do
  mkfs.ext4 -q -F -d "$work/$d-disk" "$work/$d.img" 1G
done
# Both initramfs images from this machine's configuration; the EXOS one
# with the hook and script.
cp -r /etc/initramfs-tools "$work/conf-tree"
cp -r /etc/initramfs-tools "$work/conf-exos"
mkdir -p "$work/conf-exos/scripts/local-bottom"
cp "$here/contrib/initramfs-tools/hooks/exos" "$work/conf-exos/hooks/"
cp "$here/contrib/initramfs-tools/scripts/local-bottom/exos" "$work/conf-exos/scripts/local-bottom/"
for d in exos tree; do
  EXOS_BIN_DIR=$(dirname "$exos") mkinitramfs -d "$work/conf-$d" -o "$work/$d.initrd" "$version"
done

# Boots disk $1 with more kernel arguments $2; prints "up shutdown switch"
# in ms (up: qemu start to the machine's first line of the unit; shutdown:
# from its last line to qemu's exit; switch: the rollback inside, or -).
vm() {
  local disk=$1 more=$2 log=$work/console.$RANDOM start end
  start=$(ms)
  timeout 600 qemu-system-x86_64 -accel tcg -m 1536 -smp 2 -kernel "$kernel" \
    -initrd "$work/$disk.initrd" -drive "file=$work/$disk.img,format=raw,if=virtio" \
    -append "root=/dev/vda rw console=ttyS0 systemd.firstboot=off panic=1 $more" \
    -display none -no-reboot -net none -serial stdio </dev/null 2>/dev/null |
    while IFS= read -r line; do echo "$(ms) ${line%$'\r'}"; done >"$log"
  end=$(ms)
  local up off sw
  up=$(awk '/EXOS-BENCH-UP/ {print $1; exit}' "$log")
  off=$(awk '/EXOS-BENCH-POWEROFF/ {print $1; exit}' "$log")
  sw=$(awk '/EXOS-BENCH-SWITCHED/ {print $3; exit}' "$log")
  if [ -z "$up" ] || [ -z "$off" ]; then
    echo "the $disk machine did not come up; its console:" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "$((up - start)) $((end - off)) ${sw:--}"
}

exos_up=(); tree_up=(); exos_off=(); tree_off=()
for i in $(seq "$runs"); do
  read -r u o _ < <(vm exos "exos.root=/exos")
  exos_up+=("$u"); exos_off+=("$o")
  read -r u o _ < <(vm tree "")
  tree_up+=("$u"); tree_off+=("$o")
done
# Switch and reboot: a rollback from inside, then the boot of the new state.
sw_times=(); total=()
for i in $(seq "$runs"); do
  read -r _ o s < <(vm exos "exos.root=/exos exos.bench=switch")
  read -r u _ _ < <(vm exos "exos.root=/exos")
  sw_times+=("$s"); total+=("$((s + o + u))")
done
m() { printf '%s\n' "$@" | median; }
eu=$(m "${exos_up[@]}"); tu=$(m "${tree_up[@]}")
eo=$(m "${exos_off[@]}"); to=$(m "${tree_off[@]}")
echo "VM boot to multi-user, ms: exos $eu, extracted $tu, ratio $(echo "scale=2; $eu / $tu" | bc) (runs: ${exos_up[*]} / ${tree_up[*]})"
echo "VM shutdown (last line to power-off), ms: exos $eo, extracted $to (runs: ${exos_off[*]} / ${tree_off[*]})"
echo "switch state inside (exos rollback), ms: $(m "${sw_times[@]}") (runs: ${sw_times[*]})"
echo "switch + shutdown + boot of the new state, ms: $(m "${total[@]}") (runs: ${total[*]})"
pk=$(du -sb "$src/system/packages" | cut -f1)
tr=$(du -sb --exclude=etc/exos-bench-up "$work/tree-disk" | cut -f1)
echo "system bytes: packages $pk, extracted $tr, ratio $(echo "scale=2; $pk / $tr" | bc)"
