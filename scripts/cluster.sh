#!/usr/bin/env bash
# A longlink cluster on this machine: a 3-node NATS cluster with JetStream (loopback ports 4222-4224, routes
# 6222-6224, monitoring 8222-8224, each node with its own store directory), two or three gateways on
# --backend=nats in front of it (R3 streams), and optionally a loadgen run spread over all gateways with one
# ledger. Prints where each part listens, keeps the cluster up for --hold (or until the loadgen run ends),
# then stops everything it started by PID.
#   scripts/cluster.sh [--gateways 2|3] [--hold 60s] [--loadgen] [--clients N] [--seconds S] [--rate R]
#                      [--kill-gateway-at S] [--shards N] [--out DIR]
#   --loadgen             run loadgen/scenarios/mobile-mix.yaml over all gateways; the report goes to --out
#   --kill-gateway-at S   kill -9 the last gateway S seconds into the loadgen run (its clients move on)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/gateway.sh

gateways=2; hold=60; loadgen=0; clients=2000; seconds=30; rate=; kill_at=; shards=1; out=
while [ $# -gt 0 ]; do
  case "$1" in
    --gateways) gateways=$2; shift ;;
    --hold) hold=${2%s}; shift ;;
    --loadgen) loadgen=1 ;;
    --clients) clients=$2; shift ;;
    --seconds) seconds=${2%s}; shift ;;
    --rate) rate=$2; shift ;;
    --kill-gateway-at) kill_at=${2%s}; shift ;;
    --shards) shards=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n "2,10p" "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$gateways" in 2|3) ;; *) echo "cluster.sh: --gateways must be 2 or 3" >&2; exit 2 ;; esac
[[ "$hold" =~ ^[0-9]+$ && "$hold" -ge 1 && "$hold" -le 86400 ]] || { echo "cluster.sh: --hold must be 1s..24h" >&2; exit 2; }

scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGLINK_TESTS=OFF >/dev/null
cmake --build build-release --target longlink-gateway longlink-loadgen -j"$(nproc)"

for p in 4222 4223 4224 6222 6223 6224 8222 8223 8224; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "cluster.sh: 127.0.0.1:$p is in use (another cluster.sh or nats-server?)" >&2; exit 1
  fi
done

dir=$(mktemp -d /tmp/longlink-cluster.XXXXXX)
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap stop_all EXIT

routes='"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"'
for i in 1 2 3; do
  cat >"$dir/n$i.conf" <<EOF
server_name: "n$i"
listen: "127.0.0.1:$((4221 + i))"
http: "127.0.0.1:$((8221 + i))"
jetstream { store_dir: "$dir/n$i" }
cluster { name: "longlink"; listen: "127.0.0.1:$((6221 + i))"; routes: [$routes] }
EOF
  nats-server -c "$dir/n$i.conf" >"$dir/n$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 300); do
  curl -sf http://127.0.0.1:8222/healthz >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf http://127.0.0.1:8222/healthz >/dev/null || { echo "cluster.sh: the NATS cluster did not come up:" >&2; tail -5 "$dir"/n*.log >&2; exit 1; }
echo "nats: 3 nodes, JetStream meta leader $(curl -s 'http://127.0.0.1:8222/jsz' | python3 -c 'import json,sys; print(json.load(sys.stdin).get("meta_cluster",{}).get("leader","?"))')"
for i in 1 2 3; do
  echo "  n$i  client nats://127.0.0.1:$((4221 + i))  route 127.0.0.1:$((6221 + i))  monitoring http://127.0.0.1:$((8221 + i))  store $dir/n$i"
done

urls="nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
mons="http://127.0.0.1:8222,http://127.0.0.1:8223,http://127.0.0.1:8224"
targets=()
gw_pids=()
for g in $(seq "$gateways"); do
  build-release/gateway/longlink-gateway --bind=127.0.0.1 --port=0 --metrics-bind=127.0.0.1 --metrics-port=0 \
    --admin-bind=127.0.0.1 --admin-port=0 --shards="$shards" --auth=none --heartbeat-interval=5s \
    --heartbeat-timeout=10s --backend=nats --nats-url="$urls" --nats-monitor-urls="$mons" --gateway-id="g$g" \
    >"$dir/g$g.out" 2>"$dir/g$g.err" &
  pids+=($!)
  gw_pids+=($!)
  wait_gateway "$dir/g$g.out" "$dir/g$g.err"
  admin=$(sed -E 's/.* admin=([0-9]+).*/\1/' <<<"$gw_line")
  echo "gateway g$g  clients 127.0.0.1:$port  metrics http://127.0.0.1:$mport/metrics  admin http://127.0.0.1:$admin  log $dir/g$g.err"
  targets+=("127.0.0.1:$port")
  last_mport=$mport
done
# Ready once the partitions are spread: every one owned by some gateway.
for _ in $(seq 600); do
  total=0
  for f in "$dir"/g*.out; do
    mp=$(sed -E 's/.* metrics=([0-9]+).*/\1/' <<<"$(head -1 "$f")")
    n=$(curl -s "http://127.0.0.1:$mp/metrics" | awk '$1 == "longlink_backend_nats_owned_partitions" {print $2}')
    total=$((total + ${n:-0}))
  done
  [ "$total" -ge 16 ] && break
  sleep 0.1
done
echo "partitions owned: $total of 16"

status=0
if [ "$loadgen" = 1 ]; then
  out=${out:-build-release/reports/cluster-$(date -u +%Y%m%dT%H%M%SZ)}
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  if [ -n "$kill_at" ]; then
    victim=${gw_pids[-1]}
    (sleep "$kill_at"; kill -KILL "$victim" 2>/dev/null && echo "cluster.sh: killed gateway g$gateways (kill -9) at ${kill_at}s" >&2) &
  fi
  set +e
  IFS=,; target_list="${targets[*]}"; unset IFS
  build-release/loadgen/longlink-loadgen --scenario=loadgen/scenarios/mobile-mix.yaml --target="$target_list" \
    --clients="$clients" --duration="${seconds}s" ${rate:+--rate="$rate"} --shards="$shards" \
    --report-json="$out/report.json" --report-html="$out/report.html" | tee "$out/report.txt"
  status=${PIPESTATUS[0]}
  set -e
  echo "reports: $out/report.txt, $out/report.html, $out/report.json"
else
  echo "holding for ${hold}s (Ctrl-C stops everything)"
  sleep "$hold"
fi
exit $status
