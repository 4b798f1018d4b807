#!/usr/bin/env bash
# The main job: set up, build the example packages, inspect them, and run a
# program straight out of a package. (Until packagefs lands, "out of a
# package" means extracted to a scratch directory; see README.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exos=target/release/exos
out=${DEMO_DIR:-$(mktemp -d)}
mkdir -p "$out/packages"
for ex in examples/*/; do
  "$exos" build "$ex" -o "$out/packages/$(basename "$ex").hpkg"
done
echo "--- exos list $out/packages/hello.hpkg"
"$exos" list "$out/packages/hello.hpkg"
echo "--- exos info $out/packages/greetings.hpkg"
"$exos" info "$out/packages/greetings.hpkg"
rm -rf "$out/root"
for p in "$out"/packages/*.hpkg; do "$exos" extract -q "$p" "$out/root/$(basename "$p" .hpkg)"; done
echo "--- running hello from the package contents"
GREETINGS_DIR="$out/root/greetings/share/greetings" "$out/root/hello/bin/hello"
