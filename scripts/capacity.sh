#!/usr/bin/env bash
# Capacity run (C1M): one gateway and one loadgen on this machine, N concurrent logged-in clients with
# heartbeats, held for a while. Tunes the sysctls it needs, then prints connections reached, connect
# rate, gateway RSS per connection, kernel memory, CPU and heartbeat round-trip percentiles.
#   scripts/capacity.sh [--clients 1000000] [--hold 60] [--connect-rate 20000] [--shards 64] [--targets 64]
#                       [--heartbeat-interval 30] (seconds; the gateway's heartbeat timeout is three intervals)
# The open-files limit may stay low: both programs hold connections as io_uring direct descriptors,
# spread over many shards (each shard's fixed-file table is bounded by the limit).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/gateway.sh

clients=1000000; hold=60; rate=20000; shards=64; targets=64; hb=30
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift ;;
    --hold) hold=$2; shift ;;
    --connect-rate) rate=$2; shift ;;
    --shards) shards=$2; shift ;;
    --targets) targets=$2; shift ;;
    --heartbeat-interval) hb=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "capacity.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in clients:$clients hold:$hold connect-rate:$rate shards:$shards targets:$targets heartbeat-interval:$hb; do
  [[ "${v#*:}" =~ ^[1-9][0-9]*$ ]] || { echo "capacity.sh: --${v%%:*} must be a positive integer, got '${v#*:}'" >&2; exit 2; }
done

scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGLINK_TESTS=OFF >/dev/null
cmake --build build-release --target longlink-gateway longlink-loadgen -j"$(nproc)"

# Each loopback destination address has its own ephemeral port space; connect() takes ports of one parity
# first, so about 32,000 connections per destination address with the widened range below.
sysctl -qw net.ipv4.ip_local_port_range="1024 65535" || echo "warning: cannot widen ip_local_port_range" >&2
sysctl -qw net.core.somaxconn=65535 || true
sysctl -qw net.ipv4.tcp_max_syn_backlog=65535 || true
[ -e /proc/sys/net/netfilter/nf_conntrack_max ] && sysctl -qw net.netfilter.nf_conntrack_max=4194304 || true

per_shard=$(( (clients + shards - 1) / shards + 1024 ))
nofile=$(ulimit -n)
if [ "$per_shard" -gt "$nofile" ]; then
  echo "capacity.sh: $per_shard connections per shard exceed the open-files limit ($nofile): use more --shards" >&2
  exit 2
fi

log=$(mktemp -d)
trap 'kill $gw_pid 2>/dev/null || true; rm -rf "$log"' EXIT
build-release/gateway/longlink-gateway --bind=0.0.0.0 --port=0 --metrics-bind=127.0.0.1 --metrics-port=0 \
  --shards="$shards" --max-conns-per-shard="$per_shard" --heartbeat-interval="${hb}s" --heartbeat-timeout="$((3 * hb))s" \
  --backend=echo --auth=none >"$log/gw.out" 2>"$log/gw.err" &
gw_pid=$!
wait_gateway "$log/gw.out" "$log/gw.err"
echo "$gw_line"

slab_kib() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
rss_bytes() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }

rss0=$(metric process_resident_memory_bytes)
slab0=$(slab_kib)
tlist=$(for i in $(seq 1 "$targets"); do printf "127.0.%d.%d:%s," $(( i / 250 )) $(( i % 250 + 1 )) "$port"; done)
ramp=$(( (clients + rate - 1) / rate ))
duration=$(( ramp + hold ))
echo "capacity: $clients clients at $rate/s over $targets destination addresses, $shards shards each side, hold ${hold}s, heartbeat every ${hb}s"

gw_cpu0=$(cpu_ticks "$gw_pid")
t0=$(date +%s.%N)
# Heartbeats only. A capacity run measures the gateway holding connections: the clients' own PONG timeout
# is set past the gateway's heartbeat timeout, so a slow moment of the generator (which shares the cores)
# never makes clients drop and reconnect on their own; only the gateway closes connections.
cat >"$log/capacity.yaml" <<YAML
name: capacity
heartbeat:
  pong_timeout: 120s
messaging:
  rate_per_client: 0
YAML
build-release/loadgen/longlink-loadgen --scenario="$log/capacity.yaml" --target="${tlist%,}" --clients="$clients" \
  --connect-rate="$rate" --duration="${duration}s" --shards="$shards" --live-interval=5s \
  --report-json="$log/report.json" >"$log/lg.out" 2>"$log/lg.err" &
lg_pid=$!
sleep 1
lg_rss0=$(rss_bytes "$lg_pid")
lg_cpu0=$(cpu_ticks "$lg_pid")

# Sample the gateway during the hold, once everyone should be logged in.
sleep $(( ramp + hold / 2 ))
sessions=$(metric longlink_gateway_sessions)
rss1=$(metric process_resident_memory_bytes)
slab1=$(slab_kib)
gw_cpu1=$(cpu_ticks "$gw_pid")
lg_rss1=$(rss_bytes "$lg_pid")
lg_cpu1=$(cpu_ticks "$lg_pid")
t1=$(date +%s.%N)
unexpected=$(metric longlink_gateway_closes_total)
wait "$lg_pid" || lg_status=$?
# (a run shorter than the live interval has no such lines: not an error)
{ grep -E "t= *[0-9]+[05]\\.0s" "$log/lg.err" || true; } | awk "NR % 6 == 1" | sed 's/^/  /'
cat "$log/lg.out"

hz=$(getconf CLK_TCK)
echo "  connect rate asked: $rate/s; every client was due to connect within ${ramp}s"
python3 - "$sessions" "$clients" "$rss0" "$rss1" "$slab0" "$slab1" "$gw_cpu0" "$gw_cpu1" "$hz" "$t0" "$t1" "$unexpected" "$log/report.json" "$lg_rss0" "$lg_rss1" "$lg_cpu0" "$lg_cpu1" <<'PY'
import json, sys
(sessions, clients, rss0, rss1, slab0, slab1, c0, c1, hz, t0, t1, unexpected, rep, lrss0, lrss1, lc0, lc1) = sys.argv[1:]
sessions, clients = int(sessions), int(clients)
rss0, rss1, slab0, slab1 = int(rss0), int(rss1), int(slab0) * 1024, int(slab1) * 1024
r = json.load(open(rep))
hb = r["latency_ms"]["heartbeat_rtt"]
print("capacity summary")
print("  sessions held at mid-hold    %d of %d" % (sessions, clients))
print("  connects                     %d attempts, %d errors; connect p99 %.2f ms, login p99 %.2f ms" % (
    r["metrics"]["connect_attempts"], r["metrics"]["connect_errors"], r["latency_ms"]["connect"]["p99"],
    r["latency_ms"]["login"]["p99"]))
print("  gateway RSS                  %.1f MiB -> %.1f MiB: %.0f bytes per connection" % (rss0 / 2**20, rss1 / 2**20, (rss1 - rss0) / max(1, sessions)))
print("  kernel slab                  %.1f GiB -> %.1f GiB: %.0f bytes per connection (both ends)" % (slab0 / 2**30, slab1 / 2**30, (slab1 - slab0) / max(1, sessions)))
print("  gateway CPU                  %.1f%% of one core over the run so far" % (100.0 * (int(c1) - int(c0)) / int(hz) / (float(t1) - float(t0))))
print("  loadgen RSS                  %.1f MiB at mid-hold, %.0f bytes per client in all; the run added %.0f bytes "
      "per client" % (int(lrss1) / 2**20, int(lrss1) / max(1, int(clients)), r["metrics"]["memory_per_client_bytes"]))
print("  loadgen CPU                  %.1f%% of one core from its start to mid-hold" % (
    100.0 * (int(lc1) - int(lc0)) / int(hz) / (float(t1) - float(t0) - 1)))
print("  loadgen timer lag p99        %.2f ms (a run is valid below 100 ms)" % r["latency_ms"]["generator_lag"]["p99"])
print("  heartbeat RTT (ms)           p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f (%d beats)" % (hb["p50"], hb["p99"], hb["p999"], hb["max"], hb["count"]))
print("  gateway closes before the end %d (expected 0)" % int(unexpected))
ok = sessions == clients and int(unexpected) == 0 and r["metrics"]["connect_errors"] == 0
if not r["valid"]:
    print("  result: INVALID (%s)" % r["invalid_reason"])
    sys.exit(3)
print("  result: %s" % ("ok" if ok else "FAILED"))
sys.exit(0 if ok else 1)
PY
