#!/usr/bin/env bash
# The fault suite (tests/integration/fault_suite.py): kill -9 rounds (fsync batch and always), SIGTERM rounds
# under a loadgen run, a full disk and its recovery, and slowloris, a connection flood, slow consumers and
# garbage frames beside a healthy loadgen population compared with a baseline run of the same sitting, and on
# the cluster backend a kill -9 of a gateway and of one NATS node of three under a loadgen run.
# Prints one row per fault with what held; exits 1 if any row failed. Builds Release first.
#   scripts/faults.sh [--quick] [--kill-rounds 20] [--sigterm-rounds 7] [--clients 2000] [--seconds 20]
# The disk-full row mounts a tmpfs and needs root; without it the row says it was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
for a in "$@"; do
  case "$a" in -h|--help) sed -n '2,7p' "$0"; exit 0 ;; esac
done
scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGLINK_TESTS=OFF >/dev/null
cmake --build build-release --target longlink-gateway longlink-loadgen -j"$(nproc)" >/dev/null
root=$(pwd)
cd tests/integration
LONGLINK_GATEWAY="$root/build-release/gateway/longlink-gateway" LONGLINK_LOADGEN="$root/build-release/loadgen/longlink-loadgen" \
  PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 /usr/bin/python3 fault_suite.py "$@"
