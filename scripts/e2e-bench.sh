#!/usr/bin/env bash
# End-to-end messaging benchmark: a gateway and a loadgen on this machine, N clients sending R messages a
# second each (to themselves by default: a one-shard message, SEND_ACK + PUSH), for a fixed time on a
# fresh data directory. Prints one line: delivered messages/s, end-to-end percentiles, both processes' CPU
# over the middle of the run, the group commits a second, the generator's lag and the ledger's verdict.
#   scripts/e2e-bench.sh [--backend local] [--fsync batch] [--gateway-shards 2] [--loadgen-shards 2]
#                        [--clients 10000] [--rate 2.5] [--ack-delay 0s] [--targets self] [--seconds 20]
# --targets: self, random_user. --ack-delay: the loadgen's messaging.ack_delay (0s: every PUSH acked at once).
# --grace: how long after the run the ledger waits for late PUSHes (the scenario's grace, 3s).
# --backend nats [--gateways 2]: a 3-node NATS cluster with JetStream (R3 streams) on loopback ports 24222-24224
# and that many gateways in front of it, the clients spread over them; CPU is summed over the gateways, and the
# NATS servers' CPU and resident memory are printed too.
# Exit status: 0, or the loadgen's (1: a threshold failed, 3: the run was invalid), or 2 for bad arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/gateway.sh

backend=local; fsync=batch; gshards=2; lshards=2; clients=10000; rate=2.5; ack=0s; targets=self; seconds=20
gateways=; grace=3s
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
    --gateways) gateways=$2; shift ;;
    --grace) grace=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
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
[[ "$grace" =~ ^[0-9]+(ms|s)$ ]] || bad "--grace must be a duration like 3s, got '$grace'"
case "$backend" in local|echo|nats) ;; *) bad "--backend must be local, echo or nats, got '$backend'" ;; esac
if [ "$backend" = nats ]; then gateways=${gateways:-2}; else gateways=${gateways:-1}; fi
[[ "$gateways" =~ ^[1-9]$ ]] || bad "--gateways must be 1 to 9, got '$gateways'"
[ "$backend" = nats ] || [ "$gateways" = 1 ] || bad "--gateways above 1 needs --backend nats"
case "$fsync" in always|batch|none) ;; *) bad "--fsync must be always, batch or none, got '$fsync'" ;; esac
case "$targets" in self|random_user) ;; *) bad "--targets must be self or random_user, got '$targets'" ;; esac
[ "$seconds" -ge 10 ] || bad "--seconds must be at least 10 (3 s of ramp, CPU over the middle of the hold)"
[ "$backend" = echo ] && [ "$targets" != self ] && bad "the echo backend delivers only to the sender (--targets self)"

scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGLINK_TESTS=OFF >/dev/null
cmake --build build-release --target longlink-gateway longlink-loadgen -j"$(nproc)" >/dev/null

work=$(mktemp -d)
pids=()
nats_pids=()
gw_pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
backend_args=(--backend="$backend" --fsync="$fsync" --data-dir="$work/data")
if [ "$backend" = nats ]; then
  routes='"nats-route://127.0.0.1:26222", "nats-route://127.0.0.1:26223", "nats-route://127.0.0.1:26224"'
  for i in 0 1 2; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$((24222 + i))") 2>/dev/null; then bad "127.0.0.1:$((24222 + i)) is in use"; fi
    printf 'server_name: "b%d"\nlisten: "127.0.0.1:%d"\nhttp: "127.0.0.1:%d"\njetstream { store_dir: "%s" }\ncluster { name: "bench"; listen: "127.0.0.1:%d"; routes: [%s] }\n' \
      "$i" $((24222 + i)) $((28222 + i)) "$work/nats$i" $((26222 + i)) "$routes" >"$work/nats$i.conf"
    nats-server -c "$work/nats$i.conf" >"$work/nats$i.log" 2>&1 &
    pids+=($!); nats_pids+=($!)
  done
  for _ in $(seq 300); do curl -sf http://127.0.0.1:28222/healthz >/dev/null 2>&1 && break; sleep 0.1; done
  backend_args=(--backend=nats --nats-url=nats://127.0.0.1:24222,nats://127.0.0.1:24223,nats://127.0.0.1:24224
                --nats-replicas=3)
fi
addresses=()
mports=()
for g in $(seq "$gateways"); do
  build-release/gateway/longlink-gateway --bind=127.0.0.1 --port=0 --metrics-bind=127.0.0.1 --metrics-port=0 \
    --shards="$gshards" "${backend_args[@]}" --gateway-id="g$g" --auth=none --heartbeat-interval=30s \
    >"$work/gw$g.out" 2>"$work/gw$g.err" &
  gw_pid=$!
  pids+=($gw_pid); gw_pids+=($gw_pid)
  wait_gateway "$work/gw$g.out" "$work/gw$g.err"
  addresses+=("127.0.0.1:$port")
  mports+=("$mport")
done
if [ "$backend" = nats ]; then
  # Until the partitions are spread over the gateways (every one owned).
  for _ in $(seq 600); do
    total=0
    for mp in "${mports[@]}"; do
      n=$(curl -s "http://127.0.0.1:$mp/metrics" | awk '$1 == "longlink_backend_nats_owned_partitions" {print $2}')
      total=$((total + ${n:-0}))
    done
    [ "$total" -ge 16 ] && break
    sleep 0.1
  done
fi
addr_list=$(IFS=,; echo "${addresses[*]}")
sum_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
rss_kib() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }

cat >"$work/e2e.yaml" <<YAML
name: e2e-bench
target:
  addresses: [${addr_list//,/, }]
clients: $clients
connect_rate: 5000
duration: ${seconds}s
grace: $grace
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
g0=$(sum_ticks "${gw_pids[@]}"); l0=$(cpu_ticks "$lg_pid"); s0=$(metric longlink_backend_local_fsync_seconds_count)
n0=0; [ "$backend" = nats ] && n0=$(sum_ticks "${nats_pids[@]}")
sleep "$window"
g1=$(sum_ticks "${gw_pids[@]}"); l1=$(cpu_ticks "$lg_pid"); s1=$(metric longlink_backend_local_fsync_seconds_count)
n1=0; nrss=0; [ "$backend" = nats ] && { n1=$(sum_ticks "${nats_pids[@]}"); nrss=$(rss_kib "${nats_pids[@]}"); }
rc=0
wait "$lg_pid" || rc=$?
[ -s "$work/report.json" ] || { echo "the loadgen wrote no report (exit $rc):" >&2; cat "$work/lg.err" >&2; exit 1; }
hz=$(getconf CLK_TCK)
python3 - "$work/report.json" "$seconds" "$(( (g1 - g0) * 100 / hz / window ))" "$(( (l1 - l0) * 100 / hz / window ))" \
  "$(( (${s1:-0} - ${s0:-0}) / window ))" "$backend" "$(( (n1 - n0) * 100 / hz / window ))" "$nrss" "$gateways" <<'PY'
import json, sys
path, seconds, gw_cpu, lg_cpu, syncs, backend, nats_cpu, nats_rss, gateways = sys.argv[1:]
r = json.load(open(path))
led, lat = r["ledger"], r["latency_ms"]
e2e, lag = lat["end_to_end"], lat["generator_lag"]
def ms(v):
    return "%.2f" % v if v < 100 else "%.0f" % v
storage = ("%s group commits/s" % syncs if backend == "local" else
           "NATS CPU %s%%, NATS RSS %.0f MiB (3 servers)" % (nats_cpu, int(nats_rss) / 1024.0) if backend == "nats"
           else "no storage")
print("delivered %.0f msg/s; end-to-end p50 %s p90 %s p99 %s p99.9 %s ms; gateway CPU %s%% (%s gateway%s) loadgen "
      "CPU %s%% (of one core); %s; generator lag p99 %s ms; %d lost, %d duplicates, %d refused; %s" % (
          r["metrics"]["delivered"] / int(seconds), ms(e2e["p50"]), ms(e2e["p90"]), ms(e2e["p99"]),
          ms(e2e["p999"]), gw_cpu, gateways, "" if gateways == "1" else "s", lg_cpu, storage, ms(lag["p99"]),
          led["lost"], led["duplicates"], r["metrics"].get("sends_refused", 0),
          "valid" if r["valid"] else "INVALID: " + r["invalid_reason"]))
PY
exit "$rc"
