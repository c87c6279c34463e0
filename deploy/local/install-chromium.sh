#!/usr/bin/env bash
# Debian Chromium and its WebDriver, for the review web app's browser tests
# (tests/test_webapp_browser.py). Idempotent: quick when both are installed.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core
/usr/bin/chromium --version
/usr/bin/chromedriver --version
