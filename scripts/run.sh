#!/usr/bin/env bash
# The main job: installs what is missing, builds Release, starts longlink-gateway on loopback with its
# embedded IM backend (durable inboxes in a temporary data directory), runs
# longlink-loadgen against it with loadgen/scenarios/mobile-mix.yaml (10,000 mobile clients on a mix of
# simulated networks connect, log in, heartbeat adaptively, go to the background and back, flap, stall and
# exchange messages; a ledger checks that no acknowledged message was lost or duplicated), prints the
# loadgen's report and a summary of the gateway's own metrics, then drains the gateway with SIGTERM. The
# reports (text, JSON and a self-contained HTML page with charts) stay in --out (default
# build-release/reports/<UTC time>); the script prints their paths.
#   scripts/run.sh [--clients N] [--seconds S] [--rate MSG_PER_S_PER_CLIENT] [--shards N] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/gateway.sh

clients=10000; seconds=30; rate=; shards=2; out=
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --rate) rate=$2; shift ;;
    --shards) shards=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n "2,10p" "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGLINK_TESTS=OFF >/dev/null
cmake --build build-release --target longlink-gateway longlink-loadgen -j"$(nproc)"

out=${out:-build-release/reports/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$(mktemp -d)
trap 'kill $gw_pid 2>/dev/null || true; rm -rf "$log"' EXIT
# A 10 s heartbeat timeout (the default is 90 s) so that the half-open connections the weak networks make are
# reaped within the 30 s run, where the report can show it (zombies reaped, reap time).
build-release/gateway/longlink-gateway --bind=0.0.0.0 --port=0 --metrics-bind=127.0.0.1 --metrics-port=0 \
  --shards="$shards" --backend=local --data-dir="$log/data" --auth=none --heartbeat-interval=5s --heartbeat-timeout=10s \
  >"$log/out" 2>"$log/err" &
gw_pid=$!
wait_gateway "$log/out" "$log/err"
echo "$gw_line"

set +e
# Connections spread over four loopback destination addresses, so ephemeral ports never run out.
targets="127.0.0.1:$port,127.0.0.2:$port,127.0.0.3:$port,127.0.0.4:$port"
build-release/loadgen/longlink-loadgen --scenario=loadgen/scenarios/mobile-mix.yaml --target="$targets" \
  --clients="$clients" --duration="${seconds}s" ${rate:+--rate="$rate"} --shards="$shards" \
  --report-json="$out/report.json" --report-html="$out/report.html" | tee "$out/report.txt"
status=${PIPESTATUS[0]}
set -e

echo "gateway metrics:"
python3 - "$mport" <<'PY'
import sys, urllib.request, re
text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
want = ["longlink_gateway_accepts_total", "longlink_gateway_logins_total", "longlink_gateway_migrations_total",
        "longlink_gateway_frames_received_total", "longlink_gateway_frames_sent_total",
        "longlink_gateway_received_bytes_total", "longlink_gateway_sent_bytes_total",
        "longlink_gateway_heartbeat_timeouts_total", "longlink_backend_local_sends_total",
        "process_resident_memory_bytes"]
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
echo "reports: $out/report.txt"
echo "         $out/report.html (open it in a browser; it needs no network)"
echo "         $out/report.json"
exit $status
