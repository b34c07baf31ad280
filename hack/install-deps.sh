#!/usr/bin/env bash
# Installs the Debian packages needed to build, lint and test confidential-operator.
# Idempotent: packages already present are not reinstalled, apt lists are refreshed only
# when something is missing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libuv1-dev libcurl4-openssl-dev libcjson-dev libyaml-dev libssl-dev uthash-dev libh2o-dev
  clang clang-format libclang-rt-14-dev
  openssl curl ca-certificates jq bc procps psmisc iproute2 python3 containerd
  umoci  # hack/build-image.sh: the container image without a container engine
  valgrind
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[install-deps] all packages present"
  exit 0
fi
echo "[install-deps] installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
