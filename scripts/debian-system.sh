#!/usr/bin/env bash
# A bootable Debian 12 package set, as EXOS packages in DIR/packages:
# every Essential and `Priority: required` package, systemd as init
# (systemd-sysv) and udev (for VMs), plus any PACKAGE named, with the
# closure of their dependencies — every alternative of every dependency, so
# that `exos install` chooses one per set (libsystemd0, not libelogind0;
# mawk, not gawk). DIR/names lists what to install by name:
#
#   scripts/debian-system.sh /var/tmp/debian
#   exos init root
#   exos install -r root -a /var/tmp/debian/packages $(cat /var/tmp/debian/names)
#   exos boot -r root
#
# Real packages from the configured Debian archive (apt-get download),
# nothing installed on this machine. Usage: debian-system.sh DIR [PACKAGE...]
set -euo pipefail
dir=${1:?usage: debian-system.sh DIR [PACKAGE...]}
shift
exos=${EXOS:-exos}
mkdir -p "$dir/debs" "$dir/packages"
# What a Debian system is made of, as apt's own records say.
required=$(apt-cache dumpavail | awk -v RS= '/\nPriority: required/ || /\nEssential: yes/ {
  match($0, /^Package: [^\n]+/); print substr($0, 10, RLENGTH - 9) }' | sort -u)
wanted="$required systemd systemd-sysv udev $*"
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances $wanted 2>/dev/null | grep '^[a-z0-9]' | sort -u)
# Virtual packages have no candidate to download.
real=$(apt-cache show --no-all-versions $closure 2>/dev/null | awk '/^Package: /{print $2}' | sort -u)
(cd "$dir/debs" && apt-get download -qq $real 2>/dev/null)
"$exos" import-deb -q -o "$dir/packages" "$dir"/debs/*.deb
# EXOS names write Debian's `-` as `_`; usr_links holds /bin, /lib, …
{ for n in $wanted; do echo "${n//-/_}"; done; echo usr_links; } | sort -u > "$dir/names"
echo "$dir/packages: $(ls "$dir/packages" | wc -l) packages; install $(wc -l < "$dir/names") of them by name (see $dir/names)"
