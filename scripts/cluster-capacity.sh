#!/usr/bin/env bash
# Online users on a cluster: a 3-node NATS cluster with JetStream (loopback ports 34222-34224), two gateways
# on --backend=nats (R3), and one loadgen holding N logged-in clients with heartbeats (no messages) spread
# over both. Prints sessions held, the NATS servers' resident memory (summed) before the clients and at
# mid-hold with the growth per online user, the gateways' the same way, the owners' routing directory size
# and the login latency. Stops everything it started by PID.
#   scripts/cluster-capacity.sh [--clients 100000] [--hold 30] [--connect-rate 5000] [--gateway-shards 4]
#                               [--loadgen-shards 8] [--targets 8] (destination addresses per gateway)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/gateway.sh

clients=100000; hold=30; rate=5000; gshards=4; lshards=8; targets=8
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift ;;
    --hold) hold=$2; shift ;;
    --connect-rate) rate=$2; shift ;;
    --gateway-shards) gshards=$2; shift ;;
    --loadgen-shards) lshards=$2; shift ;;
    --targets) targets=$2; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "cluster-capacity.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in clients:$clients hold:$hold connect-rate:$rate gateway-shards:$gshards loadgen-shards:$lshards targets:$targets; do
  [[ "${v#*:}" =~ ^[1-9][0-9]*$ ]] || { echo "cluster-capacity.sh: --${v%%:*} must be a positive integer, got '${v#*:}'" >&2; exit 2; }
done
nofile=$(ulimit -n)
per_shard=$(( clients / 2 / gshards + 1024 ))
[ "$per_shard" -le "$nofile" ] || { echo "cluster-capacity.sh: $per_shard connections per gateway shard exceed the open-files limit ($nofile): use more --gateway-shards" >&2; exit 2; }
[ $(( clients / lshards + 1024 )) -le "$nofile" ] || { echo "cluster-capacity.sh: use more --loadgen-shards" >&2; exit 2; }

scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGLINK_TESTS=OFF >/dev/null
cmake --build build-release --target longlink-gateway longlink-loadgen -j"$(nproc)" >/dev/null
sysctl -qw net.ipv4.ip_local_port_range="1024 65535" || echo "warning: cannot widen ip_local_port_range" >&2
sysctl -qw net.core.somaxconn=65535 || true

work=$(mktemp -d)
pids=(); nats_pids=(); gw_pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
routes='"nats-route://127.0.0.1:36222", "nats-route://127.0.0.1:36223", "nats-route://127.0.0.1:36224"'
for i in 0 1 2; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$((34222 + i))") 2>/dev/null; then
    echo "cluster-capacity.sh: 127.0.0.1:$((34222 + i)) is in use" >&2; exit 1
  fi
  printf 'server_name: "c%d"\nlisten: "127.0.0.1:%d"\nhttp: "127.0.0.1:%d"\njetstream { store_dir: "%s" }\ncluster { name: "capacity"; listen: "127.0.0.1:%d"; routes: [%s] }\n' \
    "$i" $((34222 + i)) $((38222 + i)) "$work/nats$i" $((36222 + i)) "$routes" >"$work/nats$i.conf"
  nats-server -c "$work/nats$i.conf" >"$work/nats$i.log" 2>&1 &
  pids+=($!); nats_pids+=($!)
done
for _ in $(seq 300); do curl -sf http://127.0.0.1:38222/healthz >/dev/null 2>&1 && break; sleep 0.1; done
mports=(); tlist=""
for g in 1 2; do
  build-release/gateway/longlink-gateway --bind=0.0.0.0 --port=0 --metrics-bind=127.0.0.1 --metrics-port=0 \
    --shards="$gshards" --max-conns-per-shard="$per_shard" --heartbeat-interval=30s --heartbeat-timeout=90s \
    --auth=none --backend=nats --nats-url=nats://127.0.0.1:34222,nats://127.0.0.1:34223,nats://127.0.0.1:34224 \
    --gateway-id="cap$g" >"$work/gw$g.out" 2>"$work/gw$g.err" &
  pids+=($!); gw_pids+=($!)
  wait_gateway "$work/gw$g.out" "$work/gw$g.err"
  mports+=("$mport")
  for i in $(seq 1 "$targets"); do tlist+="127.0.$g.$i:$port,"; done
done
gsum() {  # the sum of one metric over both gateways
  local t=0 mp v
  for mp in "${mports[@]}"; do
    v=$(curl -s "http://127.0.0.1:$mp/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $NF} END {printf "%.0f", s}')
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
for _ in $(seq 600); do [ "$(gsum longlink_backend_nats_owned_partitions)" -ge 16 ] && break; sleep 0.1; done
rss_kib() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
sleep 2
nats0=$(rss_kib "${nats_pids[@]}"); gw0=$(rss_kib "${gw_pids[@]}")

ramp=$(( (clients + rate - 1) / rate ))
cat >"$work/capacity.yaml" <<YAML
name: cluster-capacity
heartbeat:
  pong_timeout: 120s
messaging:
  rate_per_client: 0
YAML
echo "cluster capacity: $clients clients at $rate/s over 2 gateways x $gshards shards (${targets} addresses each), hold ${hold}s"
build-release/loadgen/longlink-loadgen --scenario="$work/capacity.yaml" --target="${tlist%,}" --clients="$clients" \
  --connect-rate="$rate" --duration="$((ramp + hold))s" --shards="$lshards" --live-interval=10s \
  --report-json="$work/report.json" >"$work/lg.out" 2>"$work/lg.err" &
lg_pid=$!; pids+=($lg_pid)
sleep $(( ramp + hold / 2 ))
sessions=$(gsum longlink_gateway_sessions); dir=$(gsum longlink_backend_nats_directory_entries)
nats1=$(rss_kib "${nats_pids[@]}"); gw1=$(rss_kib "${gw_pids[@]}")
wait "$lg_pid" || true
python3 - "$sessions" "$clients" "$dir" "$nats0" "$nats1" "$gw0" "$gw1" "$work/report.json" <<'PY'
import json, sys
sessions, clients, directory, n0, n1, g0, g1, rep = sys.argv[1:]
sessions, clients, directory = int(sessions), int(clients), int(directory)
n0, n1, g0, g1 = (int(x) * 1024 for x in (n0, n1, g0, g1))
r = json.load(open(rep))
print("  sessions held at mid-hold      %d of %d; routing directory entries %d" % (sessions, clients, directory))
print("  NATS servers' RSS (3, summed)  %.1f MiB -> %.1f MiB: %.0f bytes per online user" % (
    n0 / 2**20, n1 / 2**20, (n1 - n0) / max(1, sessions)))
print("  gateways' RSS (2, summed)      %.1f MiB -> %.1f MiB: %.0f bytes per online user (connection, session, "
      "directory)" % (g0 / 2**20, g1 / 2**20, (g1 - g0) / max(1, sessions)))
lat = r["latency_ms"]
print("  login p50 %.2f p99 %.2f ms; connect errors %d; generator lag p99 %.2f ms; %s" % (
    lat["login"]["p50"], lat["login"]["p99"], r["metrics"]["connect_errors"], lat["generator_lag"]["p99"],
    "valid" if r["valid"] else "INVALID: " + r["invalid_reason"]))
sys.exit(0 if sessions == clients and r["valid"] else 1)
PY
