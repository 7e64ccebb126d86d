#!/usr/bin/env bash
# The test command: installs the external programs the tests run when they
# are missing, then runs the formatter check, clippy and the whole test
# suite. `.ci/run` calls exactly this.
#
#   scripts/test.sh                  install what is missing, then test
#   scripts/test.sh --install-tools  only install what is missing
#   scripts/test.sh --missing-tools  print the packages it would install, one
#                                    a line, and install nothing
#
# The programs and their Debian packages are listed in one place,
# scripts/test-tools.txt; tests/tools_list.rs keeps that list complete and
# runs --missing-tools to check that this script reads all of it.
set -euo pipefail
# Only bash builtins up to the install: --missing-tools runs with a PATH
# that has nothing on it.
here=${BASH_SOURCE[0]%/*}
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
cd "$here/.."

tools_list=scripts/test-tools.txt
# The interpreter whose modules `python3-module` entries need: the harness
# runs /usr/bin/python3. tests/tools_list.rs points it elsewhere to see every
# entry reported missing.
python=${REDOPS_TOOLS_PYTHON:-/usr/bin/python3}

# The package of every entry of the list that is missing, each package once.
missing_packages() {
  local line name package check extra seen=" " n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line=${line%%#*}
    read -r name package check extra <<<"$line" || true
    [ -n "$name" ] || continue
    if [ -z "$package" ] || [ -n "$extra" ]; then
      echo "$tools_list:$n: expected \`name package [check]\`, got: $line" >&2
      return 1
    fi
    case ${check:-command} in
      command) type -P "$name" >/dev/null && continue ;;
      python3-module) [ -x "$python" ] && "$python" -c "import $name" >/dev/null 2>&1 && continue ;;
      *)
        echo "$tools_list:$n: unknown check \`$check\` (command or python3-module)" >&2
        return 1
        ;;
    esac
    case $seen in *" $package "*) ;; *)
      seen+="$package "
      echo "$package"
      ;;
    esac
  done <"$tools_list"
}

install_tools() {
  local packages sudo=""
  packages=$(missing_packages)
  [ -n "$packages" ] || return 0
  # shellcheck disable=SC2086 # one word a package
  echo "Installing:" $packages
  [ "$EUID" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null
  # A package that installed without the program means a wrong entry: say
  # so here rather than as a skipped or failing test later.
  packages=$(missing_packages)
  if [ -n "$packages" ]; then
    # shellcheck disable=SC2086
    echo "Installed, yet still missing:" $packages "-- check $tools_list" >&2
    exit 1
  fi
}

case "${1:-}" in
  --missing-tools)
    missing_packages
    exit 0
    ;;
  --install-tools)
    install_tools
    exit 0
    ;;
  "") ;;
  *)
    echo "usage: scripts/test.sh [--install-tools | --missing-tools]" >&2
    exit 2
    ;;
esac

install_tools

# Tests that need an installed tool skip when it is missing on a developer's
# machine; here, where everything was just installed, they must run.
export REDOPS_REQUIRE_ALL=1

cargo fmt --check
cargo clippy --all-targets -- -D warnings
# The lean build (no age; see BENCHMARKS.md) must keep compiling, warning-free.
# Cargo replays a cached crate's warnings, so grepping its output is enough
# (RUSTFLAGS=-D warnings would rebuild every dependency).
lean=$(cargo check --no-default-features 2>&1) || { echo "$lean"; exit 1; }
if grep -q '^warning' <<<"$lean"; then
  echo "$lean"
  echo "cargo check --no-default-features: warnings" >&2
  exit 1
fi
cargo test --all-targets
