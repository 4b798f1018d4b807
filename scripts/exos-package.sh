#!/usr/bin/env bash
# Packs exos itself as an EXOS package, for systems that boot from EXOS and
# manage themselves from inside (docs/boot.md): OUTDIR/exos_VERSION_ARCH.hpkg
# holding what scripts/install.sh installs under /usr — exos, exos-mountd,
# exos-shutdown, the manual, completions, the systemd unit and the
# initramfs-tools hook. EXOS_BIN_DIR: where the binaries are (default
# target/release). Usage: scripts/exos-package.sh OUTDIR
set -euo pipefail
out=${1:?usage: exos-package.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
exos=${EXOS_BIN_DIR:-target/release}/exos
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
scripts/install.sh /usr "$stage/tree"
version=$("$exos" --version | awk '{print $2}')
arch=$(uname -m)
cat > "$stage/tree/manifest.json" <<JSON
{"name": "exos", "version": "$version", "architecture": "$arch",
 "summary": "EXOS packages: install, upgrade, roll back and mount (the system's own copy, for systems that boot from EXOS)",
 "license": "MIT OR Apache-2.0", "copyright": "2026 The EXOS authors",
 "provides": ["cmd:exos = $version"]}
JSON
"$exos" build -q "$stage/tree" -o "$out/exos_${version}_$arch.hpkg"
echo "$out/exos_${version}_$arch.hpkg"
