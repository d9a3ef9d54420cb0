#!/usr/bin/env bash
# Crash test of the local backend at a larger scale than ctest's: clients stream SENDs, the gateway is
# killed with SIGKILL and restarted on the same --data-dir, N times; then every acknowledged message must
# be in its recipients' inboxes exactly once and resending the unacknowledged ones must store nothing twice
# (tests/integration/test_crash.py).
#   scripts/crash-test.sh [--rounds N] [--senders N] [--messages N] [--fsync always|batch|none] [--build DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=10 senders=16 messages=2000 fsync=batch build=build
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift ;;
    --senders) senders=$2; shift ;;
    --messages) messages=$2; shift ;;
    --fsync) fsync=$2; shift ;;
    --build) build=$2; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "crash-test.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
gw="$build/gateway/longlink-gateway"
[ -x "$gw" ] || { echo "crash-test.sh: $gw not built (cmake --build $build)" >&2; exit 2; }
echo "crash test: $rounds kills, $senders senders x $messages messages per round, fsync=$fsync"
cd tests/integration
LONGLINK_GATEWAY="../../$gw" LONGLINK_CRASH_ROUNDS=$rounds LONGLINK_CRASH_SENDERS=$senders \
  LONGLINK_CRASH_MESSAGES=$messages LONGLINK_CRASH_FSYNC=$fsync PYTHONDONTWRITEBYTECODE=1 \
  python3 -m unittest -v test_crash
