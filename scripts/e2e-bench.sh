#!/usr/bin/env bash
# End-to-end messaging benchmark: a gateway and a loadgen on this machine, N clients sending R messages a
# second each (to themselves by default: a one-shard message, SEND_ACK + PUSH), for a fixed time on a
# fresh data directory. Prints one line: delivered messages/s, end-to-end percentiles, both processes' CPU
# over the middle of the run, the group commits a second, the generator's lag and the ledger's verdict.
#   scripts/e2e-bench.sh [--backend local] [--fsync batch] [--gateway-shards 2] [--loadgen-shards 2]
#                        [--clients 10000] [--rate 2.5] [--ack-delay 0s] [--targets self] [--seconds 20]
# --targets: self, random_user. --ack-delay: the loadgen's messaging.ack_delay (0s: every PUSH acked at once).
# Exit status: 0, or the loadgen's (1: a threshold failed, 3: the run was invalid), or 2 for bad arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/gateway.sh

backend=local; fsync=batch; gshards=2; lshards=2; clients=10000; rate=2.5; ack=0s; targets=self; seconds=20
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend=$2; shift ;;
    --fsync) fsync=$2; shift ;;
    --gateway-shards) gshards=$2; shift ;;
    --loadgen-shards) lshards=$2; shift ;;
    --clients) clients=$2; shift ;;
    --rate) rate=$2; shift ;;
    --ack-delay) ack=$2; shift ;;
    --targets) targets=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "e2e-bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
bad() { echo "e2e-bench.sh: $1" >&2; exit 2; }
for v in gateway-shards:$gshards loadgen-shards:$lshards clients:$clients seconds:$seconds; do
  [[ "${v#*:}" =~ ^[1-9][0-9]*$ ]] || bad "--${v%%:*} must be a positive integer, got '${v#*:}'"
done
[[ "$rate" =~ ^[0-9]+(\.[0-9]+)?$ ]] || bad "--rate must be a number of messages per second, got '$rate'"
[[ "$ack" =~ ^[0-9]+(ms|s)$ ]] || bad "--ack-delay must be a duration like 0s or 500ms, got '$ack'"
case "$backend" in local|echo) ;; *) bad "--backend must be local or echo, got '$backend'" ;; esac
case "$fsync" in always|batch|none) ;; *) bad "--fsync must be always, batch or none, got '$fsync'" ;; esac
case "$targets" in self|random_user) ;; *) bad "--targets must be self or random_user, got '$targets'" ;; esac
[ "$seconds" -ge 10 ] || bad "--seconds must be at least 10 (3 s of ramp, CPU over the middle of the hold)"
[ "$backend" = echo ] && [ "$targets" != self ] && bad "the echo backend delivers only to the sender (--targets self)"

scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGLINK_TESTS=OFF >/dev/null
cmake --build build-release --target longlink-gateway longlink-loadgen -j"$(nproc)" >/dev/null

work=$(mktemp -d)
trap '{ kill -9 $gw_pid && wait $gw_pid; } 2>/dev/null || true; rm -rf "$work"' EXIT
build-release/gateway/longlink-gateway --bind=127.0.0.1 --port=0 --metrics-bind=127.0.0.1 --metrics-port=0 \
  --shards="$gshards" --backend="$backend" --fsync="$fsync" --data-dir="$work/data" --auth=none --heartbeat-interval=30s \
  >"$work/gw.out" 2>"$work/gw.err" &
gw_pid=$!
wait_gateway "$work/gw.out" "$work/gw.err"

cat >"$work/e2e.yaml" <<YAML
name: e2e-bench
target:
  addresses: [127.0.0.1:$port]
clients: $clients
connect_rate: 5000
duration: ${seconds}s
phases:
  - kind: ramp
    duration: 3s
  - kind: hold
    duration: $((seconds - 3))s
messaging:
  rate_per_client: $rate
  ack_delay: $ack
  targets: $targets
  payload:
    distribution: fixed
    size: 64
YAML

build-release/loadgen/longlink-loadgen --scenario="$work/e2e.yaml" --shards="$lshards" --live-interval=0s \
  --report-json="$work/report.json" >"$work/lg.out" 2>"$work/lg.err" &
lg_pid=$!
# CPU over the middle of the hold: from 2 s after the ramp to 3 s before the end.
window=$((seconds - 8))
sleep 5
g0=$(cpu_ticks "$gw_pid"); l0=$(cpu_ticks "$lg_pid"); s0=$(metric longlink_backend_local_fsync_seconds_count)
sleep "$window"
g1=$(cpu_ticks "$gw_pid"); l1=$(cpu_ticks "$lg_pid"); s1=$(metric longlink_backend_local_fsync_seconds_count)
rc=0
wait "$lg_pid" || rc=$?
[ -s "$work/report.json" ] || { echo "the loadgen wrote no report (exit $rc):" >&2; cat "$work/lg.err" >&2; exit 1; }
hz=$(getconf CLK_TCK)
python3 - "$work/report.json" "$seconds" "$(( (g1 - g0) * 100 / hz / window ))" "$(( (l1 - l0) * 100 / hz / window ))" \
  "$(( (${s1:-0} - ${s0:-0}) / window ))" <<'PY'
import json, sys
path, seconds, gw_cpu, lg_cpu, syncs = sys.argv[1:]
r = json.load(open(path))
led, lat = r["ledger"], r["latency_ms"]
e2e, lag = lat["end_to_end"], lat["generator_lag"]
def ms(v):
    return "%.2f" % v if v < 100 else "%.0f" % v
print("delivered %.0f msg/s; end-to-end p50 %s p90 %s p99 %s p99.9 %s ms; gateway CPU %s%% loadgen CPU %s%% "
      "(of one core); %s group commits/s; generator lag p99 %s ms; %d lost, %d duplicates; %s" % (
          r["metrics"]["delivered"] / int(seconds), ms(e2e["p50"]), ms(e2e["p90"]), ms(e2e["p99"]),
          ms(e2e["p999"]), gw_cpu, lg_cpu, syncs, ms(lag["p99"]), led["lost"], led["duplicates"],
          "valid" if r["valid"] else "INVALID: " + r["invalid_reason"]))
PY
exit "$rc"
