#!/usr/bin/env bash
# The main job: installs what is missing, builds Release, starts longlink-gateway on loopback, runs a
# short client check against it (clients log in, heartbeat and exchange messages), prints the report
# and a summary of the gateway's own metrics, then drains the gateway with SIGTERM.
#   scripts/run.sh [--clients N] [--seconds S] [--rate MSG_PER_S] [--shards N]
set -euo pipefail
cd "$(dirname "$0")/.."

clients=1000; seconds=10; rate=2000; shards=2
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --rate) rate=$2; shift ;;
    --shards) shards=$2; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGLINK_TESTS=OFF >/dev/null
cmake --build build-release --target longlink-gateway -j"$(nproc)"

log=$(mktemp -d)
trap 'kill $gw_pid 2>/dev/null || true; rm -rf "$log"' EXIT
build-release/gateway/longlink-gateway --bind=127.0.0.1 --port=0 --metrics-bind=127.0.0.1 --metrics-port=0 \
  --shards="$shards" --backend=echo >"$log/out" 2>"$log/err" &
gw_pid=$!
for _ in $(seq 100); do grep -q listening "$log/out" 2>/dev/null && break; sleep 0.1; done
line=$(head -1 "$log/out")
[ -n "$line" ] || { echo "the gateway did not start:" >&2; cat "$log/err" >&2; exit 1; }
echo "$line"
port=$(sed -E 's/.*:([0-9]+) shards=.*/\1/' <<<"$line")
mport=$(sed -E 's/.* metrics=([0-9]+).*/\1/' <<<"$line")

status=0
python3 tests/integration/smoke_client.py --port "$port" --clients "$clients" --seconds "$seconds" --rate "$rate" || status=$?

echo "gateway metrics:"
python3 - "$mport" <<'PY'
import sys, urllib.request, re
text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
want = ["longlink_gateway_accepts_total", "longlink_gateway_logins_total", "longlink_gateway_migrations_total",
        "longlink_gateway_frames_received_total", "longlink_gateway_frames_sent_total",
        "longlink_gateway_received_bytes_total", "longlink_gateway_sent_bytes_total",
        "longlink_gateway_process_resident_memory_bytes"]
sums = {}
for line in text.splitlines():
    m = re.match(r"(\w+)(\{[^}]*\})? (\S+)$", line)
    if m and m.group(1) in want:
        sums[m.group(1)] = sums.get(m.group(1), 0) + float(m.group(3))
for k in want:
    print("  %-52s %d" % (k, sums.get(k, 0)))
PY
kill -TERM "$gw_pid"
wait "$gw_pid" && echo "gateway drained and exited cleanly" || { echo "gateway exited with $?"; status=1; }
exit $status
