#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs the real receivers the
# integration tests start (rsyslog with TLS and RELP modules) when they are missing,
# unpacks syslog-ng into target/syslog-ng when it is not there,
# creates the Python environments of the official Code42 clients (cached in target/py,
# scripts/python-clients.sh), then runs formatting, lints, unit, property, golden and integration tests of every
# crate of the workspace, and the packaging checks (the .deb installed and purged with
# dpkg, the Dockerfile and Kubernetes manifests parsed and checked).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
missing_build=()
command -v rsyslogd >/dev/null 2>&1 || missing+=(rsyslog)
dpkg-query -W -f='${Status}' rsyslog-gnutls 2>/dev/null | grep -q "ok installed" || missing+=(rsyslog-gnutls)
dpkg-query -W -f='${Status}' rsyslog-relp 2>/dev/null | grep -q "ok installed" || missing+=(rsyslog-relp)
# PyYAML, for scripts/check-deploy.py.
python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test receivers and tools: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# syslog-ng, the second real receiver (tests/it/syslog_ng.rs). The Debian package
# syslog-ng-core conflicts with rsyslog (both are the system log daemon), so it is not
# installed: its libraries are, and the package itself is unpacked into
# target/syslog-ng, where the test harness runs it from.
syslog_ng_dir="$PWD/target/syslog-ng"
if [ ! -x "$syslog_ng_dir/usr/sbin/syslog-ng" ] && [ -z "${SYSLOG_NG:-}" ]; then
  echo "unpacking syslog-ng-core into $syslog_ng_dir"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    libivykis0 libnet1 libpcre3 libwrap0 libjson-c5 libglib2.0-0 libcap2 libssl3 libsystemd0
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download syslog-ng-core)
  mkdir -p "$syslog_ng_dir"
  dpkg-deb -x "$tmp"/syslog-ng-core_*.deb "$syslog_ng_dir"
  rm -rf "$tmp"
fi

# Tansu, a Kafka-compatible broker from crates.io, for the Kafka sink's tests
# (tests/it/kafka.rs): installed into cargo's own bin directory, outside the clone, so
# that later runs on this machine reuse it (a cold build takes about 8 minutes on 2 cores).
# The build of librdkafka (the Kafka sink's client) needs make, pkg-config, a C++
# compiler (its make also builds the C++ wrapper) and the OpenSSL headers.
for tool in make pkg-config g++; do
  command -v "$tool" >/dev/null 2>&1 || missing_build+=("$tool")
done
dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q "ok installed" || missing_build+=(libssl-dev)
if [ ${#missing_build[@]} -gt 0 ]; then
  echo "installing build tools: ${missing_build[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing_build[@]}"
fi
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if [ ! -x "$cargo_bin/tansu" ] && ! command -v tansu >/dev/null 2>&1; then
  echo "installing tansu (Kafka-compatible broker for the kafka sink tests) into $cargo_bin"
  cargo install tansu --locked --features dynostore
fi

# The official Code42 clients (the incydr CLI, code42cli) in Python virtual environments
# under target/py (or $C42FWD_PY_DIR), which tests/it/official_clients.rs runs against
# the emulator.
export C42FWD_PY_DIR="${C42FWD_PY_DIR:-$PWD/target/py}"
./scripts/python-clients.sh

# The whole workspace: the product, the catalog crate and the emulator crate (its own
# tests included). The product without its default `emulator` feature must build too.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --no-default-features --locked -- -D warnings
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

# Packaging and deployment (README.md, "Installing"), with the binary the tests built:
# the Kubernetes manifests and the Dockerfile parsed and checked, and their
# configurations validated (no image is built, nothing is applied to a cluster); the
# .deb built from target/debug/c42fwd (cargo-deb installed once into target/tools/),
# installed with dpkg, checked without systemd, removed and purged.
./scripts/check-deploy.py target/debug/c42fwd
$sudo ./scripts/check-deb.sh
