#!/usr/bin/env bash
# The project's test command: formatting, lints, every test, then every fuzz
# target for 60 s on the committed seeds (a crash fails). Fixtures are read
# from ../shared/fixtures (or $EXOS_FIXTURES). Run scripts/setup.sh first
# on a new machine (it installs what this needs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo test --workspace --release
# The fuzz crate is outside the workspace (cargo-fuzz needs nightly).
scripts/fuzz.sh "${EXOS_FUZZ_SECONDS:-60}"
