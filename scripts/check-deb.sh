#!/usr/bin/env bash
# Builds the Debian package (scripts/build-deb.sh --dev: the test suite's binary), installs
# it with dpkg, checks what it installed without systemd (which need not be running):
# files, owners and modes, the conffile, the `c42fwd` user, the unit, the man pages and
# completions, and that the shipped configuration passes `c42fwd validate` run as the
# `c42fwd` user; then removes and purges it and checks what each leaves behind.
# Needs root (dpkg -i); run by scripts/test.sh. Pass --release to package a release build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "check-deb.sh: needs root (dpkg -i); run it with sudo" >&2
  exit 1
fi
if dpkg-query -W -f='${Status}' c42fwd 2>/dev/null | grep -q "installed"; then
  echo "check-deb.sh: a c42fwd package is already installed here; refusing to replace it" >&2
  exit 1
fi

if [ "${1:-}" = "--release" ]; then ./scripts/build-deb.sh; else ./scripts/build-deb.sh --dev; fi
deb=target/debian/c42fwd.deb

failures=0
fail() { echo "check-deb: FAIL: $*" >&2; failures=$((failures + 1)); }
# expect_stat PATH OWNER:GROUP MODE
expect_stat() {
  local got
  if ! got=$(stat -c '%U:%G %a' "$1" 2>/dev/null); then fail "$1 is missing"; return; fi
  [ "$got" = "$2 $3" ] || fail "$1 is $got, expected $2 $3"
}
purge() { dpkg --purge c42fwd >/dev/null 2>&1 || true; }
trap purge EXIT

# (Fields read whole, not piped into `grep -q`: under pipefail a grep that stops at the
# first match makes the writer die of SIGPIPE and the check fail.)
[ "$(dpkg-deb --field "$deb" Package)" = c42fwd ] || fail "$deb is not the c42fwd package"
dpkg -i "$deb"

# The system user and group, without a login shell.
if entry=$(getent passwd c42fwd); then
  uid=$(echo "$entry" | cut -d: -f3)
  [ "$uid" -lt 1000 ] || fail "c42fwd has uid $uid, not a system uid"
  [ "$(echo "$entry" | cut -d: -f7)" = /usr/sbin/nologin ] || fail "c42fwd has a login shell: $entry"
else
  fail "no c42fwd user"
fi
getent group c42fwd >/dev/null || fail "no c42fwd group"

expect_stat /usr/bin/c42fwd root:root 755
expect_stat /etc/c42fwd/c42fwd.toml root:root 644
expect_stat /etc/c42fwd/example.secret root:c42fwd 640
expect_stat /var/lib/c42fwd c42fwd:c42fwd 750
grep -qx /etc/c42fwd/c42fwd.toml /var/lib/dpkg/info/c42fwd.conffiles ||
  fail "/etc/c42fwd/c42fwd.toml is not a conffile"

unit=$(dpkg -L c42fwd | grep -E '/systemd/system/c42fwd\.service$' || true)
if [ -z "$unit" ]; then
  fail "no systemd unit installed"
else
  expect_stat "$unit" root:root 644
  grep -qx 'User=c42fwd' "$unit" || fail "$unit does not run as c42fwd"
  grep -q '^DynamicUser' "$unit" && fail "$unit still uses DynamicUser"
  grep -qx 'StateDirectory=c42fwd' "$unit" || fail "$unit has no StateDirectory=c42fwd"
  # Every program the unit starts exists and is executable.
  for exe in $(sed -n 's/^Exec[A-Za-z]*=[-@!+]*\([^ ]*\).*/\1/p' "$unit"); do
    [ -x "$exe" ] || fail "$unit starts $exe, which is not installed"
  done
  if [ -e /etc/systemd/system/multi-user.target.wants/c42fwd.service ]; then
    fail "the unit was enabled at install time"
  fi
fi

# The shipped configuration is valid, read as the user the unit runs as (the secret file
# must be readable by it).
if ! out=$(setpriv --reuid c42fwd --regid c42fwd --init-groups \
  /usr/bin/c42fwd validate --config /etc/c42fwd/c42fwd.toml 2>&1); then
  fail "validate of the shipped config failed: $out"
fi
echo "$out"

# Man pages: c42fwd(1) names every visible subcommand, and each has its own page.
subcommands=$(/usr/bin/c42fwd --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && $1 != "" && $1 != "help" { print $1 }')
[ -n "$subcommands" ] || fail "no subcommands in c42fwd --help"
main_page=/usr/share/man/man1/c42fwd.1.gz
if [ -f "$main_page" ]; then
  page_text=$(zcat "$main_page")
  grep -q '^\.TH c42fwd 1' <<<"$page_text" || fail "$main_page is not a section-1 man page"
  for s in $subcommands; do
    grep -qF "c42fwd\\-$s" <<<"$page_text" || fail "$main_page does not mention $s"
    [ -f "/usr/share/man/man1/c42fwd-$s.1.gz" ] || fail "no man page for c42fwd $s"
  done
else
  fail "$main_page is missing"
fi

# Completions in the directories bash-completion, zsh and fish load from.
bash_comp=/usr/share/bash-completion/completions/c42fwd
expect_stat "$bash_comp" root:root 644
bash -c "source $bash_comp && complete -p c42fwd" >/dev/null || fail "$bash_comp does not register a completion"
for f in /usr/share/zsh/vendor-completions/_c42fwd /usr/share/fish/vendor_completions.d/c42fwd.fish; do
  expect_stat "$f" root:root 644
  grep -q validate "$f" 2>/dev/null || fail "$f does not complete the subcommands"
done

# Remove keeps the configuration and the state; purge removes both.
dpkg -r c42fwd
[ -e /usr/bin/c42fwd ] && fail "dpkg -r left /usr/bin/c42fwd"
[ -f /etc/c42fwd/c42fwd.toml ] || fail "dpkg -r removed the conffile"
[ -d /var/lib/c42fwd ] || fail "dpkg -r removed the state directory"
dpkg --purge c42fwd
[ -e /etc/c42fwd ] && fail "purge left /etc/c42fwd: $(ls -A /etc/c42fwd)"
[ -e /var/lib/c42fwd ] && fail "purge left /var/lib/c42fwd"
trap - EXIT

if [ "$failures" -gt 0 ]; then
  echo "check-deb: $failures check(s) failed" >&2
  exit 1
fi
echo "check-deb: ok ($(stat -c %s "$deb") bytes: $deb)"
