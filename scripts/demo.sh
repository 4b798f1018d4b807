#!/usr/bin/env bash
# The main job: set up, build the example packages, install them into an
# EXOS root, mount it with packagefs, and run a program straight out of the
# mount.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exos=$PWD/target/release/exos
out=${DEMO_DIR:-$(mktemp -d)}
root=$out/root
mnt=$out/mnt
mkdir -p "$out/packages" "$mnt"
for ex in examples/*/; do
  "$exos" build -q "$ex" -o "$out/packages/$(basename "$ex").hpkg"
done
echo "--- exos list $out/packages/hello.hpkg"
"$exos" list "$out/packages/hello.hpkg"
echo "--- exos init $root"
"$exos" init "$root"
echo "--- exos install: hello alone is refused (it needs greetings), both go in"
"$exos" install -r "$root" "$out/packages/hello.hpkg" || true
"$exos" install -r "$root" "$out/packages/hello.hpkg" "$out/packages/greetings.hpkg"
echo "--- exos mount $root $mnt"
"$exos" mount --daemon --pid-file "$out/exos.pid" --log-file "$out/exos.log" "$root" "$mnt"
trap '"$exos" unmount "$mnt" 2>/dev/null || true' EXIT
"$exos" status "$mnt"
echo "--- $mnt/merged:"
ls -l "$mnt/merged" "$mnt/merged/bin"
echo "--- running hello straight from the mounted package"
"$mnt/merged/bin/hello"
