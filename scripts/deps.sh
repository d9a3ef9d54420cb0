#!/usr/bin/env bash
# Installs the Debian packages longlink needs to build and test. Idempotent and quiet when all is there.
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail

pkgs=(build-essential cmake ninja-build pkg-config python3
      liburing-dev libmimalloc-dev libabsl-dev prometheus-cpp-dev libgtest-dev libbenchmark-dev
      libssl-dev libcpp-httplib-dev libyaml-cpp-dev nlohmann-json3-dev python3-websockets prometheus "$@")
# Optional test dependencies: the browser test (tests/integration/test_web_chat.py) drives headless Chromium
# with Selenium and skips, saying why, when they are missing. A failure to install them is only a warning.
optional=(chromium chromium-driver python3-selenium)

# The npm `ws` client of the integration tests (pinned by tests/integration/node/package-lock.json), when node
# is installed; the test itself runs the same npm ci if this did not.
root=$(cd "$(dirname "$0")/.." && pwd)
if command -v npm >/dev/null && [ ! -d "$root/tests/integration/node/node_modules/ws" ]; then
  npm ci --prefix "$root/tests/integration/node" --no-audit --no-fund >/dev/null 2>&1 ||
    echo "deps.sh: npm ci in tests/integration/node failed" >&2
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${pkgs[@]}"; do
  installed "$p" || missing+=("$p")
done
missing_optional=()
for p in "${optional[@]}"; do
  installed "$p" || missing_optional+=("$p")
done
if [ ${#missing[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ]; then exit 0; fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  # The prometheus package (for promtool and the tests' own Prometheus) would start a server on :9090 where
  # an init system runs; tests start their own on loopback ports, so package installs start no service.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  status=0
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  if [ -n "$guard" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  [ "$status" = 0 ] || exit "$status"
fi
if [ ${#missing_optional[@]} -gt 0 ]; then
  echo "installing (optional, for tests): ${missing_optional[*]}" >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${missing_optional[@]}" >/dev/null ||
    echo "deps.sh: could not install ${missing_optional[*]}; the browser test will be skipped" >&2
fi
