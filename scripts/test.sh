#!/usr/bin/env bash
# The project's test command: setup (idempotent), formatting, lints, every
# test (the README's examples included), the demo, then every fuzz target
# for 60 s on the committed seeds (a crash fails). Fixtures are read from
# ../shared/fixtures (or $EXOS_FIXTURES).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all --check
cargo clippy --all-targets --all-features -- -D warnings
# clap checks command-line definitions only in debug builds.
cargo test -p exos-cli --bins the_command_line_is_well_formed
# The fuser EXOS carries (vendor/fuser/EXOS.md) is outside the workspace:
# its own unit tests, the io_uring request rebuilding's among them.
CARGO_TARGET_DIR=target/vendor-fuser cargo test -q --locked --manifest-path vendor/fuser/Cargo.toml --lib
# Crash points (EXOS_CRASH_AT) exist only in this test build of exos.
cargo test --workspace --release --features exos-cli/crash-points
# The main job, as the README's first command runs it.
demo=$(mktemp -d)
DEMO_DIR=$demo scripts/demo.sh >"$demo.log" 2>&1 || { cat "$demo.log" >&2; exit 1; }
grep -q "Hello from a package!" "$demo.log" || { cat "$demo.log" >&2; echo "demo: no greeting" >&2; exit 1; }
for want in "^bash 5" "^ls (GNU coreutils)" "^python 3" "^perl v5" "on a fuse"; do
  grep -q "$want" "$demo.log" || { cat "$demo.log" >&2; echo "demo: no '$want' from the Debian userland" >&2; exit 1; }
done
rm -rf "$demo" "$demo.log"
echo "demo: ok"
# The fuzz crate is outside the workspace (cargo-fuzz needs nightly).
scripts/fuzz.sh "${EXOS_FUZZ_SECONDS:-60}"
