#!/usr/bin/env bash
# Makes sure a Chromium the browser tests can drive is on this machine (tests/browser/).
#   scripts/install-browser.sh
# Playwright cannot download its own browser builds here, so the tests launch Debian's chromium
# package (/usr/bin/chromium, or RETAIN_CHROMIUM). When it is missing and we run as root with
# apt-get, it is installed; otherwise a notice says the browser tests will be skipped (and CI,
# where CI=true, fails instead: the tests refuse to skip there).
set -euo pipefail

found() { [ -n "${RETAIN_CHROMIUM:-}" ] && [ -x "$RETAIN_CHROMIUM" ] || command -v chromium >/dev/null; }

if found; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "install-browser: installing Chromium (Debian package chromium)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
    fonts-dejavu-core >/dev/null
fi
if ! found; then
  echo "install-browser: no Chromium found and it cannot be installed here; the browser tests" \
       "will be skipped (set RETAIN_CHROMIUM to a Chromium binary to run them)" >&2
fi
exit 0
