#!/usr/bin/env bash
# Builds the e2e fault-injecting proxy (hack/faultproxy, Go standard library only) into the
# cache directory, keyed by a hash of its source, and prints the binary's path. A cached
# build of the same source is reused.
#   CO_CACHE=/path hack/build-faultproxy.sh     cache root (default ~/.cache/confidential-operator)
set -euo pipefail
cd "$(dirname "$0")/faultproxy"
CACHE=${CO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/confidential-operator}
hash=$(cat go.mod ./*.go | sha256sum | cut -c1-16)
OUT="$CACHE/faultproxy-$hash"
if [ ! -x "$OUT/faultproxy" ]; then
  export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
  export PATH="/usr/local/go/bin:$PATH"
  mkdir -p "$OUT"
  go build -trimpath -o "$OUT/faultproxy.tmp.$$" .
  mv "$OUT/faultproxy.tmp.$$" "$OUT/faultproxy"
fi
echo "$OUT/faultproxy"
