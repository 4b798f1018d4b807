#!/usr/bin/env bash
# Installs what EXOS needs on a fresh Debian 12 machine (run as root) and
# builds the release binary. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(build-essential pkg-config zlib1g-dev fuse3 attr squashfs-tools squashfuse erofs-utils python3-solv time bc diffutils minisign age nginx bubblewrap curl util-linux util-linux-extra dpkg-dev fish zsh systemd systemd-container qemu-system-x86 linux-image-amd64 initramfs-tools)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust stable (rustup)" >&2; exit 1; }
# The fuzzers (scripts/fuzz.sh, part of the tests) need nightly and cargo-fuzz.
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "setup: installing Rust nightly (for cargo fuzz)"
  rustup toolchain install nightly --profile minimal >/dev/null
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "setup: installing cargo-fuzz"
  cargo install -q --locked cargo-fuzz
fi
# FUSE over io_uring (Linux 6.14+) is off in the kernel by default; exos
# mounts use it when it is on (`exos mount --io-uring`). Root turns it on
# for the running kernel; it does not change how other FUSE file systems
# work (each daemon asks for it at FUSE_INIT).
uring=/sys/module/fuse/parameters/enable_uring
if [ -f "$uring" ] && [ "$(cat "$uring")" != Y ]; then
  if [ -w "$uring" ] && echo 1 > "$uring" 2>/dev/null; then
    echo "setup: turned on FUSE over io_uring ($uring; boot with fuse.enable_uring=1 to keep it)"
  else
    echo "setup: FUSE over io_uring is off ($uring) and this user cannot turn it on: mounts use /dev/fuse"
  fi
fi
cargo build --release -q -p exos-cli
echo "setup: built target/release/exos, exos-mountd and exos-shutdown"

# Install the binaries, the manual page and shell completions under
# $EXOS_PREFIX (default /usr/local; EXOS_PREFIX= skips this step).
prefix=${EXOS_PREFIX-/usr/local}
if [ -n "$prefix" ]; then
  if [ -w "$(dirname "$prefix")" ] || [ -w "$prefix" ]; then
    scripts/install.sh "$prefix"
    echo "setup: installed exos, exos-mountd, exos-shutdown, man page (man exos), bash/zsh/fish completions, exos-mount@.service and docs (share/doc/exos) under $prefix"
  else
    echo "setup: $prefix is not writable; not installing (set EXOS_PREFIX=DIR, or run as root)"
  fi
fi
