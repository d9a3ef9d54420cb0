#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: unit, integration (the real gateway on
# loopback), the NATS backend against real nats-server processes (label cluster), fuzz-corpus replay and the
# scale test.
#   scripts/test.sh              RelWithDebInfo build in build/
#   scripts/test.sh --sanitize   also builds with AddressSanitizer+UBSan in build-asan/ and runs the
#                                unit and integration tests there
#   scripts/test.sh -R regex     only tests matching regex (passed to ctest)
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=0
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=1 ;;
    -R|-L|-E) ctest_args+=("$1" "$2"); shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

scripts/deps.sh
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" "${ctest_args[@]}"

if [ "$sanitize" = 1 ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DLONGLINK_SANITIZE=ON -DLONGLINK_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" -L 'unit|integration|fuzz' -LE scale "${ctest_args[@]}"
fi
