#!/usr/bin/env bash
# The main job: set up; import a real Debian userland (bash, coreutils,
# python3, perl and their dependencies, downloaded with apt) as EXOS
# packages, install it into an EXOS root, mount it, and run a shell in a
# view of it (`exos run`: its own mount namespace, no chroot or binds by
# hand) that runs bash, coreutils, python3 and perl straight from the mounted
# packages; then the small example packages, built from examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exos=$PWD/target/release/exos
out=${DEMO_DIR:-$(mktemp -d)}
root=$out/root
mnt=$out/mnt
mkdir -p "$out/packages" "$mnt"

echo "--- a Debian userland: download, import, install, mount, exos run"
debs=$(scripts/userland.sh "$out/debs" | wc -l)
"$exos" import-deb -q "$out"/debs/*.deb -o "$out/userland"
echo "imported $debs Debian packages"
"$exos" init "$out/userland-root"
"$exos" install -q -r "$out/userland-root" "$out"/userland/*.hpkg
mkdir -p "$out/userland-mnt"
"$exos" mount --daemon --pid-file "$out/userland.pid" --log-file "$out/userland.log" "$out/userland-root" "$out/userland-mnt"
trap '"$exos" unmount "$out/userland-mnt" 2>/dev/null || true' EXIT
"$exos" run -r "$out/userland-root" -- bash -c '
  echo "bash $BASH_VERSION from $(readlink -f /proc/$$/exe)"
  ls --version | head -1
  python3 -c "import sys, sqlite3; print(\"python\", sys.version.split()[0], \"sqlite\", sqlite3.sqlite_version)"
  perl -e "print qq(perl \$^V\n)"
  echo "/usr/bin/bash is on a $(stat -f -c %T /usr/bin/bash) file system (packagefs)"'
"$exos" unmount "$out/userland-mnt"
trap - EXIT

echo "--- the example packages"
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
