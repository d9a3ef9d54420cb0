#!/usr/bin/env bash
# Static checks of the Prometheus side of dashboards/ with promtool: the configuration (and the rule files it
# loads), the alert rules with every lint, and the alerts' unit tests (tests/monitoring/alerts_test.yml: a
# firing and a quiet case for each alert). ctest runs it as monitoring_rules.
#   tests/monitoring/check.sh [PROMTOOL]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
promtool=${1:-promtool}
if ! command -v "$promtool" >/dev/null; then
  echo "check.sh: promtool not found (Debian package prometheus; scripts/deps.sh installs it)" >&2
  exit 1
fi
"$promtool" check config --lint=all "$root/dashboards/prometheus/prometheus.yml"
"$promtool" check rules --lint=all --lint-fatal "$root/dashboards/prometheus/alerts.yml"
"$promtool" test rules "$root/tests/monitoring/alerts_test.yml"
