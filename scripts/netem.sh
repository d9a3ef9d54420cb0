#!/usr/bin/env bash
# Real network impairment: the gateway and the loadgen in two network namespaces (ll-gw, ll-lg) joined by a
# veth pair, with kernel netem on each side's egress (delay, jitter, loss, reordering, rate, duplication,
# corruption). Prints the loadgen's report, the qdisc and TCP statistics of both sides, checks that the
# ledger lost no acknowledged message, and tears everything down. Needs root.
#   scripts/netem.sh [--profile wifi|4g|3g|edge|gprs|lossy] [--delay 50ms] [--jitter 10ms] [--loss 1%]
#                    [--reorder 5%] [--rate 10mbit] [--duplicate 1%] [--corrupt 0.1%]
#                    [--clients 200] [--seconds 20] [--msg-rate 0.5] [--connect-rate 100] [--shards 1]
#                    [--addresses 16] [--seed 1] [--engine auto|netem|relay] [--build] [--build-dir build]
#                    [--report-json FILE] [--ns-prefix ll] [--cleanup]
# Each impairment applies to both directions (so --delay 50ms adds 100 ms to the round trip); flags given
# after or before --profile override the profile's values. --engine=auto uses kernel netem when the kernel
# has it and otherwise a userspace relay over TUN devices with the same parameters (said loudly);
# --engine=netem refuses to run without kernel netem. The namespaces are <ns-prefix>-gw and <ns-prefix>-lg;
# each run first removes what an earlier one left behind, and --cleanup only does that.
# Exit status: 0 ok, 1 acknowledged messages lost (or duplicated) or the loadgen failed, 2 bad arguments,
# 3 the environment cannot run it (not root, no network namespaces, no netem with --engine=netem).
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=llnet0
GW_IP=10.77.0.1
LG_IP=10.77.0.2
PORT=7000

clients=200; seconds=20; msg_rate=0.5; connect_rate=100; shards=1; naddr=16; seed=1
prefix=ll; engine=auto; build=0; build_dir=build; report_json=""; cleanup_only=0; profile=""
delay=""; jitter=""; loss=""; reorder=""; rate=""; duplicate=""; corrupt=""

usage() { sed -n '2,17p' "$0"; }
die() { echo "netem.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  arg=$1
  case "$arg" in --*=*) set -- "${arg%%=*}" "${arg#*=}" "${@:2}"; arg=$1 ;; esac
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --build) build=1; shift; continue ;;
    --cleanup) cleanup_only=1; shift; continue ;;
  esac
  [ $# -ge 2 ] || die "$arg needs a value (try --help)"
  case "$arg" in
    --profile) profile=$2 ;;
    --delay) delay=$2 ;;
    --jitter) jitter=$2 ;;
    --loss) loss=$2 ;;
    --reorder) reorder=$2 ;;
    --rate) rate=$2 ;;
    --duplicate) duplicate=$2 ;;
    --corrupt) corrupt=$2 ;;
    --clients) clients=$2 ;;
    --seconds) seconds=$2 ;;
    --msg-rate) msg_rate=$2 ;;
    --connect-rate) connect_rate=$2 ;;
    --shards) shards=$2 ;;
    --addresses) naddr=$2 ;;
    --seed) seed=$2 ;;
    --engine) engine=$2 ;;
    --ns-prefix) prefix=$2 ;;
    --build-dir) build_dir=$2 ;;
    --report-json) report_json=$2 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
  shift 2
done

# Profiles: one-way delay, jitter (uniform, either way), rate, loss, reorder; applied to each direction.
# docs/loadgen-scenarios.md "Real network impairment (scripts/netem.sh)" lists the same values.
case "$profile" in
  "") p=(0ms 0ms "" 0% 0%) ;;
  # One-way delay, jitter and the downlink rate of the loadgen's in-process profiles of the same name
  # (docs/loadgen-scenarios.md), plus the packet loss and reordering only a real link can show.
  wifi) p=(10ms 5ms 50mbit 0.1% 0%) ;;
  4g) p=(25ms 10ms 20mbit 0.5% 0%) ;;
  3g) p=(100ms 40ms 2mbit 1% 0%) ;;
  edge) p=(250ms 100ms 200kbit 2% 0%) ;;
  gprs) p=(500ms 200ms 40kbit 3% 0%) ;;
  lossy) p=(150ms 100ms 1mbit 5% 10%) ;;
  *) die "--profile: expected wifi, 4g, 3g, edge, gprs or lossy, got '$profile'" ;;
esac
delay=${delay:-${p[0]}}; jitter=${jitter:-${p[1]}}; rate=${rate:-${p[2]}}
loss=${loss:-${p[3]}}; reorder=${reorder:-${p[4]}}; duplicate=${duplicate:-0%}; corrupt=${corrupt:-0%}

num='[0-9]+(\.[0-9]+)?'
[[ $delay =~ ^${num}(us|ms|s)$ ]] || die "--delay: expected a time like 50ms, got '$delay'"
[[ $jitter =~ ^${num}(us|ms|s)$ ]] || die "--jitter: expected a time like 10ms, got '$jitter'"
[ -z "$rate" ] || [[ $rate =~ ^${num}(bit|kbit|mbit|gbit)$ ]] || die "--rate: expected a rate like 10mbit or 200kbit, got '$rate'"
for v in loss reorder duplicate corrupt; do
  [[ ${!v} =~ ^${num}%?$ ]] || die "--$v: expected a percentage like 1%, got '${!v}'"
  printf -v "$v" '%s%%' "${!v%\%}"
  awk -v x="${!v%\%}" 'BEGIN {exit !(x <= 100)}' || die "--$v: at most 100%, got '${!v}'"
done
for v in clients seconds connect_rate shards naddr seed; do
  flag=${v//_/-}; [ "$v" = naddr ] && flag=addresses
  if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -eq 0 ]; then die "--$flag: expected a positive whole number, got '${!v}'"; fi
done
[ "$naddr" -le 200 ] || die "--addresses: at most 200"
[[ $msg_rate =~ ^${num}$ ]] || die "--msg-rate: expected a number, got '$msg_rate'"
case "$engine" in auto|netem|relay) ;; *) die "--engine: expected auto, netem or relay, got '$engine'" ;; esac
[[ $prefix =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$ ]] || die "--ns-prefix: expected a short name like ll, got '$prefix'"
GW_NS=$prefix-gw
LG_NS=$prefix-lg

to_ms() { awk -v t="$1" 'BEGIN {n = t + 0; if (t ~ /us$/) n /= 1000; else if (t ~ /ms$/) ; else if (t ~ /s$/) n *= 1000; print n}'; }
nonzero() { awk -v x="${1%\%}" 'BEGIN {exit !(x + 0 > 0)}'; }
[ "$(awk -v j="$(to_ms "$jitter")" -v d="$(to_ms "$delay")" 'BEGIN {print (j <= d)}')" = 1 ] \
  || die "--jitter ($jitter) may not exceed --delay ($delay)"
impaired=0
{ nonzero "$(to_ms "$delay")" || [ -n "$rate" ] || nonzero "$loss" || nonzero "$reorder" || nonzero "$duplicate" \
  || nonzero "$corrupt"; } && impaired=1
if nonzero "$reorder" && ! nonzero "$(to_ms "$delay")"; then
  die "--reorder needs a --delay: reordered packets are the ones sent without it"
fi

[ "$(id -u)" = 0 ] || { echo "netem.sh: needs root (network namespaces, veth, tc)" >&2; exit 3; }

# Tools: iproute2 (ip netns, tc, nstat), ethtool (offloads off, so netem sees real segments), ping.
missing=()
for pair in ip:iproute2 tc:iproute2 nstat:iproute2 ethtool:ethtool ping:iputils-ping python3:python3 timeout:coreutils; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

in_gw() { ip netns exec "$GW_NS" "$@"; }
in_lg() { ip netns exec "$LG_NS" "$@"; }

# Removes the namespaces of this or an earlier run, after stopping whatever still runs inside them (the
# gateway, the loadgen, the relay); deleting the namespaces deletes the veth pair and the TUN devices.
cleanup() {
  local ns pid
  for ns in "$GW_NS" "$LG_NS"; do
    [ -e "/run/netns/$ns" ] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.1; done
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}
# One run per prefix at a time: a second one waits here instead of tearing down the first one's namespaces.
lock=/run/lock/longlink-netem.$prefix.lock
[ -d /run/lock ] || lock=/tmp/longlink-netem.$prefix.lock
exec 9>"$lock"
if [ "$cleanup_only" = 1 ]; then wait_lock=(-n); else wait_lock=(-w 300); fi
flock "${wait_lock[@]}" 9 || { echo "netem.sh: another run with --ns-prefix=$prefix is under way" >&2; exit 3; }
cleanup
[ "$cleanup_only" = 1 ] && { echo "netem.sh: removed namespaces $GW_NS and $LG_NS (if there were any)"; exit 0; }

if [ "$build" = 1 ]; then
  scripts/deps.sh iproute2 ethtool iputils-ping
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build_dir" --target longlink-gateway longlink-loadgen -j"$(nproc)"
fi
gateway=$build_dir/gateway/longlink-gateway
loadgen=$build_dir/loadgen/longlink-loadgen
for b in "$gateway" "$loadgen"; do
  [ -x "$b" ] || { echo "netem.sh: $b not found: build it (--build) or pass --build-dir" >&2; exit 3; }
done

log=$(mktemp -d)
relay_pid=""
gw_pid=""
trap 'cleanup; rm -rf "$log"' EXIT
trap 'exit 130' INT TERM

ip netns add "$GW_NS" 2>"$log/err" || { echo "netem.sh: cannot create network namespaces: $(cat "$log/err")" >&2; exit 3; }
ip netns add "$LG_NS"
in_gw ip link set lo up
in_lg ip link set lo up

config_note() {  # what the kernel's build configuration says about netem and modules, when it is readable
  local cfg
  cfg=$(zcat /proc/config.gz 2>/dev/null || cat "/boot/config-$(uname -r)" 2>/dev/null || true)
  grep -q '^# CONFIG_NET_SCH_NETEM is not set' <<<"$cfg" && printf '; %s' "CONFIG_NET_SCH_NETEM is not set in this kernel ($(uname -r))"
  grep -q '^# CONFIG_MODULES is not set' <<<"$cfg" && printf '%s' ", which cannot load modules either"
  true
}
# Does this kernel have netem? (sch_netem built in, or loadable as a module.)
has_netem=0
if command -v modprobe >/dev/null; then modprobe -q sch_netem 2>/dev/null || true; fi
if in_gw tc qdisc add dev lo root netem delay 0ms 2>"$log/netem-probe"; then
  has_netem=1
  in_gw tc qdisc del dev lo root
fi
use=veth
if [ "$impaired" = 1 ]; then
  if [ "$has_netem" = 1 ] && [ "$engine" != relay ]; then
    use=netem
  elif [ "$engine" = netem ]; then
    echo "netem.sh: this kernel has no netem qdisc (tc: $(tr -d '\n' <"$log/netem-probe")); sch_netem is" \
      "neither built in nor loadable$(config_note). Use --engine=relay for the userspace relay." >&2
    exit 3
  else
    use=relay
    if [ "$has_netem" = 0 ]; then
      echo "netem.sh: NOTE: kernel netem is unavailable (tc: $(tr -d '\n' <"$log/netem-probe"))$(config_note)." >&2
      echo "netem.sh: NOTE: impairing with the userspace relay over TUN devices instead (same parameters; the" \
        "loss, reordering and retransmissions TCP sees are just as real, but the relay is not the kernel's netem)." >&2
    fi
  fi
fi

if [ "$use" = relay ]; then
  # Each namespace gets a TUN device; the relay (below) moves IP packets between the two with the impairment.
  in_gw ip tuntap add dev "$DEV" mode tun
  in_lg ip tuntap add dev "$DEV" mode tun
else
  ip link add name "$DEV" netns "$GW_NS" type veth peer name "$DEV" netns "$LG_NS"
  for ns in "$GW_NS" "$LG_NS"; do
    # Without segmentation offloads netem delays, drops and reorders real MTU-sized segments.
    ip netns exec "$ns" ethtool -K "$DEV" tso off gso off gro off >/dev/null 2>&1 || true
  done
fi
in_gw ip addr add "$GW_IP/24" dev "$DEV"
for i in $(seq 10 $((10 + naddr - 1))); do in_gw ip addr add "10.77.0.$i/24" dev "$DEV"; done
in_lg ip addr add "$LG_IP/24" dev "$DEV"
in_gw ip link set "$DEV" up
in_lg ip link set "$DEV" up

rate_bits() { awk -v r="$1" 'BEGIN {n = r + 0; if (r ~ /gbit$/) n *= 1e9; else if (r ~ /mbit$/) n *= 1e6; else if (r ~ /kbit$/) n *= 1e3; printf "%.0f", n}'; }
describe="delay ${delay} jitter ${jitter} loss ${loss} reorder ${reorder} duplicate ${duplicate} corrupt ${corrupt} rate ${rate:-unlimited}"
if [ "$use" = netem ]; then
  args=(delay "$delay")
  nonzero "$(to_ms "$jitter")" && args+=("$jitter")
  args+=(loss "$loss")
  nonzero "$reorder" && args+=(reorder "$reorder")
  nonzero "$duplicate" && args+=(duplicate "$duplicate")
  nonzero "$corrupt" && args+=(corrupt "$corrupt")
  [ -n "$rate" ] && args+=(rate "$rate")
  in_gw tc qdisc add dev "$DEV" root netem limit 10000 "${args[@]}"
  in_lg tc qdisc add dev "$DEV" root netem limit 10000 "${args[@]}"
  echo "netem.sh: kernel netem on both ends of the veth: ${args[*]}"
elif [ "$use" = relay ]; then
  python3 - "$GW_NS" "$LG_NS" "$DEV" "$(to_ms "$delay")" "$(to_ms "$jitter")" "${loss%\%}" "${reorder%\%}" \
    "${duplicate%\%}" "${corrupt%\%}" "$( [ -n "$rate" ] && rate_bits "$rate" || echo 0)" "$seed" "$log/relay.json" \
    >"$log/relay.out" 2>&1 9>&- <<'PY' &
# Userspace netem: forwards IP packets between the TUN devices of two namespaces, each direction with its own
# delay + uniform jitter, loss, reordering (a reordered packet skips the delay, as in netem), duplication,
# corruption (one flipped bit), a rate limit (serialisation time per packet) and a 10,000-packet queue.
import ctypes, fcntl, heapq, json, os, random, select, signal, struct, sys, time
gw_ns, lg_ns, dev = sys.argv[1:4]
delay, jitter = float(sys.argv[4]) / 1e3, float(sys.argv[5]) / 1e3
loss, reorder, dup, corrupt = (float(x) / 100 for x in sys.argv[6:10])
rate, seed, out = float(sys.argv[10]), int(sys.argv[11]), sys.argv[12]
libc = ctypes.CDLL(None, use_errno=True)
def tun(ns):
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns " + ns)
    os.close(fd)
    t = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(t, 0x400454CA, struct.pack("16sH", dev.encode(), 0x0001 | 0x1000))  # TUNSETIFF, IFF_TUN|IFF_NO_PI
    return t
a, b = tun(gw_ns), tun(lg_ns)
rnd = random.Random(seed)
names = {a: "gateway->loadgen", b: "loadgen->gateway"}
peer = {a: b, b: a}
st = {fd: dict(packets=0, sent=0, dropped=0, queue_drops=0, reordered=0, duplicated=0, corrupted=0, last=0.0, queued=0)
      for fd in (a, b)}
heap, seq, stop = [], 0, False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
print("relay ready", flush=True)
while not stop:
    now = time.monotonic()
    timeout = min(0.2, max(0.0, heap[0][0] - now)) if heap else 0.2
    try:
        ready, _, _ = select.select([a, b], [], [], timeout)
    except InterruptedError:
        continue
    for fd in ready:
        s = st[fd]
        for _ in range(256):
            try:
                pkt = os.read(fd, 65536)
            except BlockingIOError:
                break
            s["packets"] += 1
            if loss and rnd.random() < loss:
                s["dropped"] += 1
                continue
            copies = 1
            if dup and rnd.random() < dup:
                copies = 2
                s["duplicated"] += 1
            for _ in range(copies):
                if s["queued"] >= 10000:
                    s["queue_drops"] += 1
                    continue
                p = pkt
                if corrupt and rnd.random() < corrupt:
                    i = rnd.randrange(len(p))
                    p = p[:i] + bytes([p[i] ^ (1 << rnd.randrange(8))]) + p[i + 1:]
                    s["corrupted"] += 1
                now = time.monotonic()
                if reorder and rnd.random() < reorder:
                    t = now
                    s["reordered"] += 1
                else:
                    t = now + max(0.0, delay + rnd.uniform(-jitter, jitter))
                    if rate:
                        t = max(t, s["last"]) + len(p) * 8 / rate
                        s["last"] = t
                seq += 1
                s["queued"] += 1
                heapq.heappush(heap, (t, seq, fd, p))
    now = time.monotonic()
    while heap and heap[0][0] <= now:
        _, _, fd, p = heapq.heappop(heap)
        st[fd]["queued"] -= 1
        try:
            os.write(peer[fd], p)
            st[fd]["sent"] += 1
        except OSError:
            st[fd]["queue_drops"] += 1
with open(out, "w") as f:
    json.dump({names[fd]: {k: v for k, v in s.items() if k != "last"} for fd, s in st.items()}, f)
PY
  relay_pid=$!
  for _ in $(seq 50); do grep -q "relay ready" "$log/relay.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "relay ready" "$log/relay.out" || { echo "netem.sh: the relay did not start:" >&2; cat "$log/relay.out" >&2; exit 1; }
  echo "netem.sh: userspace relay between TUN devices, each direction: $describe"
else
  echo "netem.sh: plain veth, no impairment"
fi

# The gateway, bound to every address of its namespace.
ip netns exec "$GW_NS" "$gateway" --bind=0.0.0.0 --port="$PORT" --metrics-port=-1 --shards="$shards" --backend=local --data-dir="$log/data" \
  --auth=none --heartbeat-interval=5s --heartbeat-timeout=60s --drain-seconds=1 >"$log/gw.out" 2>"$log/gw.err" 9>&- &
gw_pid=$!
for _ in $(seq 100); do grep -q listening "$log/gw.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$log/gw.out" || { echo "netem.sh: the gateway did not start:" >&2; cat "$log/gw.err" >&2; exit 1; }
sed 's/^/netem.sh: /' "$log/gw.out"

if command -v ping >/dev/null; then
  in_lg ping -q -n -c 10 -i 0.05 -W 5 "$GW_IP" 2>&1 | sed -n 's/^\(.*packet loss\).*$/netem.sh: ping: \1/p; s/^rtt \(.*\)$/netem.sh: ping rtt \1/p' || true
fi

# Connections spread over the gateway namespace's addresses.
targets="$GW_IP:$PORT"
for i in $(seq 10 $((10 + naddr - 1))); do targets+=",10.77.0.$i:$PORT"; done
report=${report_json:-$log/report.json}
echo "netem.sh: $clients clients from $LG_NS to $((naddr + 1)) addresses in $GW_NS for ${seconds}s, $msg_rate msg/s per client"
lg_status=0
# The loadgen ends by itself (its duration, a 3 s grace, a bounded close); timeout is a second bound.
# It runs in the background so that a signal to this script is handled at once (the EXIT trap stops it).
ip netns exec "$LG_NS" timeout --kill-after=10 $((seconds + 120)) "$loadgen" --target="$targets" --clients="$clients" \
  --connect-rate="$connect_rate" --duration="${seconds}s" --rate="$msg_rate" --shards="$shards" --seed="$seed" \
  --live-interval=5s --report-json="$report" 9>&- &
wait $! || lg_status=$?

# The kernel's TCP counters of each namespace (they start from zero with the namespace).
tcp_counters=$(for ns in "$GW_NS" "$LG_NS"; do
  printf '  %-6s' "$ns"
  ip netns exec "$ns" nstat -asz TcpOutSegs TcpRetransSegs TcpExtTCPTimeouts TcpExtTCPLossProbes TcpExtTCPOFOQueue \
    TcpExtTCPSACKReorder TcpExtTCPDSACKRecv TcpInCsumErrors 2>/dev/null \
    | awk '!/^#/ {printf " %s=%s", $1, $2} END {print ""}'
done)
if [ -n "$relay_pid" ]; then kill -TERM "$relay_pid" 2>/dev/null || true; wait "$relay_pid" 2>/dev/null || true; fi
echo
if [ "$use" = netem ]; then
  for ns in "$GW_NS" "$LG_NS"; do
    echo "tc -s qdisc show dev $DEV in $ns (egress of $( [ "$ns" = "$GW_NS" ] && echo gateway-\>loadgen || echo loadgen-\>gateway)):"
    ip netns exec "$ns" tc -s qdisc show dev "$DEV" | sed 's/^/  /'
  done
elif [ "$use" = relay ]; then
  echo "relay statistics (per direction; the relay plays netem's part):"
  python3 - "$log/relay.json" <<'PY' || cat "$log/relay.out"
import json, sys
for d, s in json.load(open(sys.argv[1])).items():
    print("  %-17s %d packets in, %d out, %d in flight at the end; dropped %d (loss) + %d (queue full), reordered %d,"
          " duplicated %d, corrupted %d" % (d, s["packets"], s["sent"], s["queued"], s["dropped"], s["queue_drops"],
                                            s["reordered"], s["duplicated"], s["corrupted"]))
PY
fi
echo "TCP counters when the loadgen finished (nstat, per namespace):"
echo "$tcp_counters"

status=0
python3 - "$report" "$lg_status" <<'PY' || status=1
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    print("ledger: no report (%s); loadgen exit status %s" % (e, sys.argv[2]))
    sys.exit(1)
l = r["ledger"]
print("ledger: %d sent, %d acked, %d expected deliveries, %d delivered, %d lost, %d duplicates, %d out of order"
      % (l["sent"], l["acked"], l["expected_deliveries"], l["delivered_unique"], l["lost"], l["duplicates"], l["out_of_order"]))
ok = l["lost"] == 0 and l["duplicates"] == 0 and l["acked"] > 0 and sys.argv[2] == "0"
print("result: %s (loadgen exit status %s)" % ("ok: no acknowledged message lost" if ok else "FAILED", sys.argv[2]))
sys.exit(0 if ok else 1)
PY
kill -TERM "$gw_pid" 2>/dev/null || true
wait "$gw_pid" 2>/dev/null || true
exit $status
