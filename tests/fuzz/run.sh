#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for
# FUZZ_SECONDS (default 60) from the committed seeds plus the corpus of
# earlier runs, kept in $BUILD/corpus. A crash, leak, hang or broken
# invariant stops with the failing input in $BUILD/crashes/ and exit 1.
#
#   make fuzz                      every target, 60 s each
#   FUZZ_SECONDS=600 FUZZ_TARGETS="fuzz_chat" make fuzz
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-"fuzz_ws_reader fuzz_http fuzz_proxy fuzz_admin fuzz_chat fuzz_jwt fuzz_capture"}

CC=clang cmake -S . -B "$BUILD" -DTAGARELA_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS="-O1 -g" >/dev/null
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$(nproc)" --target $TARGETS -- --no-print-directory >/dev/null

mkdir -p "$BUILD/crashes"
/usr/bin/python3 tests/fuzz/capture_seeds.py "$BUILD/seeds/capture"
for t in $TARGETS; do
  name=${t#fuzz_}
  corpus="$BUILD/corpus/$name"
  mkdir -p "$corpus"
  seeds=tests/fuzz/seeds/$name
  [ "$name" = capture ] && seeds=$BUILD/seeds/capture
  opts=(-max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096
        -artifact_prefix="$BUILD/crashes/$name-" -print_final_stats=1)
  [ "$name" = chat ] && opts+=(-dict=tests/fuzz/chat.dict)
  [ "$name" = capture ] && opts+=(-max_len=65536)
  echo "fuzzing $name for ${SECONDS_EACH}s"
  if ! "$BUILD/$t" "${opts[@]}" "$corpus" "$seeds" >"$BUILD/$name.log" 2>&1; then
    grep -E "ERROR|runtime error|SUMMARY" "$BUILD/$name.log" | head -5
    echo "fuzz_$name failed: input in $BUILD/crashes/, log in $BUILD/$name.log" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$BUILD/$name.log" | tail -1
done
echo "no failures"
