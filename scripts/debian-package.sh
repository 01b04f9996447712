#!/usr/bin/env bash
# Install a Debian package the tests or benchmarks use, once: scripts/debian-package.sh PACKAGE EXECUTABLE...
#   chromium: the attention page's browser test (Playwright drives it through its executable path)
#   wrk:      bench/serve.py's load generator
# Does nothing when one of the executables is found. Without root (or password-less sudo) or apt-get
# it says why and exits 0: a test that needs the program then skips with that reason.
set -u
package=$1
shift
for exe in "$@"; do
  if [ -n "$exe" ] && command -v "$exe" >/dev/null 2>&1; then
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "debian-package: no apt-get here; install $package yourself"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "debian-package: not root and no password-less sudo; run: sudo apt-get install $package"
    exit 0
  fi
fi
echo "debian-package: apt-get install $package (once)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
  || echo "debian-package: apt-get could not install $package"
exit 0
