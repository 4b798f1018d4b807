#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60) on a copy of
# the committed seed corpus (fuzz/seeds/<target>); a crash, a leak, an
# allocation over 256 MB or a process over 2 GB fails the run. Prints the
# executions of each target. Needs nightly Rust and cargo-fuzz
# (scripts/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo +nightly fuzz build -O >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
printf '%-22s %12s %10s\n' target executions exec/s
status=0
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$work/$target"
  cp -r "fuzz/seeds/$target/." "$work/$target/" 2>/dev/null || true
  log="$work/$target.log"
  if ! cargo +nightly fuzz run -O "$target" "$work/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=256 \
      -print_final_stats=1 >"$log" 2>&1; then
    echo "fuzz: $target FAILED; its log:" >&2
    tail -n 60 "$log" >&2
    status=1
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  printf '%-22s %12s %10s\n' "$target" "$runs" "$rate"
done
exit $status
