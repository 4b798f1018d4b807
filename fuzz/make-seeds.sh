#!/usr/bin/env bash
# Regenerates fuzz/seeds/ (the committed seed corpus, one directory per
# target) from ../shared/fixtures, the small cases of crates/exos-hostile and
# the example manifests. Run after changing any of them.
set -euo pipefail
cd "$(dirname "$0")/.."
fixtures=${EXOS_FIXTURES:-../shared/fixtures}
rm -rf fuzz/seeds
cargo run -q --release -p exos-hostile -- seeds "$fixtures" fuzz/seeds
find fuzz/seeds -type f | sort | xargs ls -l | awk '{print $5, $9}'
