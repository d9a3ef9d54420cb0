#!/usr/bin/env bash
# Installs the Debian packages longlink needs to build and test. Idempotent and quiet when all is there.
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail

pkgs=(build-essential cmake ninja-build pkg-config python3
      liburing-dev libmimalloc-dev libabsl-dev prometheus-cpp-dev libgtest-dev libbenchmark-dev
      libssl-dev libcpp-httplib-dev libyaml-cpp-dev nlohmann-json3-dev python3-websockets prometheus libnats-dev
      "$@")
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
# nats-server 2.10 or later (--backend=nats and its tests): Debian 12 ships 2.9.10, so the package comes from
# Debian 13's suite, added with a low pin priority (nothing else is taken from it unless named). It is a static
# binary; every library stays Debian 12's.
nats_ok() {
  command -v nats-server >/dev/null || return 1
  local v
  v=$(nats-server --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  [ -n "$v" ] || return 1
  set -- $v
  [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }
}
need_nats=0
nats_ok || need_nats=1
if [ ${#missing[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ] && [ $need_nats = 0 ]; then exit 0; fi

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
if [ $need_nats = 1 ]; then
  if [ ! -e /etc/apt/sources.list.d/longlink-trixie.sources ]; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
      $SUDO tee /etc/apt/sources.list.d/longlink-trixie.sources >/dev/null
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' |
      $SUDO tee /etc/apt/preferences.d/longlink-trixie >/dev/null
    $SUDO apt-get update -qq >/dev/null
  fi
  echo "installing: nats-server from Debian 13 (trixie)" >&2
  $SUDO apt-get install -y -qq --no-install-recommends nats-server/trixie >/dev/null
  nats_ok || { echo "deps.sh: nats-server 2.10 or later is needed; got: $(nats-server --version 2>&1)" >&2; exit 1; }
fi
