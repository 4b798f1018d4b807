#!/usr/bin/env bash
# Prepares the benchmark trees and prints the directory of each one asked
# for. Trees of different shapes, so that no single one flatters a design:
#
#   python    /usr/lib/python3.11 as installed (large files: modules and
#             their compiled .pyc, shared objects; about 1,400 files)
#   boost     the Boost 1.74 headers from Debian's libboost1.74-dev (many
#             small files: about 14,000, half of them under 4 KiB)
#   userland  a Debian 12 userland extracted from ~75 packages (bash,
#             coreutils, python3.11, perl, git and what they need: binaries,
#             libraries, modules, docs, man pages, symlinks); it is also
#             what bench/startup.sh chroots into
#   include   /usr/include as installed (headers: about 8,000 files)
#   perldoc   Perl's library (/usr/share/perl, /usr/share/perl5) and
#             /usr/share/doc, copied together (small texts and
#             already-compressed changelogs: about 6,500 files)
#   locale    /usr/share/locale as installed (message catalogs, ~4,000)
#   cargo     the cargo registry's unpacked sources (~/.cargo/registry/src:
#             Rust source trees, ~14,000 files)
#   DIR       any directory, used as it is
#
#   bench/trees.sh NAME...        (downloads with apt-get; run apt-get update first)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$here/work/trees
debs=$here/work/debs
mkdir -p "$work" "$debs"

download() { (cd "$debs" && apt-get download -q "$@" >/dev/null 2>&1) || { echo "apt-get download $* failed (apt-get update?)" >&2; exit 1; }; }
extract() { # DEST PACKAGE...
  local dest=$1; shift
  for p in "$@"; do dpkg-deb -x "$(ls "$debs"/"${p}"_*.deb | head -1)" "$dest"; done
}

userland_packages() {
  # The programs and everything they depend on (Essential packages are not
  # listed as dependencies, so the shell and core tools are named).
  { echo bash coreutils dash grep sed findutils diffutils gzip tar util-linux base-files
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances python3.11 perl git | grep '^[a-z0-9]'; } | tr ' ' '\n' | sort -u
}

for name in "$@"; do
  case $name in
    python)
      [ -d /usr/lib/python3.11 ] || { echo "/usr/lib/python3.11 missing: apt-get install python3.11" >&2; exit 1; }
      echo /usr/lib/python3.11 ;;
    boost)
      dir=$work/boost
      if [ ! -e "$dir.done" ]; then
        rm -rf "$dir" "$dir.x" && download libboost1.74-dev
        extract "$dir.x" libboost1.74-dev
        mv "$dir.x/usr/include/boost" "$dir" && rm -rf "$dir.x" && touch "$dir.done"
      fi
      echo "$dir" ;;
    userland)
      dir=$work/userland
      if [ ! -e "$dir.done" ]; then
        rm -rf "$dir" && mapfile -t pkgs < <(userland_packages)
        download "${pkgs[@]}"
        mkdir -p "$dir" && extract "$dir" "${pkgs[@]}"
        # What debootstrap would add: merged /usr links where the packages
        # ship none.
        for d in bin sbin lib lib64; do
          if [ -d "$dir/$d" ] && [ ! -L "$dir/$d" ]; then cp -a "$dir/$d/." "$dir/usr/$d/" && rm -rf "${dir:?}/$d"; fi
          [ -e "$dir/$d" ] || ln -s "usr/$d" "$dir/$d"
        done
        mkdir -p "$dir/dev" "$dir/proc" "$dir/tmp"
        touch "$dir.done"
      fi
      echo "$dir" ;;
    include|locale)
      dir=/usr/$([ "$name" = include ] && echo include || echo share/locale)
      [ -d "$dir" ] || { echo "$dir missing" >&2; exit 1; }
      echo "$dir" ;;
    perldoc)
      dir=$work/perldoc
      if [ ! -e "$dir.done" ]; then
        rm -rf "$dir" && mkdir -p "$dir"
        cp -a /usr/share/perl /usr/share/perl5 /usr/share/doc "$dir/" && touch "$dir.done"
      fi
      echo "$dir" ;;
    cargo)
      dir=${CARGO_HOME:-$HOME/.cargo}/registry/src
      [ -d "$dir" ] || { echo "$dir missing: build the project once (cargo fetch)" >&2; exit 1; }
      echo "$dir" ;;
    *)
      [ -d "$name" ] || { echo "unknown tree $name (python, boost, userland, include, perldoc, locale, cargo or a directory)" >&2; exit 1; }
      (cd "$name" && pwd) ;;
  esac
done
