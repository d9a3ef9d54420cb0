#!/usr/bin/env bash
# WebSocket echo, side by side: the gateway's --ws-echo-path, Bun's WebSocket server (uWebSockets) and the
# npm `ws` server, each driven by the same loadgen ws-echo profile. Prints, per server: messages/s echoed,
# messages per server CPU-second (utime+stime from /proc/<pid>/stat over the loaded run), p99 echo round
# trip, and server RSS per idle connection (RSS with the connections held minus RSS before, / connections).
#
# Usage: scripts/ws-bench.sh [connections=10000] [rate per client=1] [duration=30s]
# Needs: build/ (gateway + loadgen), node + npm (installs scripts/ws-bench/node_modules with npm ci).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
conns=${1:-10000}
rate=${2:-1}
duration=${3:-30s}
connect_rate=2000
bench="$root/scripts/ws-bench"
gateway="$root/build/gateway/longlink-gateway"
loadgen="$root/build/loadgen/longlink-loadgen"
port_gw=29001 port_bun=29002 port_ws=29003
ulimit -n "$(ulimit -Hn)"

if [ ! -x "$bench/node_modules/@oven/bun-linux-x64/bin/bun" ] || [ ! -d "$bench/node_modules/ws" ]; then
  npm ci --prefix "$bench" --no-audit --no-fund >/dev/null
fi
bun="$bench/node_modules/@oven/bun-linux-x64/bin/bun"

# Connections are spread over 127.0.0.1-8 so no single (source, destination) pair runs out of ports.
targets() { local p=$1 out="" i; for i in 1 2 3 4 5 6 7 8; do out+="${out:+,}127.0.0.$i:$p"; done; echo "$out"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

run_one() {  # name port path -- server command...
  local name=$1 port=$2 path=$3
  shift 4
  "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_port "$port"
  sleep 1
  local tck rss0 rss1 tmp
  tck=$(getconf CLK_TCK)
  tmp=$(mktemp -d)
  rss0=$(rss_kib "$pid")
  # 1. Idle: hold the connections with WebSocket pings only, sample RSS once all are connected.
  local hold=$((conns / connect_rate + 6))
  "$loadgen" --protocol=ws-echo --ws-path="$path" --target="$(targets "$port")" --shards=2 --clients="$conns" \
    --connect-rate="$connect_rate" --rate=0 --duration="${hold}s" --report-json="$tmp/idle.json" >"$tmp/idle.out" 2>&1 &
  local lg=$!
  sleep $((hold - 2))
  rss1=$(rss_kib "$pid")
  wait "$lg" || true
  sleep 1
  # 2. Loaded: every client sends `rate` messages/s; CPU measured over the whole run.
  local c0 c1 t0 t1
  c0=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  "$loadgen" --protocol=ws-echo --ws-path="$path" --target="$(targets "$port")" --shards=2 --clients="$conns" \
    --connect-rate="$connect_rate" --rate="$rate" --duration="$duration" --report-json="$tmp/load.json" \
    >"$tmp/load.out" 2>&1 || true
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$pid")
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  python3 - "$name" "$tmp/load.json" "$tmp/idle.json" "$rss0" "$rss1" "$c0" "$c1" "$tck" "$conns" <<'EOF'
import json, sys
name, load, idle, rss0, rss1, c0, c1, tck, conns = sys.argv[1:]
rep = json.load(open(load))
idle_rep = json.load(open(idle))
m = rep["metrics"]
secs = float(rep.get("elapsed_seconds") or 0) or None
echoed = m["echo_received"]
cpu = (int(c1) - int(c0)) / int(tck)
p99 = rep["latency_ms"]["end_to_end"].get("p99")
held = int(idle_rep["metrics"]["connected_peak"])
rss_per = (int(rss1) - int(rss0)) * 1024 / int(conns)
print("%-9s echoed=%d msgs/s=%s msgs_per_cpu_s=%.0f cpu_s=%.1f p99_ms=%s rss_before=%.1fMiB rss_held=%.1fMiB "
      "rss_per_conn=%.0fB held=%d connect_errors=%s protocol_errors=%s" % (
          name, echoed, "%.0f" % (echoed / secs) if secs else "?", echoed / cpu if cpu else 0, cpu, p99,
          int(rss0) / 1024, int(rss1) / 1024, rss_per, held, m.get("connect_errors"), m.get("protocol_errors")))
EOF
  rm -rf "$tmp"
}

echo "ws-bench: $conns connections, $rate msg/s each, $duration, loadgen ws-echo (--shards=2, 8 target addresses)"
run_one longlink "$port_gw" /echo -- "$gateway" --bind=0.0.0.0 --port=0 --metrics-port=-1 --shards=1 \
  --ws-port="$port_gw" --ws-echo-path=/echo --backend=echo --auth=none
run_one bun "$port_bun" / -- "$bun" "$bench/bun-echo.js" "$port_bun"
run_one ws "$port_ws" / -- node "$bench/ws-echo.js" "$port_ws"
