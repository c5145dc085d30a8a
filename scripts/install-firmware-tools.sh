#!/usr/bin/env bash
# Install what the firmware build and the emulated targets need, from
# Debian's packages: the Arm embedded toolchain with newlib, and QEMU's Arm
# system emulator. Does nothing when they are already there.
set -euo pipefail
need=()
command -v arm-none-eabi-gcc >/dev/null 2>&1 || need+=(gcc-arm-none-eabi)
dpkg -s libnewlib-arm-none-eabi >/dev/null 2>&1 || need+=(libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null 2>&1 || need+=(qemu-system-arm)
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
