#!/usr/bin/env bash
# The main job: set up, build the example packages into an EXOS root, mount
# them with packagefs, and run a program straight out of the mount.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exos=$PWD/target/release/exos
out=${DEMO_DIR:-$(mktemp -d)}
root=$out/root
mnt=$out/mnt
mkdir -p "$root/system/packages" "$root/common/packages" "$root/user/packages" "$mnt"
for ex in examples/*/; do
  "$exos" build -q "$ex" -o "$root/system/packages/$(basename "$ex").hpkg"
done
echo "--- exos list $root/system/packages/hello.hpkg"
"$exos" list "$root/system/packages/hello.hpkg"
echo "--- exos resolve: what installing hello needs"
"$exos" resolve -a "$root/system/packages" install hello
echo "--- exos mount $root $mnt"
"$exos" mount --daemon --pid-file "$out/exos.pid" --log-file "$out/exos.log" "$root" "$mnt"
trap '"$exos" unmount "$mnt" 2>/dev/null || true' EXIT
"$exos" status "$mnt"
echo "--- $mnt/merged:"
ls -l "$mnt/merged" "$mnt/merged/bin"
echo "--- running hello straight from the mounted package"
"$mnt/merged/bin/hello"
