#!/usr/bin/env bash
# The project's test command: formatting, lints, every test, and a build of
# the fuzz targets. Fixtures are read from ../shared/fixtures (or $EXOS_FIXTURES).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo test --workspace --release
# The fuzz crate is outside the workspace (cargo-fuzz needs nightly to run it);
# make sure it still compiles against the current API.
cargo check -q --manifest-path fuzz/Cargo.toml
