#!/usr/bin/env bash
# Installing from a repository over HTTP, against the floor and apt.
#
#   bench/repo.sh [-r RUNS]        (as root; needs nginx, curl, dpkg-dev)
#
# The Debian packages bench/trees.sh downloads for its userland (about 75
# real .debs) are converted to exos packages (each .deb's files, a
# manifest with its name; dependencies left out: every package is
# installed anyway), published with `exos repo index`, and served with the
# .debs (and an apt `Packages` index made by dpkg-scanpackages) by one
# nginx on loopback. Timed, each from cold caches and empty targets:
#   * exos: `exos install` of every package by name into a fresh root
#     (resolve, download 4 at a time, verify size and SHA-256 against the
#     signed index, install as one state; `repo add` is not timed);
#   * floor: `curl --parallel` of the same .hpkg files, then `sha256sum`;
#   * apt: `apt-get download` of the same .debs from the apt repository
#     (own sources list and lists directory; `apt-get update` not timed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=5
while getopts r: o; do case $o in r) runs=$OPTARG ;; *) exit 2 ;; esac; done
work=$here/work/repo
exos=$root/target/release/exos
(cd "$root" && cargo build --release -q -p exos-cli)
"$here/trees.sh" userland >/dev/null
debs=$here/work/debs

rm -rf "$work" && mkdir -p "$work/www/exos" "$work/www/debian" "$work/src"
names=()
for deb in "$debs"/*.deb; do
  pkg=$(dpkg-deb -f "$deb" Package)
  name=$(echo "$pkg" | tr -c 'a-z0-9_\n' '_')
  d=$work/src/$name
  mkdir -p "$d"
  dpkg-deb -x "$deb" "$d"
  # Debian ships some files also as directories' siblings; keep what builds.
  printf '{"name":"%s","version":"1.0","summary":"%s (from Debian)","license":"see /usr/share/doc","copyright":"Debian"}\n' "$name" "$pkg" > "$d/manifest.json"
  "$exos" build -q "$d" -o "$work/www/exos/$name.hpkg"
  cp "$deb" "$work/www/debian/"
  names+=("$name")
done
"$exos" key generate -q -d "$work" repo
"$exos" repo index -q "$work/www/exos" -k "$work/repo.key"
(cd "$work/www/debian" && dpkg-scanpackages -m . /dev/null 2>/dev/null > Packages)
count=${#names[@]}
exos_bytes=$(cat "$work/www/exos"/*.hpkg | wc -c)
deb_bytes=$(cat "$work/www/debian"/*.deb | wc -c)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<EOF
daemon off; user root; worker_processes 2; pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 256; }
http { access_log off; sendfile on; client_body_temp_path $work; proxy_temp_path $work;
  fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:$port; root $work/www; } }
EOF
/usr/sbin/nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
trap 'kill -TERM $nginx_pid 2>/dev/null; wait $nginx_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
url=http://127.0.0.1:$port

# apt's own configuration, so the machine's sources are untouched.
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
echo "deb [trusted=yes] $url/debian ./" > "$work/apt/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=-"
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -o "APT::Get::List-Cleanup=0")
apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1
deb_names=()
for deb in "$debs"/*.deb; do deb_names+=("$(dpkg-deb -f "$deb" Package)"); done

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
declare -a t_exos t_floor t_apt t_curl
for _ in $(seq "$runs"); do
  rm -rf "$work/r" && "$exos" init -q "$work/r"
  "$exos" repo add -q main "$url/exos" -k "$work/repo.pub" -r "$work/r"
  cold; t0=$(now)
  "$exos" install -q "${names[@]}" -r "$work/r"
  t1=$(now); t_exos+=("$(echo "$t1 - $t0" | bc -l)")

  rm -rf "$work/floor" && mkdir "$work/floor"
  args=(); for n in "${names[@]}"; do args+=(-o "$work/floor/$n.hpkg" "$url/exos/$n.hpkg"); done
  cold; t0=$(now)
  curl -sS --no-progress-meter --parallel --parallel-max 4 "${args[@]}"
  t_mid=$(now)
  sha256sum "$work/floor"/*.hpkg > /dev/null
  t1=$(now); t_floor+=("$(echo "$t1 - $t0" | bc -l)"); t_curl+=("$(echo "$t_mid - $t0" | bc -l)")

  rm -rf "$work/aptdl" && mkdir "$work/aptdl"
  cold; t0=$(now)
  (cd "$work/aptdl" && apt-get "${apt_opts[@]}" download -qq "${deb_names[@]}" >/dev/null 2>&1)
  t1=$(now); t_apt+=("$(echo "$t1 - $t0" | bc -l)")
done
"$exos" check -q -r "$work/r"
[ "$(ls "$work/aptdl" | wc -l)" -eq "$count" ] || { echo "apt downloaded $(ls "$work/aptdl" | wc -l) of $count" >&2; exit 1; }
me=$(printf '%s\n' "${t_exos[@]}" | median)
mf=$(printf '%s\n' "${t_floor[@]}" | median)
ma=$(printf '%s\n' "${t_apt[@]}" | median)
mc=$(printf '%s\n' "${t_curl[@]}" | median)
echo "$count packages ($exos_bytes bytes as exos packages, $deb_bytes bytes as .debs) over loopback nginx, 2 cores, median of $runs runs, cold caches"
printf '| tool | wall time | vs floor | vs apt-get download |\n|---|---:|---:|---:|\n'
printf '| exos install (resolve, download 4 at a time, verify, install as one state) | %.3f s | %.2f× | %.2f× |\n' "$me" "$(echo "$me / $mf" | bc -l)" "$(echo "$me / $ma" | bc -l)"
printf '| floor: curl --parallel (4) + sha256sum of the same files | %.3f s | 1.00× | %.2f× |\n' "$mf" "$(echo "$mf / $ma" | bc -l)"
printf '| curl --parallel (4) alone, no hash | %.3f s | %.2f× | %.2f× |\n' "$mc" "$(echo "$mc / $mf" | bc -l)" "$(echo "$mc / $ma" | bc -l)"
printf '| apt-get download of the same .debs (no install) | %.3f s | %.2f× | 1.00× |\n' "$ma" "$(echo "$ma / $mf" | bc -l)"
