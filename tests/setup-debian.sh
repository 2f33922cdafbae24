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
  python3-numpy                  # numpy's huge-page-advised arrays (split mmapped chunks),
  python3-pandas                 # numpy's and pandas' memory attributed (test_numpy.py)
  libjemalloc2 libgoogle-perftools4 libmimalloc2.0   # other allocators, to test detection
  clang                          # fuzz targets (libFuzzer)
  debootstrap                    # the Debian unstable chroot below
  chromium                       # renders the HTML report headless (test_report.py)
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
# Debian unstable in a chroot, outside the repository and kept there: glibc
# 2.43 and CPython 3.13-3.15 as a container's process has them, run inside
# it and analysed from outside (tests/e2e/test_chroot.py). About a minute:
# debootstrap, then the packages (the archive is a fixed snapshot whose
# Release file has expired, hence Check-Valid-Until=false).
SID=${PYMORTEM_CHROOT:-/var/cache/pymortem/sid}
sid_packages=(python3.13 python3.13-dbg python3.14 python3.14-dbg python3.15 python3.15-dbg
              libpython3.13-dev libpython3.14-dev libpython3.15-dev  # test_inferred's module
              libc6-dbg gdb
              python3-numpy python3-pandas)   # numpy 2.x, pandas 2.x (test_numpy.py)
if [ "${PYMORTEM_NO_CHROOT:-}" != 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  if [ ! -x "$SID/usr/bin/apt-get" ]; then
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
    mirror=${mirror:-http://deb.debian.org/debian}
    $SUDO rm -rf "$SID.new"
    $SUDO mkdir -p "$(dirname "$SID")"
    $SUDO debootstrap --variant=minbase sid "$SID.new" "$mirror" >/dev/null
    $SUDO mv "$SID.new" "$SID"
  fi
  # Whatever is missing, in a new chroot or one an older version of this
  # script made.
  sid_missing=()
  for p in "${sid_packages[@]}"; do
    $SUDO chroot "$SID" dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
      grep -q "ok installed" || sid_missing+=("$p")
  done
  if ((${#sid_missing[@]})); then
    $SUDO chroot "$SID" apt-get -qq -o Acquire::Check-Valid-Until=false update
    $SUDO chroot "$SID" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${sid_missing[@]}" >/dev/null
  fi
fi
if [ -d "$SID" ] && ! mountpoint -q "$SID/proc"; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO mount -t proc proc "$SID/proc"
fi
# The e2e suite runs its workloads under the chroot's CPythons as under any
# other: the repository and /tmp (the workloads' directories) are the
# host's inside it, at the same paths, and $BIN/pythonX.Y runs the chroot's
# interpreter in the caller's directory (same pid: chroot and sh exec).
if [ -x "$SID/usr/bin/python3.15" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  # Both spellings of each: the physical one, and the one the tests see
  # when a symlink leads to it (a CI checkout under a symlinked directory
  # once left the chroot without the repository at the tests' path), and
  # $TMPDIR when the tests' temporary files go there instead of /tmp.
  shared=(/tmp "$(pwd -P)" "$(pwd)")
  if [ -n "${TMPDIR:-}" ] && [ -d "$TMPDIR" ]; then
    shared+=("$TMPDIR" "$(cd "$TMPDIR" && pwd -P)")
  fi
  for dir in "${shared[@]}"; do
    $SUDO mkdir -p "$SID$dir"
    # A mount left by an earlier checkout at the same path, since deleted,
    # shows the deleted directory, and mount(2) refuses to mount over it
    # (ENOENT): take it away first.
    while mountpoint -q "$SID$dir" &&
        [ "$(stat -c %d:%i "$SID$dir")" != "$(stat -c %d:%i "$dir")" ]; do
      $SUDO umount -l "$SID$dir" || break
    done
    mountpoint -q "$SID$dir" || $SUDO mount --bind "$dir" "$SID$dir"
  done
  BIN=$(dirname "$SID")/bin
  $SUDO mkdir -p "$BIN"
  for v in 3.13 3.13d 3.14 3.14d 3.15 3.15d; do
    printf '%s\n' '#!/bin/sh' \
      "# CPython $v of the Debian unstable chroot $SID, run inside it in this directory" \
      "exec /usr/sbin/chroot '$SID' /bin/sh -c 'cd \"\$0\" && exec /usr/bin/python$v \"\$@\"' \"\$PWD\" \"\$@\"" |
      $SUDO tee "$BIN/python$v" >/dev/null
    $SUDO chmod +x "$BIN/python$v"
  done
fi

[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null
echo "pymortem: dependencies installed and build/ compiled"
