#!/usr/bin/env bash
# Creates (or reuses) the Python virtual environments of the official Code42 clients
# that tests/it/official_clients.rs runs against the emulator, unchanged:
#   target/py/incydr     the incydr SDK and its CLI
#   target/py/code42cli  code42cli (on py42)
# They conflict on click, hence two environments. Each is recreated when its pinned
# requirements below change (the spec is kept in the environment as `.c42fwd-spec`).
# Prints nothing when both are current. Needs python3 with venv and pip (Debian:
# python3-venv, installed here with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

root="${C42FWD_PY_DIR:-target/py}"

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "installing python3-venv"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
fi

# name, then the pip requirements (one argument each).
make_venv() {
  local name="$1"
  shift
  local dir="$root/$name"
  local spec
  spec="$(python3 --version 2>&1) $*"
  if [ -f "$dir/.c42fwd-spec" ] && [ "$(cat "$dir/.c42fwd-spec")" = "$spec" ]; then
    return 0
  fi
  echo "creating $dir: $*"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "$@"
  printf '%s' "$spec" >"$dir/.c42fwd-spec"
}

make_venv incydr 'incydr[cli]==2.12.*'
make_venv code42cli 'code42cli==1.19.0' 'click<8.2' 'setuptools<81'
