#!/usr/bin/env bash
# Builds the confidential-operator container image without a container engine: an OCI image
# archive (a tar of an OCI image layout, as `k3s ctr images import` and `skopeo copy
# oci-archive:` read it) holding one layer with
#   /confidential-operator          the stripped RelWithDebInfo binary
#   the shared libraries it loads   resolved with ldd, with their soname symlinks, and the
#                                   dynamic loader, at the paths this machine has them
#   /etc/ssl/certs/ca-certificates.crt, /etc/passwd, /etc/group (user nonroot 65532),
#   /etc/nsswitch.conf, /tmp, /home/nonroot
# and no shell or any other program. The config runs /confidential-operator controller as
# 65532:65532.
#
#   hack/build-image.sh [--image REF] [--output FILE] [--build-dir DIR]
#
#   --image, $CO_IMAGE          image reference (default ghcr.io/cypherpunk/confidential-operator:
#                               <CMake project version>, the one manifests/install.yaml uses)
#   --output, $CO_IMAGE_OUT     archive to write (default <build dir>/confidential-operator.oci.tar)
#   --build-dir, $BUILD         CMake build directory, reused when present (default build)
#   $SOURCE_DATE_EPOCH          every timestamp in the image (default: the last commit's time)
#
# The same sources, build and Debian packages give the same image digest: files are sorted,
# owned by 0:0 (or 65532 for /home/nonroot) and dated SOURCE_DATE_EPOCH, and no history or
# config field carries the build time. Needs umoci, GNU tar, binutils (strip), jq.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib/image-lib.sh
source hack/lib/image-lib.sh

IMAGE=${CO_IMAGE:-}
OUT=${CO_IMAGE_OUT:-}
BUILD_DIR=${BUILD:-build}
while [ $# -gt 0 ]; do
  case "$1" in
    --image) IMAGE=$2; shift 2 ;;
    --image=*) IMAGE=${1#*=}; shift ;;
    --output | -o) OUT=$2; shift 2 ;;
    --output=*) OUT=${1#*=}; shift ;;
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --build-dir=*) BUILD_DIR=${1#*=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in umoci tar strip ldd jq; do
  command -v "$tool" >/dev/null || die "$tool not found (hack/install-deps.sh installs it)"
done

VERSION=$(co_project_version)
IMAGE=${IMAGE:-$(co_default_image)}
FULL_REF=$(co_image_normalize "$IMAGE") || exit 2
TAG=${FULL_REF##*:}
OUT=${OUT:-$BUILD_DIR/confidential-operator.oci.tar}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# ---- the binary: a Release build (an existing build directory is reused) ----------------
log "building $BUILD_DIR/confidential-operator (RelWithDebInfo)"
# Sanitizers off even in a reused directory: their runtimes are not in the image.
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCO_ASAN=OFF -DCO_UBSAN=OFF >/dev/null
cmake --build "$BUILD_DIR" --target confidential-operator -j"${JOBS:-2}" >/dev/null
BIN=$BUILD_DIR/confidential-operator
[ -x "$BIN" ] || die "no binary at $BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/co-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS"

strip --strip-all -o "$ROOTFS/confidential-operator" "$BIN"
chmod 0755 "$ROOTFS/confidential-operator"

# mirror_path PATH: makes PATH exist in the rootfs as it exists here. Every symlink on the way
# (a directory such as /lib -> usr/lib on merged-/usr Debian, a soname link such as
# libuv.so.1 -> libuv.so.1.0.0) is recreated with the same target text, and that target is
# mirrored too, so the loader finds each library under the name the binary asks for.
declare -A MIRRORED=() # path here -> its resolved path, once mirrored
mirror_path() {
  local p=$1 cur="" comp link target
  local -a parts
  IFS=/ read -ra parts <<<"${p#/}"
  for comp in "${parts[@]}"; do
    [ -n "$comp" ] || continue
    cur="$cur/$comp"
    if [ -n "${MIRRORED[$cur]:-}" ]; then
      cur=${MIRRORED[$cur]}
      continue
    fi
    local here=$cur
    if [ -L "$cur" ]; then
      link=$(readlink "$cur")
      [ -L "$ROOTFS$cur" ] || ln -s "$link" "$ROOTFS$cur"
      target=$link
      [[ $target == /* ]] || target="${cur%/*}/$target"
      mirror_path "$target"
      # Continue below the resolved directory: an absolute link in the rootfs would point
      # outside it while we are still outside.
      cur=$(readlink -f "$cur")
    elif [ -d "$cur" ]; then
      mkdir -p "$ROOTFS$cur"
    elif [ -f "$cur" ]; then
      [ -e "$ROOTFS$cur" ] || cp "$cur" "$ROOTFS$cur"
    else
      die "cannot mirror $cur (of $p)"
    fi
    MIRRORED[$here]=$cur
  done
}

# ---- shared libraries and the loader, as ldd resolves them for the binary ------------------
mapfile -t LIBS < <(ldd "$BIN" | awk '
  /=> not found/ { print "MISSING " $1; next }
  $2 == "=>" && $3 ~ /^\// { print $3; next }
  $1 ~ /^\// { print $1 }')
[ ${#LIBS[@]} -gt 0 ] || die "ldd found no libraries for $BIN (a static binary needs none; check)"
for lib in "${LIBS[@]}"; do
  [[ $lib != MISSING* ]] || die "library not found: ${lib#MISSING }"
  mirror_path "$lib"
done
# ldd prints the loader under the name in the binary's PT_INTERP; make sure of that name.
interp=$(readelf -l "$BIN" | sed -nE 's/.*Requesting program interpreter: (.*)\]/\1/p')
[ -z "$interp" ] || mirror_path "$interp"

# ---- CA certificates, users, name service ------------------------------------------------
CA=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA" ] || die "$CA missing (install ca-certificates)"
install -D -m 0644 "$CA" "$ROOTFS$CA"
install -d -m 0755 "$ROOTFS/etc"
cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
# Without this file glibc asks DNS before /etc/hosts.
cat >"$ROOTFS/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
chmod 0644 "$ROOTFS"/etc/passwd "$ROOTFS"/etc/group "$ROOTFS"/etc/nsswitch.conf
install -d -m 1777 "$ROOTFS/tmp"
install -d -m 0700 "$ROOTFS/home/nonroot"

# No program but ours: a shell or any other executable in the image is a build error.
extra=$(find "$ROOTFS" -type f -perm /111 ! -path "$ROOTFS/confidential-operator" \
  ! -name '*.so' ! -name '*.so.*' -printf '/%P\n')
[ -z "$extra" ] || die "unexpected executables in the image: $extra"

# ---- the layer: a sorted tar with fixed owners and dates -----------------------------------
TAR_OPTS=(--format=posix "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"
  --sort=name --mtime="@$SOURCE_DATE_EPOCH" --numeric-owner)
(cd "$ROOTFS" && find . -mindepth 1 ! -path ./home/nonroot -print0 |
  LC_ALL=C sort -z |
  tar "${TAR_OPTS[@]}" --owner=0 --group=0 --no-recursion --null -T - -cf "$WORK/layer.tar")
tar "${TAR_OPTS[@]}" --owner=65532 --group=65532 --no-recursion -C "$ROOTFS" \
  -rf "$WORK/layer.tar" ./home/nonroot

# ---- the OCI layout ----------------------------------------------------------------------
LAYOUT=$WORK/layout
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:$TAG"
umoci raw add-layer --image "$LAYOUT:$TAG" --history.created="$CREATED" \
  --history.created_by="hack/build-image.sh: confidential-operator, its libraries, CA certificates" \
  "$WORK/layer.tar"
# GNUTLS_NO_IMPLICIT_INIT: libcurl links GnuTLS (through librtmp) without ever using it; its
# load-time initialisation would cost about 0.8 MiB of resident memory for nothing.
umoci config --image "$LAYOUT:$TAG" --no-history \
  --created="$CREATED" --author="confidential-operator" \
  --config.user=65532:65532 --config.env=GNUTLS_NO_IMPLICIT_INIT=1 \
  --config.entrypoint=/confidential-operator --config.cmd=controller \
  --config.workingdir=/ --config.stopsignal=SIGTERM \
  --config.label=org.opencontainers.image.title=confidential-operator \
  --config.label="org.opencontainers.image.description=Runs Kubernetes workloads in Kata Containers or gVisor sandboxes" \
  --config.label="org.opencontainers.image.version=$VERSION" \
  --config.label="org.opencontainers.image.revision=$REVISION" \
  --config.label="org.opencontainers.image.created=$CREATED" \
  --manifest.annotation="org.opencontainers.image.version=$VERSION" \
  --manifest.annotation="org.opencontainers.image.revision=$REVISION" \
  --manifest.annotation="org.opencontainers.image.created=$CREATED"
umoci gc --layout "$LAYOUT"

# index.json is not content-addressed, so naming the image there changes no digest. containerd
# (k3s ctr images import) names the image after io.containerd.image.name; OCI tools take the
# tag from org.opencontainers.image.ref.name.
jq -c --arg name "$FULL_REF" --arg tag "$TAG" \
  '.manifests[0].annotations = {"io.containerd.image.name": $name,
                                "org.opencontainers.image.ref.name": $tag}' \
  "$LAYOUT/index.json" >"$WORK/index.json"
mv "$WORK/index.json" "$LAYOUT/index.json"
[ "$(jq '.manifests | length' "$LAYOUT/index.json")" = 1 ] || die "layout holds more than one image"

chmod -R u=rwX,go=rX "$LAYOUT"
find "$LAYOUT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$(dirname "$OUT")"
tar "${TAR_OPTS[@]}" --owner=0 --group=0 -C "$LAYOUT" -cf "$OUT.tmp" oci-layout index.json blobs
mv "$OUT.tmp" "$OUT"

MANIFEST=$(jq -r '.manifests[0].digest' "$LAYOUT/index.json")
log "image  $FULL_REF"
log "digest $MANIFEST"
log "wrote  $OUT ($(du -k "$OUT" | cut -f1) KiB; rootfs $(du -sk "$ROOTFS" | cut -f1) KiB, ${#LIBS[@]} libraries)"
log "import on k3s: k3s ctr images import $OUT"
