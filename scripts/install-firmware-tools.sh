#!/usr/bin/env bash
# Install what the firmware build, the emulated targets and the fuzz targets
# need, from Debian's packages: the Arm embedded toolchain with newlib, QEMU's
# Arm system emulator, clang with libFuzzer. Does nothing when they are
# already there.
set -euo pipefail
need=()
command -v arm-none-eabi-gcc >/dev/null 2>&1 || need+=(gcc-arm-none-eabi)
dpkg -s libnewlib-arm-none-eabi >/dev/null 2>&1 || need+=(libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null 2>&1 || need+=(qemu-system-arm)
# The fuzz targets (fuzz/): clang with libFuzzer and the sanitizer runtimes.
command -v clang >/dev/null 2>&1 || need+=(clang)
dpkg -s libclang-rt-14-dev >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-firmware-tools: need root (or sudo) to install: ${need[*]}" >&2
    exit 1
  fi
fi
echo "install-firmware-tools: apt-get install ${need[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
