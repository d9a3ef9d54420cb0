#!/usr/bin/env bash
# Round trip of an admin API call that runs on a shard, against an idle gateway: GET /v1/users/<id> goes from
# the admin HTTP thread through the owner shard's mailbox (core/mailbox.h) and back. Prints percentiles
# over N calls on one keep-alive connection, each to a different user (so every shard is asked).
#   scripts/admin-bench.sh [--calls 2000] [--shards 2] [--gateway PATH]
# --gateway: another longlink-gateway binary to measure (default: a Release build of this tree).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/gateway.sh

calls=2000; shards=2; gateway=
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls=$2; shift ;;
    --shards) shards=$2; shift ;;
    --gateway) gateway=$2; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "admin-bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$calls" =~ ^[1-9][0-9]*$ ]] || { echo "admin-bench.sh: --calls must be a positive integer" >&2; exit 2; }
[[ "$shards" =~ ^[1-9][0-9]*$ ]] || { echo "admin-bench.sh: --shards must be a positive integer" >&2; exit 2; }
if [ -z "$gateway" ]; then
  scripts/deps.sh
  cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGLINK_TESTS=OFF >/dev/null
  cmake --build build-release --target longlink-gateway -j"$(nproc)" >/dev/null
  gateway=build-release/gateway/longlink-gateway
fi

work=$(mktemp -d)
trap '{ kill -9 $gw_pid && wait $gw_pid; } 2>/dev/null || true; rm -rf "$work"' EXIT
"$gateway" --bind=127.0.0.1 --port=0 --metrics-bind=127.0.0.1 --metrics-port=0 --admin-port=0 \
  --shards="$shards" --data-dir="$work/data" --auth=none >"$work/gw.out" 2>"$work/gw.err" &
gw_pid=$!
wait_gateway "$work/gw.out" "$work/gw.err"
aport=$(sed -E 's/.* admin=([0-9]+).*/\1/' <<<"$gw_line")
sleep 1  # idle: no client traffic, only the loop's own ticks
python3 - "$aport" "$calls" <<'PY'
import http.client, sys, time
port, calls = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

def measure(path, want):
    lat = []
    for i in range(calls):
        t = time.perf_counter()
        conn.request("GET", path(i))
        r = conn.getresponse()
        r.read()
        lat.append(time.perf_counter() - t)
        assert r.status == want, (path(i), r.status)
        time.sleep(0.002)  # the shards go back to sleep between calls
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e3
    return "p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms" % (pct(50), pct(90), pct(99), lat[-1] * 1e3)

# The HTTP floor: a request the admin thread answers itself (a bad id), with the same client and connection.
print("%d calls on one keep-alive connection to an idle gateway:" % calls)
print("  answered by the HTTP thread (GET /v1/users/0, 400):  " + measure(lambda i: "/v1/users/0", 400))
print("  run on the owner shard (GET /v1/users/<id>, 200):    " + measure(lambda i: "/v1/users/%d" % (i + 1), 200))
PY
