#!/usr/bin/env bash
# Builds the Debian package target/debian/c42fwd.deb from [package.metadata.deb] in
# Cargo.toml: generates the shell completions and man pages with the binary itself
# (`c42fwd completions SHELL`, `c42fwd manpage --dir DIR`, from the clap definitions)
# into target/assets/, then runs `cargo deb --no-build`.
#
#   scripts/build-deb.sh          release build: the package to ship
#   scripts/build-deb.sh --dev    packages target/debug/c42fwd, the binary the test suite
#                                 has already built (same metadata and files, an
#                                 unoptimised binary, stripped by cargo-deb): what
#                                 scripts/check-deb.sh and CI use, to spare a release build
#
# cargo-deb is taken from PATH, or installed once into target/tools/ (pinned version).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
[ "${1:-}" = "--dev" ] && profile=dev
bindir=target/release
[ "$profile" = dev ] && bindir=target/debug

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version >/dev/null 2>&1; then
  if [ ! -x target/tools/bin/cargo-deb ]; then
    echo "installing cargo-deb $CARGO_DEB_VERSION into target/tools"
    # A tool run once per package, not a product: built without LTO and at opt-level 1,
    # which takes a fraction of cargo-deb's own release profile on two cores.
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
      CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
      cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" --root target/tools
  fi
  export PATH="$PWD/target/tools/bin:$PATH"
fi

if [ "$profile" = release ]; then
  cargo build --release --locked -p c42fwd --bin c42fwd
elif [ ! -x "$bindir/c42fwd" ]; then
  cargo build --locked -p c42fwd --bin c42fwd
fi

assets=target/assets
rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/man"
"$bindir/c42fwd" completions bash >"$assets/completions/c42fwd.bash"
"$bindir/c42fwd" completions zsh >"$assets/completions/_c42fwd"
"$bindir/c42fwd" completions fish >"$assets/completions/c42fwd.fish"
"$bindir/c42fwd" manpage --dir "$assets/man"

mkdir -p target/debian
cargo deb --no-build --locked -p c42fwd --profile "$profile" --fast -o target/debian/c42fwd.deb
echo "built target/debian/c42fwd.deb ($profile profile)"
