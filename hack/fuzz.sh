#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS (default 60) on its seed
# corpus. A crash fails the run and leaves the reproducer in test/fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
CC=clang cmake -S . -B build-fuzz -DCO_BUILD_FUZZERS=ON -DCO_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
targets=$(sed -n "s/^co_fuzzer(\(fuzz_[a-z_]*\))/\1/p" test/fuzz/CMakeLists.txt)
# shellcheck disable=SC2086
cmake --build build-fuzz -j2 --target $targets >/dev/null
mkdir -p test/fuzz/crashes
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rc=0
for t in $targets; do
  bin=build-fuzz/test/fuzz/$t
  name=$(basename "$bin"); name=${name#fuzz_}
  corpus=test/fuzz/corpus/$name
  dict=test/fuzz/$name.dict
  mkdir -p "$work/$name"
  args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536
        -artifact_prefix=test/fuzz/crashes/"$name"- -print_final_stats=0)
  [ -f "$dict" ] && args+=(-dict="$dict")
  echo "[fuzz] $name for ${secs}s"
  if ! "$bin" "${args[@]}" "$work/$name" "$corpus" >"$work/$name.log" 2>&1; then
    tail -30 "$work/$name.log"
    echo "[fuzz] $name FAILED"
    rc=1
  else
    grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs' "$work/$name.log" | tail -1 || true
  fi
done
exit $rc
