#!/usr/bin/env bash
# Downloads a Debian userland — bash, coreutils, python3, perl (and
# $USERLAND_EXTRA) and everything they depend on (the closure apt computes, without recommends) — as .deb
# files into DIR (default: bench/work/userland-debs). Real packages from
# Debian's archive, nothing installed.
set -euo pipefail
dir=${1:-$(dirname "$0")/../bench/work/userland-debs}
mkdir -p "$dir"
cd "$dir"
# USERLAND_EXTRA: more packages (and their closure), for a larger userland.
wanted="bash coreutils python3 perl libc-bin ${USERLAND_EXTRA:-}"
names=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances $wanted 2>/dev/null | grep '^[a-z0-9]' | sort -u)
real=()
for n in $names; do
  # Virtual packages have no candidate to download.
  apt-cache show --no-all-versions "$n" >/dev/null 2>&1 && real+=("$n")
done
if [ "$(ls ./*.deb 2>/dev/null | wc -l)" -lt "${#real[@]}" ]; then
  apt-get download -qq "${real[@]}" 2>/dev/null
fi
ls "$PWD"/*.deb
