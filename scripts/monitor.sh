#!/usr/bin/env bash
# Starts a local Prometheus next to a running gateway or cluster, with the repository's configuration and alert
# rules (dashboards/prometheus/), a temporary data directory and a loopback listener, and prints its URLs.
# Where grafana-server is installed it also starts a Grafana on loopback with the datasource and the three
# dashboards provisioned; otherwise it prints how to import the dashboards into a Grafana of your own.
# Everything it started stops, and the temporary data is removed, after --duration, on Ctrl-C, or on SIGTERM.
#   scripts/monitor.sh [--gateway HOST:METRICS_PORT]... [--loadgen HOST:PORT]... [--port 9090]
#                      [--scrape-interval 15s] [--duration 1h] [--grafana-port 3000] [--no-grafana]
#   --gateway          a gateway's metrics endpoint (repeat for a cluster; default 127.0.0.1:9100)
#   --loadgen          a longlink-loadgen --metrics-port endpoint (run it with --metrics-linger)
#   --port             Prometheus's port on 127.0.0.1 (0 picks a free one)
#   --scrape-interval  scrape and rule evaluation interval (Grafana's datasource timeInterval is set to it)
#   --duration         stop after this long (sleep syntax: 30s, 5m, 2h; default 1h)
#   --grafana-port     Grafana's port on 127.0.0.1 when grafana-server is installed (0 picks a free one)
#   --no-grafana       do not start Grafana even if it is installed
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

gateways=(); loadgens=(); port=9090; interval=15s; duration=1h; grafana_port=3000; want_grafana=1
while [ $# -gt 0 ]; do
  case "$1" in
    --gateway) gateways+=("$2"); shift ;;
    --loadgen) loadgens+=("$2"); shift ;;
    --port) port=$2; shift ;;
    --scrape-interval) interval=$2; shift ;;
    --duration|--for) duration=$2; shift ;;
    --grafana-port) grafana_port=$2; shift ;;
    --no-grafana) want_grafana= ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "monitor.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#gateways[@]} -gt 0 ] || gateways=(127.0.0.1:9100)
for t in "${gateways[@]}" "${loadgens[@]}"; do
  [[ "$t" =~ ^[^[:space:]/]+:[0-9]+$ ]] || { echo "monitor.sh: '$t' is not HOST:PORT" >&2; exit 2; }
done
[[ "$port" =~ ^[0-9]+$ ]] || { echo "monitor.sh: --port must be a number" >&2; exit 2; }
[[ "$grafana_port" =~ ^[0-9]+$ ]] || { echo "monitor.sh: --grafana-port must be a number" >&2; exit 2; }
[[ "$interval" =~ ^[0-9]+(ms|s|m)$ ]] || { echo "monitor.sh: --scrape-interval like 5s or 1m" >&2; exit 2; }
[[ "$duration" =~ ^[0-9]+(\.[0-9]+)?[smhd]?$ && ! "$duration" =~ ^0+(\.0+)?[smhd]?$ ]] || {
  echo "monitor.sh: --duration like 30s, 10m or 2h (and not 0)" >&2; exit 2; }
prometheus=$(command -v prometheus || true)
if [ -z "$prometheus" ]; then
  echo "monitor.sh: prometheus not found (Debian package prometheus; scripts/deps.sh installs it)" >&2
  exit 1
fi
grafana=; grafana_home=
if [ -n "$want_grafana" ]; then
  # Grafana's packages install grafana-server with its files in /usr/share/grafana (GRAFANA_HOME overrides).
  grafana=$(command -v grafana-server || true)
  for home in "${GRAFANA_HOME:-}" /usr/share/grafana /usr/local/share/grafana; do
    if [ -n "$home" ] && [ -d "$home/conf" ]; then grafana_home=$home; break; fi
  done
  if [ -n "$grafana" ] && [ -z "$grafana_home" ]; then
    echo "monitor.sh: grafana-server found but not its home directory (set GRAFANA_HOME); not starting it" >&2
    grafana=
  fi
fi
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
[ "$port" != 0 ] || port=$(free_port)
if [ -n "$grafana" ] && [ "$grafana_port" = 0 ]; then grafana_port=$(free_port); fi

dir=$(mktemp -d -t longlink-monitor.XXXXXX)
prom_pid=; grafana_pid=; sleeper=
stop_pid() {  # SIGTERM, then SIGKILL after 15 s: a child of this script, by its PID
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$sleeper"
  stop_pid "$grafana_pid"
  stop_pid "$prom_pid"
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The repository's configuration with this run's interval; scrape_timeout may not exceed the interval.
mkdir -p "$dir/targets" "$dir/data"
sed -E -e "s/^(  scrape_interval:).*/\1 $interval/" -e "s/^(  evaluation_interval:).*/\1 $interval/" \
  -e "s/^(  scrape_timeout:).*/\1 $interval/" "$root/dashboards/prometheus/prometheus.yml" >"$dir/prometheus.yml"
cp "$root/dashboards/prometheus/alerts.yml" "$dir/alerts.yml"
targets_file() {
  echo "- targets:"
  for t in "$@"; do echo "    - $t"; done
}
targets_file "${gateways[@]}" >"$dir/targets/gateways.yml"
if [ ${#loadgens[@]} -gt 0 ]; then targets_file "${loadgens[@]}" >"$dir/targets/loadgen.yml"; else echo "[]" >"$dir/targets/loadgen.yml"; fi
if command -v promtool >/dev/null; then promtool check config "$dir/prometheus.yml" >/dev/null; fi

http_ok() {  # python3 rather than curl: scripts/deps.sh installs it
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" >/dev/null 2>&1
}
wait_ready() {  # URL PID NAME LOG
  for _ in $(seq 1 300); do
    if http_ok "$1"; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then
      echo "monitor.sh: $3 exited:" >&2
      tail -20 "$4" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "monitor.sh: $3 did not become ready within about 30 s" >&2
  return 1
}

"$prometheus" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
  --web.listen-address="127.0.0.1:$port" --storage.tsdb.retention.time=7d --log.level=warn \
  >"$dir/prometheus.log" 2>&1 &
prom_pid=$!
url="http://127.0.0.1:$port"
wait_ready "$url/-/ready" "$prom_pid" prometheus "$dir/prometheus.log"

cat <<EOF
prometheus $url (pid $prom_pid, scrape interval $interval, data in $dir)
  gateways: ${gateways[*]}
  loadgen:  ${loadgens[*]:-none}
  targets:  $url/targets    alerts: $url/alerts
EOF

if [ -n "$grafana" ]; then
  # A throwaway Grafana: its own data, logs and provisioning in the temporary directory, anonymous viewers,
  # the datasource pointing at the Prometheus above and the dashboards read from the repository.
  mkdir -p "$dir/grafana/data" "$dir/grafana/logs" "$dir/grafana/plugins" \
    "$dir/grafana/provisioning/datasources" "$dir/grafana/provisioning/dashboards"
  sed -E -e "s#^(    url:).*#\1 $url#" -e "s#^(      timeInterval:).*#\1 $interval#" \
    "$root/dashboards/provisioning/datasources/longlink-prometheus.yaml" \
    >"$dir/grafana/provisioning/datasources/longlink-prometheus.yaml"
  sed -E -e "s#^(      path:).*#\1 $root/dashboards#" \
    "$root/dashboards/provisioning/dashboards/longlink.yaml" >"$dir/grafana/provisioning/dashboards/longlink.yaml"
  GF_SERVER_HTTP_ADDR=127.0.0.1 GF_SERVER_HTTP_PORT=$grafana_port \
  GF_PATHS_DATA="$dir/grafana/data" GF_PATHS_LOGS="$dir/grafana/logs" GF_PATHS_PLUGINS="$dir/grafana/plugins" \
  GF_PATHS_PROVISIONING="$dir/grafana/provisioning" \
  GF_AUTH_ANONYMOUS_ENABLED=true GF_AUTH_ANONYMOUS_ORG_ROLE=Viewer GF_ANALYTICS_REPORTING_ENABLED=false \
  GF_ANALYTICS_CHECK_FOR_UPDATES=false GF_LOG_MODE=file \
    "$grafana" --homepath="$grafana_home" >"$dir/grafana.log" 2>&1 &
  grafana_pid=$!
  grafana_url="http://127.0.0.1:$grafana_port"
  wait_ready "$grafana_url/api/health" "$grafana_pid" grafana-server "$dir/grafana.log"
  cat <<EOF
grafana $grafana_url (pid $grafana_pid; anonymous viewer, admin/admin to edit)
  overview:      $grafana_url/d/longlink-gateway-overview
  backends:      $grafana_url/d/longlink-backends
  capacity test: $grafana_url/d/longlink-capacity-test
EOF
else
  cat <<EOF
Grafana (${want_grafana:+not installed here; }not started):
  datasource: type Prometheus, URL $url, scrape interval $interval
    or provision it: $root/dashboards/provisioning/datasources/longlink-prometheus.yaml
    (set url: $url and jsonData.timeInterval: $interval)
  dashboards: Dashboards > New > Import, upload $root/dashboards/{gateway-overview,backends,capacity-test}.json
    and pick that datasource; or provision them: $root/dashboards/provisioning/dashboards/longlink.yaml
    (set options.path: $root/dashboards)
EOF
fi

echo "stopping in $duration (Ctrl-C stops sooner)"
sleep "$duration" &
sleeper=$!
# Whichever ends first: the duration, or what this script started.
while kill -0 "$sleeper" 2>/dev/null && kill -0 "$prom_pid" 2>/dev/null &&
      { [ -z "$grafana_pid" ] || kill -0 "$grafana_pid" 2>/dev/null; }; do
  sleep 0.2
done
if ! kill -0 "$prom_pid" 2>/dev/null; then
  echo "monitor.sh: prometheus exited early:" >&2
  tail -5 "$dir/prometheus.log" >&2
  exit 1
fi
if [ -n "$grafana_pid" ] && ! kill -0 "$grafana_pid" 2>/dev/null; then
  echo "monitor.sh: grafana-server exited early:" >&2
  tail -5 "$dir/grafana.log" >&2
  exit 1
fi
echo "stopping"
