# shellcheck shell=bash
# The project version and the default image reference, shared by hack/build-image.sh (which
# names the image) and hack/gen-install.sh (whose bundle runs it), so both agree by default.

CO_REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# co_project_version: the version of the CMake project (CMakeLists.txt), e.g. 0.1.0.
co_project_version() {
  local v
  v=$(sed -nE 's/^project\(confidential-operator VERSION ([0-9A-Za-z.+-]+).*/\1/p' \
    "$CO_REPO_DIR/CMakeLists.txt")
  [ -n "$v" ] || { echo "cannot read the project version from CMakeLists.txt" >&2; return 1; }
  echo "$v"
}

# co_default_image: the image reference the committed bundle uses.
co_default_image() {
  echo "ghcr.io/cypherpunk/confidential-operator:$(co_project_version)"
}

# co_image_normalize REF: the fully qualified form containerd stores an image under
# (docker.io/library/ for bare names, :latest without a tag), as k3s's CRI looks it up.
# Digest references are refused: a locally built image has no digest to match yet.
co_image_normalize() {
  local ref=$1 name tag last first
  case "$ref" in
    *@*) echo "image reference with a digest not supported: $ref" >&2; return 1 ;;
    "" | *[[:space:]]* | */ | /*) echo "invalid image reference: '$ref'" >&2; return 1 ;;
  esac
  last=${ref##*/}
  if [[ $last == *:* ]]; then
    name=${ref%:*}
    tag=${ref##*:}
  else
    name=$ref
    tag=latest
  fi
  [[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "invalid tag in '$ref'" >&2; return 1; }
  [[ $name =~ ^[a-z0-9._:/-]+$ ]] || { echo "invalid repository in '$ref'" >&2; return 1; }
  first=${name%%/*}
  if [[ $name != */* ]]; then
    name=docker.io/library/$name
  elif ! [[ $first == *.* || $first == *:* || $first == localhost ]]; then
    name=docker.io/$name
  fi
  echo "$name:$tag"
}
