#!/usr/bin/env bash
# Installs exos from target/release under PREFIX (inside DESTDIR, for a
# package): the binaries, the manual pages, bash/zsh/fish completions, the
# docs, systemd's exos-mount@.service and, when PREFIX is /usr, the
# initramfs-tools hook (initramfs-tools reads /usr/share/initramfs-tools;
# for other prefixes copy contrib/initramfs-tools into /etc/initramfs-tools).
# EXOS_BIN_DIR: where the binaries are (default target/release).
# Usage: scripts/install.sh PREFIX [DESTDIR]. scripts/setup.sh and
# scripts/exos-package.sh run it.
set -euo pipefail
prefix=${1:?usage: install.sh PREFIX [DESTDIR]}
dest=${2:-}${prefix}
cd "$(dirname "$0")/.."
bin=${EXOS_BIN_DIR:-target/release}
install -D -m 755 "$bin/exos" "$dest/bin/exos"
install -D -m 755 "$bin/exos-mountd" "$dest/bin/exos-mountd"
# Not for users: systemd-shutdown runs it from /run/initramfs.
install -D -m 755 "$bin/exos-shutdown" "$dest/lib/exos/exos-shutdown"
# The release build keeps line tables for backtraces: 90 MB a binary,
# 14 MB without them (function names stay).
if command -v strip >/dev/null; then
  strip --strip-debug "$dest/bin/exos" "$dest/bin/exos-mountd" "$dest/lib/exos/exos-shutdown"
fi
mkdir -p "$dest/share/man/man1" "$dest/share/bash-completion/completions" \
  "$dest/share/zsh/site-functions" "$dest/share/fish/vendor_completions.d"
"$bin/exos" -q manual --dir "$dest/share/man/man1"
"$bin/exos" completions bash > "$dest/share/bash-completion/completions/exos"
"$bin/exos" completions zsh > "$dest/share/zsh/site-functions/_exos"
"$bin/exos" completions fish > "$dest/share/fish/vendor_completions.d/exos.fish"
install -D -m 644 docs/json.md "$dest/share/doc/exos/json.md"
install -D -m 644 docs/boot.md "$dest/share/doc/exos/boot.md"
install -D -m 644 README.md "$dest/share/doc/exos/README.md"
# systemd's unit (searched under /usr/local/lib/systemd/system too), its
# ExecStart pointing at this prefix.
mkdir -p "$dest/lib/systemd/system"
sed "s|/usr/local/bin/|$prefix/bin/|" contrib/systemd/exos-mount@.service \
  > "$dest/lib/systemd/system/exos-mount@.service"
if [ "$prefix" = /usr ]; then
  install -D -m 755 contrib/initramfs-tools/hooks/exos "$dest/share/initramfs-tools/hooks/exos"
  install -D -m 755 contrib/initramfs-tools/scripts/local-bottom/exos \
    "$dest/share/initramfs-tools/scripts/local-bottom/exos"
fi
