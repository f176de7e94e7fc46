#!/bin/sh
# Run by `make test` before pytest. tests/test_browser.py drives Debian's chromium with Playwright (never
# Playwright's own browser download). When chromium is missing and this machine can install it (we are root
# and apt-get exists), install it; when it cannot, or the install fails, say so and carry on: this script
# never fails the run, and pytest then skips the browser test with the reason in its summary.
have_chromium() {
  { [ -n "${ROSETTA_CHROMIUM:-}" ] && [ -x "$ROSETTA_CHROMIUM" ]; } || command -v chromium >/dev/null 2>&1 \
    || [ -x /usr/bin/chromium ]
}
skip() {
  echo "browser_setup: $1; the browser test (tests/test_browser.py) will be skipped" >&2
  exit 0
}
have_chromium && exit 0
[ "$(id -u)" = 0 ] || skip "chromium is missing and we are not root, so it cannot be installed here (run \`sudo apt-get install chromium\`)"
command -v apt-get >/dev/null 2>&1 || skip "chromium is missing and there is no apt-get (install Chromium and set \$ROSETTA_CHROMIUM to it)"
echo "browser_setup: installing Debian's chromium for the browser test"
if apt-get update -qq >/dev/null \
   && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
   && have_chromium; then
  echo "browser_setup: chromium installed: $(command -v chromium || echo /usr/bin/chromium)"
else
  skip "\`apt-get install chromium\` failed (see its messages above)"
fi
