#!/usr/bin/env bash
# Builds containerd 2.x (only cmd/containerd) from the Go module proxy into the cache directory,
# keyed by version, and prints the binary's path. test/e2e/test_containerd.sh runs its
# `config dump` on the node agent's version 3 configurations (Debian bookworm's containerd is
# 1.6 and knows only the version 2 schema). Nothing built here lands in the repository.
# Idempotent: a cached binary is reused.
#
#   hack/build-containerd2.sh                   build if missing, print the binary's path
#   CONTAINERD2_VERSION=v2.4.2 hack/...          another version (default: the one k3s 1.36 ships)
#   CO_CACHE=/path hack/...                      cache root (default ~/.cache/confidential-operator)
set -euo pipefail

# k3s release-1.36 ships containerd v2.3.4-k3s1.36 (k3s PR #14512), a fork of upstream v2.3.4.
VERSION=${CONTAINERD2_VERSION:-v2.3.4}
CACHE=${CO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/confidential-operator}
OUT="$CACHE/containerd-$VERSION"
BIN="$OUT/bin/containerd"

log() { printf '[build-containerd2] %s\n' "$*" >&2; }

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

# Pure Go, no cgo: nothing beyond Go itself is needed. The tags leave out what needs C headers
# (btrfs) or is never used by `config dump` (devmapper, zfs, OpenTelemetry exporters); the CRI
# plugins, whose configuration is checked, stay in.
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export PATH="/usr/local/go/bin:$PATH"
TAGS=no_btrfs,no_devmapper,no_zfs,no_tracing
MOD=github.com/containerd/containerd/v2

mkdir -p "$OUT/bin"
# One build at a time per version: parallel test runs must not build (and mv) the same file.
exec 9> "$OUT/.build.lock"
if ! flock -n 9; then
  log "another build is running for $OUT; waiting for it"
  flock 9
fi
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

start=$(date +%s)
log "containerd $VERSION"
src="$OUT/src"
rm -rf "$src"
mkdir -p "$src"
cd "$src"
printf 'module local.test/containerdbin\n\ngo 1.26.0\n' > go.mod
go get "$MOD@$VERSION"
go build -trimpath -tags "$TAGS" \
  -ldflags "-s -w -X $MOD/version.Version=$VERSION -X $MOD/version.Package=$MOD" \
  -o "$BIN.tmp.$$" "$MOD/cmd/containerd"
mv "$BIN.tmp.$$" "$BIN"
cd /
rm -rf "$src"
log "done in $(( $(date +%s) - start ))s"
echo "$BIN"
