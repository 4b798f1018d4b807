#!/usr/bin/env bash
# Lazy remote mounts over a slow link, against downloading everything first.
#
#   bench/lazy.sh [-r RUNS] [-d ONE_WAY_DELAY_MS] [-b MBIT] [-m "lazy prefetch full"] [-w "start read"]
#                 [-c "python3 -c pass"] [-p "MORE PACKAGES"]
#       (as root; default 3 runs, 10 ms each way = 20 ms round trip,
#        100 Mbit/s; medians)
#
# The imported Debian userland (scripts/userland.sh: bash, coreutils,
# python3, perl and their closure) is published with `exos repo index` and
# served by a real nginx on loopback, reached through bench/linkproxy.py:
# the link `tc netem delay D rate B` would make (this kernel has no netem:
# CONFIG_NET_SCH_NETEM is unset), D each way, B shared by every connection,
# one round trip per new connection. Each run starts from a fresh root, an
# empty block cache and dropped page caches; `exos repo add` is not timed.
#   * first use: `exos install` of every package by name (lazy: `--lazy`,
#     which fetches block maps, headers and TOCs; prefetch: the same, and
#     `exos mount --prefetch` completes the packages in the background;
#     full: downloads every package), `exos mount`, then
#     `exos run -- python3 -c pass`;
#   * full read: the same install and mount, then every file of the mount
#     read in path order (`find | sort | xargs cat`).
# Bytes are what nginx's access log says it sent.
# -p: a larger image — the userland and these Debian packages' closure
# (e.g. -p "build-essential python3-full openjdk-17-jre-headless" for
# issue 30's ≥ 300 MB image), downloaded into work/userland-plus-debs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
runs=3 delay=10 mbit=100 modes="lazy prefetch full" works="start read" cmd="python3 -c pass" extra=""
(cd "$top" && cargo build --release -q -p exos-cli)
while getopts r:d:b:m:w:c:p: o; do
  case $o in r) runs=$OPTARG ;; d) delay=$OPTARG ;; b) mbit=$OPTARG ;; c) cmd=$OPTARG ;; p) extra=$OPTARG ;;
    m) modes=$OPTARG ;; w) works=$OPTARG ;; *) exit 2 ;; esac
done
exos=$top/target/release/exos
work=$here/work/lazy
mnt=$work/mnt root=$work/root blocks=$work/blocks pub=$work/pub
umount -l "$mnt" 2>/dev/null || true
rm -rf "$work" && mkdir -p "$mnt" "$pub"
debdir=$here/work/userland${extra:+-plus}-debs
debs=$(USERLAND_EXTRA=$extra "$top/scripts/userland.sh" "$debdir" | wc -l)
"$exos" import-deb -q "$debdir"/*.deb -o "$pub"
"$exos" key generate -q -d "$work" repo
"$exos" repo index -q "$pub" -k "$work/repo.key"
names=$(python3 -c 'import json,sys; print(" ".join(p["manifest"]["name"] for p in json.load(open(sys.argv[1]))["packages"]))' "$pub/index.json")
count=$(echo "$names" | wc -w)
total=$(cat "$pub"/*.hpkg | wc -c)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) nport=$(free_port)
cat > "$work/nginx.conf" <<CONF
daemon off; user root; worker_processes 2; pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 256; }
http { log_format timed '\$remote_addr - - [\$time_local] "\$request" \$status \$body_bytes_sent "\$http_range" \$msec';
  access_log $work/access.log timed; sendfile on; client_body_temp_path $work; proxy_temp_path $work;
  fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:$nport; root $pub; } }
CONF
/usr/sbin/nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
python3 "$here/linkproxy.py" "$port" "$nport" "$delay" "$mbit" 2>/dev/null &
proxy_pid=$!
trap 'umount -l "$mnt" 2>/dev/null || true; kill $proxy_pid 2>/dev/null || true; kill -TERM $nginx_pid 2>/dev/null || true; wait $nginx_pid 2>/dev/null || true' EXIT
url=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf -o /dev/null "$url/index.json" && break; sleep 0.05; done
rtt=$(curl -s -o /dev/null -w '%{time_starttransfer}' "$url/root.json")
speed=$(curl -s -o /dev/null -w '%{speed_download}' "$url/$(ls "$pub" | grep -m1 python3.11-minimal)")

now() { date +%s.%N; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
sent() { awk '{s += $10} END {print s + 0}' "$work/access.log"; }
fresh() {
  "$exos" unmount "$mnt" 2>/dev/null || true
  rm -rf "$root" "$blocks"
  "$exos" init -q "$root"
  "$exos" repo add -q main "$url" -k "$work/repo.pub" -r "$root"
  : > "$work/access.log"
  cold
}
# One run: prints "install mount use bytes" (seconds, seconds, seconds, bytes).
run() { # MODE(lazy|prefetch|full) WORK(start|read)
  fresh
  local lazy=() pre=() t0 t1 t2 t3
  [ "$1" != full ] && lazy=(--lazy)
  [ "$1" = prefetch ] && pre=(--prefetch)
  t0=$(now)
  EXOS_BLOCK_CACHE=$blocks "$exos" install -q -y "${lazy[@]}" $names -r "$root"
  t1=$(now)
  local at_install
  at_install=$(sent)
  "$exos" mount "$root" "$mnt" --no-exec-cache --daemon --pid-file "$work/pid" --log-file "$work/log" \
    --block-cache "$blocks" --no-share "${pre[@]}" >/dev/null
  t2=$(now)
  case $2 in
    start) "$exos" run -r "$root" -- $cmd ;;
    read) (cd "$mnt/system" && find . -type f | sort | tr '\n' '\0' | xargs -0 cat > /dev/null) ;;
  esac
  t3=$(now)
  "$exos" unmount "$mnt"
  echo "$(echo "$t1 - $t0" | bc) $(echo "$t2 - $t1" | bc) $(echo "$t3 - $t2" | bc) $(sent) $at_install"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A res
for work_kind in $works; do
  for mode in $modes; do
    lines=()
    for _ in $(seq "$runs"); do lines+=("$(run "$mode" "$work_kind")"); done
    for col in 1 2 3 4 5; do
      res[$mode,$work_kind,$col]=$(printf '%s\n' "${lines[@]}" | awk -v c=$col '{print $c}' | median)
    done
    res[$mode,$work_kind,sum]=$(printf '%s\n' "${lines[@]}" | awk '{print $1 + $2 + $3}' | median)
  done
done
mib() { echo "scale=1; $1 / 1048576" | bc; }
echo "lazy mounts: $count packages ($debs .debs, $(mib "$total") MiB of .hpkg) over loopback nginx behind a ${delay} ms-each-way, ${mbit} Mbit/s link (first byte of a small file in a new connection: $(echo "$rtt * 1000 / 1" | bc) ms; one package downloads at $(echo "$speed * 8 / 1000000" | bc) Mbit/s); median of $runs runs"
echo "| work | mode | install | mount | work | total | fetched (by install) | of all |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for work_kind in $works; do
  for mode in $modes; do
    b=${res[$mode,$work_kind,4]}
    printf '| %s | %s | %.2f s | %.2f s | %.2f s | %.2f s | %s MiB (%s) | %.1f%% |\n' \
      "$([ $work_kind = start ] && echo "$cmd" || echo 'read every file')" "$mode" \
      "${res[$mode,$work_kind,1]}" "${res[$mode,$work_kind,2]}" "${res[$mode,$work_kind,3]}" \
      "${res[$mode,$work_kind,sum]}" "$(mib "$b")" "$(mib "${res[$mode,$work_kind,5]}")" \
      "$(echo "100 * $b / $total" | bc -l)"
  done
done
for mode in lazy prefetch; do
  for work_kind in $works; do
    if [ -n "${res[$mode,$work_kind,sum]:-}" ] && [ -n "${res[full,$work_kind,sum]:-}" ]; then
      printf '%s, %s ÷ download first: %.2f×\n' "$work_kind" "$mode" \
        "$(echo "${res[$mode,$work_kind,sum]} / ${res[full,$work_kind,sum]}" | bc -l)"
    fi
  done
done
