#!/usr/bin/env bash
# Installs every Debian package that the MaLV-OS build, tests, demo and
# benchmarks need. Idempotent: when everything is present it does nothing
# (no apt-get update, no network). Run as root, or with sudo available.
set -euo pipefail

packages=(
  cmake ninja-build g++ make pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  libfmt-dev libspdlog-dev libcli11-dev nlohmann-json3-dev libtomlplusplus-dev
  libopenblas-dev libcpp-httplib-dev
  clang-14 libclang-rt-14-dev libfuzzer-14-dev clang-format
  zlib1g-dev
  dataset-fashion-mnist
  # the malv Python package (docs/python.md), built and tested with /usr/bin/python3
  python3 python3-dev pybind11-dev python3-numpy python3-pytest
  python3-torch python3-torchvision libtorch-dev
  # the guest VM image and its boots (docs/vms.md)
  qemu-system-x86 linux-image-amd64 busybox-static cpio xz-utils
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (sudo not found)" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
