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

# What maintainer scripts would have written that a booted system needs,
# as one more package, debian_config (its /etc is factory defaults like
# every package's): PAM's /etc/pam.d/common-*, which libpam-runtime's
# postinst makes with pam-auth-update from every /usr/share/pam-configs
# file. Run on a staging tree of the packages that have such files, with a
# debconf database of its own (the host's is not touched).
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/root/etc/pam.d" "$stage/root/var/lib/pam" "$stage/pkg/etc/pam.d" "$stage/pkg/var/lib"
for deb in "$dir"/debs/*.deb; do
  # (grep reads it all: -q would stop early and, under pipefail, fail the
  # listing with SIGPIPE.)
  if dpkg-deb -c "$deb" | grep '/usr/share/pam-configs/.' >/dev/null; then
    dpkg-deb -x "$deb" "$stage/root"
  fi
done
printf 'Config: config\nTemplates: templates\n\nName: config\nDriver: File\nFilename: %s\n\nName: templates\nDriver: File\nFilename: %s\n' \
  "$stage/config.dat" "$stage/templates.dat" > "$stage/debconf.conf"
# (pam-auth-update --root reads its templates from the host's
# /usr/share/pam: this copy reads the staged ones.)
sed "s|'/usr/share/pam/common-'|'$stage/root/usr/share/pam/common-'|" \
  "$stage/root/usr/sbin/pam-auth-update" > "$stage/pam-auth-update"
chmod +x "$stage/pam-auth-update"
DEBCONF_SYSTEMRC=$stage/debconf.conf DEBIAN_FRONTEND=noninteractive \
  "$stage/pam-auth-update" --root "$stage/root" --package --force
cp "$stage"/root/etc/pam.d/common-* "$stage/pkg/etc/pam.d/"
cp -r "$stage/root/var/lib/pam" "$stage/pkg/var/lib/"
cat > "$stage/pkg/manifest.json" <<'JSON'
{"name": "debian_config", "version": "1", "summary": "What Debian's maintainer scripts write that a booted system needs: PAM's /etc/pam.d/common-* (pam-auth-update)", "license": "MIT", "copyright": "2026 The EXOS authors", "requires": ["libpam_runtime"]}
JSON
"$exos" build -q "$stage/pkg" -o "$dir/packages/debian_config_1_all.hpkg"

# EXOS names write Debian's `-` as `_`; usr_links holds /bin, /lib, …
{ for n in $wanted; do echo "${n//-/_}"; done; echo usr_links; echo debian_config; } | sort -u > "$dir/names"
echo "$dir/packages: $(ls "$dir/packages" | wc -l) packages; install $(wc -l < "$dir/names") of them by name (see $dir/names)"
