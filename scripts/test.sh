#!/usr/bin/env bash
# The test command: installs what the tests need when missing, then runs the
# formatter check, clippy and the whole test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
# promtool and a real Prometheus (tests/prometheus_e2e.rs); headless
# Chromium and its WebDriver (tests/dashboard_e2e.rs).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if ((${#missing[@]})); then
  echo "Installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Tests that need an installed tool skip when it is missing on a developer's
# machine; here, where everything was just installed, they must run.
export REDOPS_REQUIRE_ALL=1

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
