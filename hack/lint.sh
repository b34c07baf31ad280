#!/usr/bin/env bash
# Static checks: formatting (clang-format), banned C functions, exported symbol prefix,
# shell syntax. `hack/lint.sh --fix` reformats in place instead of failing.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
mapfile -t csrc < <(git ls-files -co --exclude-standard -- '*.c' '*.h' | grep -v '^build')

if [ "${1:-}" = "--fix" ]; then
  clang-format -i -style=file "${csrc[@]}"
  exit 0
fi

echo "[lint] clang-format (${#csrc[@]} files)"
if ! clang-format --dry-run --Werror -style=file "${csrc[@]}" 2>/tmp/co-format.log; then
  head -40 /tmp/co-format.log
  echo "[lint] formatting differs: run 'make format'"
  fail=1
fi

echo "[lint] banned functions"
# Unbounded or unchecked: use snprintf, co_buf, memcpy with sizes, strtol with checks.
if grep -nE '\b(sprintf|vsprintf|strcpy|strcat|strtok|strtok_r|gets|atoi|atol|atof|sscanf)\s*\(' \
    "${csrc[@]}"; then
  echo "[lint] banned functions used"
  fail=1
fi

echo "[lint] shell syntax"
for f in $(git ls-files -co --exclude-standard -- '*.sh' .ci/run | grep -v '^build'); do
  bash -n "$f" || fail=1
done

lib=${CO_LINT_LIB:-build/libco.a}
[ -f "$lib" ] || lib=""
if [ -n "$lib" ]; then
  echo "[lint] exported symbols of $lib carry the co_ prefix"
  bad=$(nm --defined-only -g "$lib" 2>/dev/null | awk 'NF==3 && $2 ~ /[TDBR]/ {print $3}' |
        grep -vE '^(co_|__odr_asan|__asan|__ubsan|__sancov)' || true)
  if [ -n "$bad" ]; then
    echo "$bad"
    echo "[lint] symbols without the co_ prefix (make them static or prefix them)"
    fail=1
  fi
fi

echo "[lint] manifests/install.yaml up to date"; hack/gen-install.sh --check || fail=1
[ $fail -eq 0 ] && echo "[lint] ok"
exit $fail
