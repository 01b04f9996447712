#!/usr/bin/env bash
# Debian's Chromium, for the attention page's browser test (tests/test_serve_page.py drives it with
# Playwright through its executable path; Playwright cannot fetch a browser of its own here).
# Idempotent: does nothing when a Chromium is found. Without root or apt-get it says why and stops
# without failing: the browser test then skips with that reason.
set -u
for exe in "${ATTNSEQ_CHROMIUM:-}" chromium chromium-browser; do
  if [ -n "$exe" ] && command -v "$exe" >/dev/null 2>&1; then
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no apt-get here; install Chromium yourself (or set ATTNSEQ_CHROMIUM) for the browser test"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-chromium: not root and no password-less sudo; run: sudo apt-get install chromium"
    exit 0
  fi
fi
echo "install-chromium: apt-get install chromium (once)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
  || echo "install-chromium: apt-get could not install chromium; the browser test will skip"
exit 0
