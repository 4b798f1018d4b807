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
# import_deb: a small real .deb made by dpkg-deb (gzip members, so the
# fuzzer reaches the tarballs), and a version pair.
mkdir -p fuzz/seeds/import_deb
deb=$(mktemp -d)
mkdir -p "$deb/DEBIAN" "$deb/bin" "$deb/usr/share/doc/seed"
printf 'Package: seed-pkg\nVersion: 1:2.0~rc1-3\nArchitecture: all\nMaintainer: EXOS <exos@example.com>\nDepends: libc6 (>= 2.34), mawk | gawk\nProvides: seed-api (= 2.0)\nDescription: seed\n Seed package.\n' > "$deb/DEBIAN/control"
printf '#!/bin/sh\nupdate-alternatives --install /usr/bin/seed seed /bin/seed-tool 10\n' > "$deb/DEBIAN/postinst"
chmod 755 "$deb/DEBIAN/postinst"
printf '#!/bin/sh\necho seed\n' > "$deb/bin/seed-tool"
ln -s seed-tool "$deb/bin/seed-link"
echo doc > "$deb/usr/share/doc/seed/README"
SOURCE_DATE_EPOCH=0 dpkg-deb -Zgzip --root-owner-group --build "$deb" fuzz/seeds/import_deb/seed.deb >/dev/null
printf '1:2.0~rc1-3\n2.0-1+b1\n' > fuzz/seeds/import_deb/versions
rm -rf "$deb"
