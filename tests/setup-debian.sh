#!/usr/bin/env bash
# Installs everything pymortem needs to build and test on Debian 12, then
# configures the build directory. Idempotent; needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential meson ninja-build pkg-config
  libelf-dev elfutils            # libelf for the library, eu-readelf for tests
  gdb gdbserver                  # the GDB plugin and its remote-target tests
  python3 python3-dev python3-pytest
  libc6-dbg                      # glibc debug symbols: tests run with and without
  python3.11 python3.11-dbg      # Debian's stripped interpreter and its debug file:
                                 # tested with it and with --no-debuginfo
  python3-numpy                  # numpy's huge-page-advised arrays (split mmapped chunks)
  libjemalloc2 libgoogle-perftools4 libmimalloc2.0   # other allocators, to test detection
  clang                          # fuzz targets (libFuzzer)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null
echo "pymortem: dependencies installed and build/ compiled"
