#!/usr/bin/env bash
# Builds the local test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok) from the Go module proxy into a cache directory keyed by
# version. Nothing built here lands in the repository. Idempotent: a complete cache is reused.
#
#   hack/build-control-plane.sh          build what is missing, print the bin directory
#   CO_CACHE=/path hack/...              choose the cache root (default ~/.cache/confidential-operator)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CACHE=${CO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/confidential-operator}
OUT="$CACHE/cp-k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
BIN="$OUT/bin"

export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export PATH="/usr/local/go/bin:$PATH"

log() { printf '[build-control-plane] %s\n' "$*" >&2; }

need() { for b in "$@"; do [ -x "$BIN/$b" ] || return 0; done; return 1; }

mkdir -p "$BIN" "$OUT/src"

# One build at a time per cache: hack/cluster-up.sh calls this script when binaries are missing,
# and parallel test runs must not build (and mv) the same files concurrently.
exec 9> "$OUT/.build.lock"
if ! flock -n 9; then
  log "another build is running for $OUT; waiting for it"
  flock 9
fi

build_etcd() {
  need etcd || return 0
  log "etcd $ETCD_VERSION"
  local d="$OUT/src/etcd"
  rm -rf "$d"; mkdir -p "$d"; cd "$d"
  printf 'module local.test/etcdbin\n\ngo 1.26.0\n' > go.mod
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
    -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

build_kwok() {
  if ! need kwok && [ -s "$OUT/kwok.yaml" ]; then return 0; fi
  log "kwok $KWOK_VERSION"
  GOBIN="$BIN" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  # Stage documents only. The KwokConfiguration is written per cluster by hack/lib/cluster-lib.sh
  # with explicit options: kwok v0.8.0 does not default a KwokConfiguration read from a file
  # ('options: {}' leaves nodeLeaseParallelism at 0 and kwok exits).
  {
    for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
             pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
      printf -- '---\n'; cat "$dir/kustomize/stage/$f.yaml"
    done
  } > "$OUT/kwok.yaml.tmp"
  mv "$OUT/kwok.yaml.tmp" "$OUT/kwok.yaml"
}

build_k8s() {
  need kube-apiserver kube-controller-manager kube-scheduler kubectl || return 0
  log "kubernetes $K8S_VERSION"
  local staging="v0.${K8S_VERSION#v1.}" minor="${K8S_VERSION#v1.}"
  minor=${minor%%.*}
  local d="$OUT/src/k8s"
  mkdir -p "$d"; cd "$d"
  if [ ! -s go.sum ]; then
    # Upstream Kubernetes 1.N pins the Go 1.(N-10) runtime defaults.
    printf 'module local.test/k8sbin\n\ngo 1.26.0\n\ngodebug default=go1.%s\n' "$((minor - 10))" > go.mod
    go mod download "k8s.io/kubernetes@$K8S_VERSION"
    local up m
    up="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$up"); do
      go mod edit -replace="$m=$m@$staging"
    done
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION"
  fi
  local vf="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
  vf="$vf -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  vf="$vf -X k8s.io/component-base/version.buildDate=2000-01-01T00:00:00Z"
  vf="$vf $(echo "$vf" | sed 's#k8s.io/component-base/version#k8s.io/client-go/pkg/version#g')"
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$BIN/$c" ] && continue
    log "  $c"
    go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "-s -w $vf" \
      -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$BIN/$c.tmp" "$BIN/$c"
  done
}

start=$(date +%s)
build_etcd
build_kwok
build_k8s
log "done in $(( $(date +%s) - start ))s: $BIN"
echo "$OUT"
