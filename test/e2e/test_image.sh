# shellcheck shell=bash
# The container image (hack/build-image.sh): the OCI archive is well formed (every blob matches
# its digest), its layers unpack into a root with the binary, its libraries and CA certificates
# and no shell, where `confidential-operator version` runs under chroot as the image's user and
# `status` reaches the local API server over TLS; the config runs as 65532 with the binary as
# entrypoint; the build is reproducible and the image name configurable. Building reuses the
# Release build directory ($CO_IMAGE_BUILD_DIR, default build/).

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
  cp "$(img_blob "$(jq -r '.manifests[0].digest' "$IMG_DIR/layout/index.json")")" \
    "$IMG_DIR/manifest.json"
  cp "$(img_blob "$(jq -r '.config.digest' "$IMG_DIR/manifest.json")")" "$IMG_DIR/config.json"
  check "every blob matches its digest and size" img_blobs_valid

  # The config.
  check "config: user 65532:65532" img_config_is '.config.User == "65532:65532"'
  check "config: entrypoint is the binary, no shell" \
    img_config_is '.config.Entrypoint == ["/confidential-operator"] and .config.Cmd == ["controller"]'
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
