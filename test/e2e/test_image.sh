# shellcheck shell=bash
# The container image (hack/build-image.sh): the OCI archive is well formed (every blob matches
# its digest), its layers unpack into a root with the binary, its libraries and CA certificates
# and no shell, where `confidential-operator version` runs under chroot as the image's user and
# `status` reaches the local API server over TLS; the config runs as 65532 with the binary as
# entrypoint; `ctr images import` (what `k3s ctr images import` runs) names it as the bundle
# does and a private containerd runs it with runc; the build is reproducible and the image name
# configurable. Building reuses the Release build directory ($CO_IMAGE_BUILD_DIR, default
# build/). Needs root (chroot, containerd) or password-less sudo.

IMG_DIR=""
IMG_BUILD_DIR=${CO_IMAGE_BUILD_DIR:-$PWD/build}
IMG_MAX_KIB=$((25 * 1024)) # the archive; about 8.5 MiB with Debian bookworm's libraries

# img_root: chroot and unpacking as another owner need root; use sudo when not root.
img_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# img_build OUT [ENV=VALUE...]: builds the image into OUT, the log next to it.
img_build() {
  local out=$1; shift
  env -u CO_IMAGE -u CO_IMAGE_OUT "$@" hack/build-image.sh --build-dir "$IMG_BUILD_DIR" --output "$out" >"$out.log" 2>&1 ||
    { sed 's/^/#     /' "$out.log" >&2; return 1; }
}

# img_jq ARGS...: jq -e without output.
img_jq() { jq -e "$@" >/dev/null; }

# img_blob DIGEST: path of a blob of the extracted layout.
img_blob() { echo "$IMG_DIR/layout/blobs/${1%%:*}/${1#*:}"; }

# img_blobs_valid: every blob's content hashes to its name, and every descriptor's size matches.
img_blobs_valid() {
  local f sum d
  for f in "$IMG_DIR"/layout/blobs/sha256/*; do
    sum=$(sha256sum "$f" | cut -d' ' -f1)
    [ "$sum" = "$(basename "$f")" ] || { log "  blob $f hashes to $sum"; return 1; }
  done
  d=$(jq -r '.manifests[0] | "\(.digest) \(.size)"' "$IMG_DIR/layout/index.json")
  [ "$(stat -c %s "$(img_blob "${d% *}")")" = "${d#* }" ] || { log "  manifest size differs"; return 1; }
  jq -r '(.config, .layers[]) | "\(.digest) \(.size)"' "$IMG_DIR/manifest.json" |
    while read -r dg sz; do
      [ "$(stat -c %s "$(img_blob "$dg")")" = "$sz" ] || { log "  blob $dg size differs"; exit 1; }
    done
}

# img_bundle_runs REF: every image reference of manifests/install.yaml that comes from CO_IMAGE
# (the lines a bundle generated for another image differs in) is REF.
img_bundle_runs() {
  local images
  images=$(diff <(CO_IMAGE=example.invalid/sentinel:0 hack/gen-install.sh --stdout) \
    manifests/install.yaml | sed -nE 's/^> *image: *"?([^" ]+)"? *$/\1/p' | sort -u)
  [ "$images" = "$1" ] || { log "  bundle images from CO_IMAGE: '$images' (want $1)"; return 1; }
}

# img_config_is JQ_EXPR: the image config satisfies the jq expression.
img_config_is() {
  jq -e "$1" "$IMG_DIR/config.json" >/dev/null || { log "  config fails: $1"; return 1; }
}

# img_no_shell: no shell, busybox or other program in the root: the only executable regular
# files are the binary and shared libraries.
img_no_shell() {
  local r=$IMG_DIR/rootfs bad
  for s in bin/sh bin/bash bin/dash usr/bin/sh bin/busybox; do
    if [ -e "$r/$s" ] || [ -L "$r/$s" ]; then log "  found /$s"; return 1; fi
  done
  bad=$(find "$r" \( -name sh -o -name bash -o -name dash -o -name ash -o -name busybox \) -printf '/%P\n')
  [ -z "$bad" ] || { log "  found $bad"; return 1; }
  bad=$(find "$r" -type f -perm /111 ! -path "$r/confidential-operator" ! -name '*.so.*' -printf '/%P\n')
  [ -z "$bad" ] || { log "  executables besides the binary: $bad"; return 1; }
}

# img_owned_by_root: everything is owned by 0:0 but the user's home.
img_owned_by_root() {
  local bad
  bad=$(find "$IMG_DIR/rootfs" -mindepth 1 ! -path "$IMG_DIR/rootfs/home/nonroot" \
    \( ! -uid 0 -o ! -gid 0 \) -printf '/%P\n')
  [ -z "$bad" ] || { log "  not owned by root: $bad"; return 1; }
  [ "$(stat -c %u:%g:%a "$IMG_DIR/rootfs/home/nonroot")" = 65532:65532:700 ]
}

# img_no_sh_runs: what `kubectl exec ... sh` would try fails.
img_no_sh_runs() {
  ! img_root chroot --userspec=65532:65532 "$IMG_DIR/rootfs" /bin/sh -c true 2>/dev/null
}

# img_chroot ARGS...: runs the image's entrypoint with ARGS in the unpacked root as the image's
# user, with an environment as empty as a container's.
img_chroot() {
  local user
  user=$(jq -r '.config.User' "$IMG_DIR/config.json")
  img_root env -i HOME=/home/nonroot "$(command -v chroot)" --userspec="$user" "$IMG_DIR/rootfs" \
    "$(jq -r '.config.Entrypoint[0]' "$IMG_DIR/config.json")" "$@"
}

test_image_build_and_run() {
  IMG_DIR=$E2E_DIR/image
  rm -rf "$IMG_DIR"; mkdir -p "$IMG_DIR"/layout "$IMG_DIR"/rootfs
  local archive=$IMG_DIR/confidential-operator.oci.tar version t0
  # shellcheck source=hack/lib/image-lib.sh
  version=$(source hack/lib/image-lib.sh && co_project_version)
  t0=$(date +%s)
  check "hack/build-image.sh builds the archive" img_build "$archive"
  [ "$E2E_CURRENT_FAILED" -eq 0 ] || return
  log "  built in $(( $(date +%s) - t0 ))s"

  # The archive is an OCI layout; extract it and the layers with plain tar.
  check "the archive is a tar of an OCI layout" tar -xf "$archive" -C "$IMG_DIR/layout"
  check "oci-layout version 1.0.0" \
    img_jq '.imageLayoutVersion == "1.0.0"' "$IMG_DIR/layout/oci-layout"
  check "index names the image for containerd and OCI tools" img_jq --arg v "$version" \
    '.manifests | length == 1 and .[0].annotations["io.containerd.image.name"] ==
       "ghcr.io/cypherpunk/confidential-operator:\($v)"
     and .[0].annotations["org.opencontainers.image.ref.name"] == $v' \
    "$IMG_DIR/layout/index.json"
  check "the committed bundle runs the image built by default" img_bundle_runs \
    "$(jq -r '.manifests[0].annotations["io.containerd.image.name"]' "$IMG_DIR/layout/index.json")"
  cp "$(img_blob "$(jq -r '.manifests[0].digest' "$IMG_DIR/layout/index.json")")" \
    "$IMG_DIR/manifest.json"
  cp "$(img_blob "$(jq -r '.config.digest' "$IMG_DIR/manifest.json")")" "$IMG_DIR/config.json"
  check "every blob matches its digest and size" img_blobs_valid

  # The config.
  check "config: user 65532:65532" img_config_is '.config.User == "65532:65532"'
  check "config: entrypoint is the binary, no shell" \
    img_config_is '.config.Entrypoint == ["/confidential-operator"] and .config.Cmd == ["controller"]'
  check "config: GnuTLS left uninitialised (unused, saves resident memory)" \
    img_config_is '.config.Env | index("GNUTLS_NO_IMPLICIT_INIT=1") != null'
  check "config: version label $version" \
    img_config_is ".config.Labels[\"org.opencontainers.image.version\"] == \"$version\""
  check "config: linux, one layer per diff_id" \
    img_config_is ".os == \"linux\" and (.rootfs.diff_ids | length) == $(jq '.layers | length' "$IMG_DIR/manifest.json")"

  # The root file system: the layers in order, as a runtime applies them.
  local layer
  for layer in $(jq -r '.layers[].digest' "$IMG_DIR/manifest.json"); do
    check "layer $layer unpacks" img_root tar -xzpf "$(img_blob "$layer")" --numeric-owner \
      -C "$IMG_DIR/rootfs"
  done
  check "no shell or other program in the image" img_no_shell
  check "files owned by root, the home by 65532" img_owned_by_root
  check "CA certificates present" test -s "$IMG_DIR/rootfs/etc/ssl/certs/ca-certificates.crt"
  check "user 65532 in /etc/passwd" grep -q '^nonroot:x:65532:65532:' "$IMG_DIR/rootfs/etc/passwd"
  check "/tmp is sticky and world-writable" \
    test "$(stat -c %a "$IMG_DIR/rootfs/tmp")" = 1777

  local want got
  want=$("$IMG_BUILD_DIR/confidential-operator" version)
  got=$(img_chroot version 2>&1)
  log "  in the image: $got"
  check "'confidential-operator version' runs in the image as 65532" test "$got" = "$want"
  check "'chroot ROOT /bin/sh' fails: there is no shell to run" img_no_sh_runs

  # With the CA bundle, libcurl, OpenSSL and nghttp2 from the image: a real TLS request.
  if [ -n "${KUBECONFIG:-}" ]; then
    kc config view --flatten --minify >"$IMG_DIR/kubeconfig" &&
      img_root install -m 0644 "$IMG_DIR/kubeconfig" "$IMG_DIR/rootfs/tmp/kubeconfig"
    got=$(img_chroot status --kubeconfig=/tmp/kubeconfig 2>&1)
    grep -q '^kwok-node-0 ' <<<"$got" || sed 's/^/#     /' <<<"$got" >&2
    check "'status' in the image lists the API server's nodes over TLS" grep -q '^kwok-node-0 ' <<<"$got"
  fi

  local kib rootkib
  kib=$(du -k "$archive" | cut -f1)
  rootkib=$(du -sk "$IMG_DIR/rootfs" | cut -f1)
  log "  image size: archive $kib KiB, unpacked $rootkib KiB"
  check "image archive is below $IMG_MAX_KIB KiB" test "$kib" -lt "$IMG_MAX_KIB"
  check "image archive holds more than the binary" test "$kib" -gt 1024
}

# A second build with another name gives the same manifest (same digest: reproducible) and only
# the names in index.json change. Reuses the first test's archive when it ran.
test_image_reproducible_and_named() {
  local d=$E2E_DIR/image2 first=$E2E_DIR/image/confidential-operator.oci.tar
  rm -rf "$d"; mkdir -p "$d"/a "$d"/b
  if [ -s "$first" ]; then
    cp "$first" "$d/a.tar"
  else
    check "build with the default name" img_build "$d/a.tar"
  fi
  check "build with CO_IMAGE=localhost:5000/co:e2e" img_build "$d/b.tar" CO_IMAGE=localhost:5000/co:e2e
  [ "$E2E_CURRENT_FAILED" -eq 0 ] || return
  tar -xf "$d/a.tar" -C "$d/a"; tar -xf "$d/b.tar" -C "$d/b"
  check "same manifest digest" test "$(jq -r '.manifests[0].digest' "$d/a/index.json")" = \
    "$(jq -r '.manifests[0].digest' "$d/b/index.json")"
  check "same blobs, byte for byte" diff -r "$d/a/blobs" "$d/b/blobs"
  check "the name comes from CO_IMAGE" img_jq '.manifests[0].annotations ==
    {"io.containerd.image.name": "localhost:5000/co:e2e", "org.opencontainers.image.ref.name": "e2e"}' \
    "$d/b/index.json"
  check "a bare name is qualified as containerd stores it" bash -c \
    "source hack/lib/image-lib.sh && [ \"\$(co_image_normalize co:1)\" = docker.io/library/co:1 ]"
  rm -rf "$d"
}

# ---- the image in a real containerd, imported the way `k3s ctr images import` does ------------
IMG_CTD_DIR=""
IMG_CTD_PID=""

# img_ctr ARGS...: ctr against the private containerd, in k3s's CRI namespace (at most 60 s).
img_ctr() { img_root timeout 60 ctr -a "$IMG_CTD_DIR/containerd.sock" -n k8s.io "$@"; }

img_quiet() { "$@" >/dev/null; }

# img_ctd_has_image REF: containerd lists an image of exactly that name.
img_ctd_has_image() {
  local names
  names=$(img_ctr images ls -q) || return 1
  grep -qxF "$1" <<<"$names" || { log "  images: $names"; return 1; }
}

# img_ctd_user_is CONTAINER UID GID: the OCI spec containerd made from the image config.
img_ctd_user_is() {
  local info
  info=$(img_ctr containers info "$1") || return 1
  jq -e --argjson u "$2" --argjson g "$3" \
    '.Spec.process.user.uid == $u and .Spec.process.user.gid == $g' <<<"$info" >/dev/null
}

# img_ctd_start: a containerd of its own (no CRI plugin) under $E2E_DIR/ctd.
img_ctd_start() {
  IMG_CTD_DIR=$E2E_DIR/ctd
  img_ctd_kill_stale
  img_root rm -rf "$IMG_CTD_DIR"; mkdir -p "$IMG_CTD_DIR"
  cat >"$IMG_CTD_DIR/config.toml" <<TOML
version = 2
root = "$IMG_CTD_DIR/root"
state = "$IMG_CTD_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$IMG_CTD_DIR/containerd.sock"
[ttrpc]
  address = "$IMG_CTD_DIR/containerd.sock.ttrpc"
TOML
  # Started directly (not through a function), so that $! is containerd (or sudo) itself.
  if [ "$(id -u)" -eq 0 ]; then
    containerd --config "$IMG_CTD_DIR/config.toml" >"$IMG_CTD_DIR/containerd.log" 2>&1 &
  else
    sudo -n containerd --config "$IMG_CTD_DIR/config.toml" >"$IMG_CTD_DIR/containerd.log" 2>&1 &
  fi
  IMG_CTD_PID=$!
  echo "$IMG_CTD_PID" >"$IMG_CTD_DIR/pid"
  local _
  for _ in $(seq 1 100); do
    img_ctr version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  sed 's/^/#     /' "$IMG_CTD_DIR/containerd.log" | tail -20 >&2
  return 1
}

# img_ctd_kill_stale: the containerd of an interrupted run, found by its PID file and command line.
img_ctd_kill_stale() {
  local pid
  pid=$(cat "$IMG_CTD_DIR/pid" 2>/dev/null) || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config $IMG_CTD_DIR/config.toml"; then
    img_root kill -TERM "$pid" 2>/dev/null || true
    sleep 1
  fi
}

img_ctd_stop() {
  [ -n "$IMG_CTD_PID" ] || return 0
  img_ctr containers delete co-e2e-default co-e2e-status >/dev/null 2>&1 || true
  img_root kill -TERM "$IMG_CTD_PID" 2>/dev/null || true
  wait "$IMG_CTD_PID" 2>/dev/null || true
  IMG_CTD_PID=""
  rm -f "$IMG_CTD_DIR/pid"
  img_root rm -rf "$IMG_CTD_DIR/root" "$IMG_CTD_DIR/state"
}

test_image_in_containerd() {
  local archive=$E2E_DIR/image/confidential-operator.oci.tar version ref out rc
  version=$(source hack/lib/image-lib.sh && co_project_version)
  ref=ghcr.io/cypherpunk/confidential-operator:$version
  if [ ! -s "$archive" ]; then
    mkdir -p "$E2E_DIR/image"
    check "hack/build-image.sh builds the archive" img_build "$archive"
    [ "$E2E_CURRENT_FAILED" -eq 0 ] || return
  fi
  check "containerd starts" img_ctd_start
  [ "$E2E_CURRENT_FAILED" -eq 0 ] || { img_ctd_stop; return; }

  check "ctr images import takes the archive" img_quiet img_ctr images import "$archive"
  check "imported under the bundle's name $ref" img_ctd_has_image "$ref"

  # Entrypoint and Cmd as the runtime applies them: the controller starts as the image's user
  # and, without a kubeconfig, looks for one in that user's home from /etc/passwd.
  rc=0
  out=$(img_ctr run --read-only "$ref" co-e2e-default 2>&1) || rc=$?
  log "  default command: exit $rc: $(tail -1 <<<"$out")"
  check "the default command is the controller" grep -q 'cannot load the API server configuration' <<<"$out"
  check "it runs as nonroot (HOME /home/nonroot)" grep -q '/home/nonroot/.kube/config' <<<"$out"
  check "user 65532:65532 in the container spec" img_ctd_user_is co-e2e-default 65532 65532

  # A read-only root, the host's network: status lists the local control plane's nodes.
  if [ -n "${KUBECONFIG:-}" ]; then
    mkdir -p "$E2E_DIR/ctd/kube"
    kc config view --flatten --minify >"$E2E_DIR/ctd/kube/config"
    chmod 0644 "$E2E_DIR/ctd/kube/config"
    rc=0
    out=$(img_ctr run --read-only --net-host --mount "type=bind,src=$E2E_DIR/ctd/kube,dst=/kube,options=rbind:ro" \
      "$ref" co-e2e-status /confidential-operator status --kubeconfig=/kube/config 2>&1) || rc=$?
    grep -q '^kwok-node-0 ' <<<"$out" || sed 's/^/#     /' <<<"$out" >&2
    check "'status' in the container exits 0" test "$rc" -eq 0
    check "'status' in the container lists the nodes" grep -q '^kwok-node-0 ' <<<"$out"
  fi
  img_ctd_stop
}
