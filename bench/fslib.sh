# Shared by bench/packagefs.sh, bench/parallel.sh and bench/startup.sh:
# images of one tree for exos, squashfuse, kernel squashfs and kernel
# erofs, and mounting them from cold caches. Source it with $here, $root
# and $work set.
exos=$root/target/release/exos
for t in mksquashfs squashfuse mkfs.erofs fusermount3 bc; do
  command -v $t >/dev/null || { echo "$t missing: apt-get install squashfs-tools squashfuse erofs-utils fuse3 bc" >&2; exit 1; }
done
(cd "$root" && cargo build --release -q -p exos-cli)

cleanup() {
  for m in "$work"/mnt/* "$work"/many/mnt; do mountpoint -q "$m" 2>/dev/null && umount "$m" 2>/dev/null || true; done
}
trap 'cleanup; restore_uring' EXIT

dir_of() { case $1 in exos|exos-enc|exos-dev|exos-x|exos-xp) echo "$work/mnt/$1/system" ;; *) echo "$work/mnt/$1" ;; esac; }
mount_tool() {
  case $1 in
    # exos serves what the package holds: no exec cache (on by default),
    # which would serve the tree's programs from plain files after a run.
    exos) "$exos" mount -q --no-exec-cache --daemon --pid-file "$work/exos.pid" "$work/root" "$work/mnt/exos" 2>/dev/null ;;
    # The same mount kept to /dev/fuse (no FUSE over io_uring).
    exos-dev) "$exos" mount -q --no-exec-cache --io-uring never --daemon --pid-file "$work/exos-dev.pid" "$work/root" "$work/mnt/exos-dev" 2>/dev/null ;;
    # The same package sealed with a package key (prepare_tree makes it).
    exos-enc) "$exos" mount -q --no-exec-cache --daemon --pid-file "$work/exos-enc.pid" "$work/root-enc" "$work/mnt/exos-enc" \
      --key "$work/bench.pkey" 2>/dev/null ;;
    # With the exec cache in $work/exec-cache, its programs' reads answered
    # from there (exos-x) or served with FUSE passthrough (exos-xp).
    exos-x) "$exos" mount -q --daemon --pid-file "$work/exos-x.pid" --exec-cache "$work/exec-cache" "$work/root" "$work/mnt/exos-x" 2>/dev/null ;;
    exos-xp) "$exos" mount -q --daemon --pid-file "$work/exos-xp.pid" --exec-cache "$work/exec-cache" --exec-cache-passthrough \
      "$work/root" "$work/mnt/exos-xp" 2>/dev/null ;;
    squashfuse) squashfuse "$work/t.sqfs" "$work/mnt/squashfuse" ;;
    squashfs) mount -t squashfs -o loop,ro "$work/t.sqfs" "$work/mnt/squashfs" ;;
    erofs) mount -t erofs -o loop,ro "$work/t.erofs" "$work/mnt/erofs" ;;
  esac
}
umount_tool() {
  umount "$work/mnt/$1"
  case $1 in exos*) while [ -e "$work/$1.pid" ]; do sleep 0.01; done ;; esac
}
fresh() { umount_tool "$1" 2>/dev/null || true; sync; echo 3 > /proc/sys/vm/drop_caches; mount_tool "$1"; }
# A mount with the exec cache, once its content digests (which name the
# cache's entries) are computed, then caches dropped: a machine booted with
# the mount up, before anything ran.
fresh_with_cache() {
  umount_tool "$1" 2>/dev/null || true; mount_tool "$1"
  for _ in $(seq 300); do
    "$exos" status --json "$work/mnt/$1" | python3 -c 'import json,sys; s=json.load(sys.stdin).get("sharing") or {}; sys.exit(s.get("packages_digested", -1) != s.get("packages"))' && break
    sleep 0.05
  done
  sync; echo 3 > /proc/sys/vm/drop_caches
}
now() { date +%s.%N; }
timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; }
# Lists hold paths relative to the tree, NUL-separated.
read_list() { (cd "$1" && xargs -0 cat < "$2"); }
walk() { find "$1" -path "$1/.packages" -prune -o -printf '%s %m %T@ %p\n'; }
lslr() { ls -lR "$1"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
tools=(exos squashfuse squashfs erofs)

# FUSE over io_uring is off in kernels by default; scripts/setup.sh turns it
# on, and so does every benchmark for its run (restored at exit), so exos is
# measured as set up. The transport in use is printed with the results.
uring_knob=/sys/module/fuse/parameters/enable_uring
uring_was=
if [ -w "$uring_knob" ]; then uring_was=$(cat "$uring_knob"); echo 1 > "$uring_knob"; fi
restore_uring() { [ -z "$uring_was" ] || { [ "$uring_was" = Y ] && echo 1 || echo 0; } > "$uring_knob"; }
transport_note() { # what exos mounts use
  if [ "$(cat "$uring_knob" 2>/dev/null)" = Y ]; then echo "FUSE over io_uring"; else echo "/dev/fuse"; fi
}

# Builds the four images of tree NAME (see bench/trees.sh) under $work,
# with the file lists sorted.list and shuffled.list (NUL-separated paths
# relative to the tree), and sets $src, $files, $small, $bytes.
prepare_tree() { # NAME
  src=$("$here/trees.sh" "$1")
  cleanup
  rm -rf "$work" && mkdir -p "$work"/{mnt/exos,mnt/exos-dev,mnt/exos-x,mnt/exos-xp,mnt/squashfuse,mnt/squashfs,mnt/erofs,root/system/packages}
  cp -a "$src" "$work/tree"
  files=$(find "$work/tree" -type f | wc -l)
  bytes=$(du -sb "$work/tree" | cut -f1)
  small=$(find "$work/tree" -type f -size -4k | wc -l)
  (cd "$work/tree" && find . -type f -print0 | sort -z > "$work/sorted.list")
  python3 -c 'import random,sys; p=open(sys.argv[1],"rb").read().split(b"\0")[:-1]; random.Random(42).shuffle(p); open(sys.argv[2],"wb").write(b"".join(x+b"\0" for x in p))' \
    "$work/sorted.list" "$work/shuffled.list"
  mksquashfs "$work/tree" "$work/t.sqfs" -comp gzip -noappend -quiet -no-progress >/dev/null
  mkfs.erofs -zlz4hc "$work/t.erofs" "$work/tree" >/dev/null 2>&1
  # The package's manifest.json is hidden from the mounted view, so all
  # four show the same files.
  echo '{"name":"benchtree","version":"1.0","summary":"benchmark tree","license":"MIT","copyright":"benchmark"}' > "$work/tree/manifest.json"
  "$exos" build -q -c "${exos_compression:-zlib}" "$work/tree" -o "$work/root/system/packages/tree.hpkg"
  rm "$work/tree/manifest.json"
  mkdir -p "$work/mnt/exos-enc" "$work/root-enc/system/packages"
  "$exos" key generate -q bench --encryption -d "$work"
  "$exos" encrypt -q "$work/root/system/packages/tree.hpkg" -o "$work/root-enc/system/packages/tree.hpkg" \
    --key "$work/bench.pkey"

}
