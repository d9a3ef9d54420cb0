# Helpers shared by the scripts that start a gateway and a loadgen on this machine (sourced, not run).

# wait_gateway OUT ERR: waits for the gateway's "listening" line in OUT (20 s at most), exits with its
# stderr if it never comes, and sets gw_line, port and mport (the client and metrics ports it reports).
wait_gateway() {
  for _ in $(seq 200); do grep -q listening "$1" 2>/dev/null && break; sleep 0.1; done
  gw_line=$(head -1 "$1")
  [ -n "$gw_line" ] || { echo "the gateway did not start:" >&2; cat "$2" >&2; exit 1; }
  port=$(sed -E 's/.*:([0-9]+) shards=.*/\1/' <<<"$gw_line")
  mport=$(sed -E 's/.* metrics=([0-9]+).*/\1/' <<<"$gw_line")
}

# metric NAME: the sum of a gateway metric's samples (needs mport).
metric() {
  curl -s "http://127.0.0.1:$mport/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $NF} END {printf "%.0f", s}'
}

# cpu_ticks PID: user + system CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
