#!/usr/bin/env bash
# The Debian package as a postmaster meets it, on this machine (needs root; .ci/run runs it):
# built with packaging/build-deb, checked by lintian (no error, no warning) and by
# `systemd-analyze security --offline=true` (both services 2.0 or lower), then
#   1. `scan` run as root before the package (root-owned records), install, the service user
#      runs the daemon and `check --user maillogsentinel` finds its records writable;
#   2. the configuration edited, upgrade to a rebuilt package with a changed default and
#      --force-confold (the edit is kept, the new default beside it), purge: nothing left;
#   3. the same on a minimal image (dpkg path-exclude=/usr/share/doc/* and man pages), upgrade
#      with --force-confnew (the new default, the edit kept as .dpkg-old), purge: nothing left.
# It refuses to touch a maillogsentinel already installed here (it says so and skips; with
# MLS_PACKAGE_MUST_RUN=1, as in CI, that is a failure).
#
#   sudo tests/e2e/package.sh            (work files under /tmp/mls-package)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${MLS_PACKAGE_WORK:-/tmp/mls-package}
NODOC=/etc/dpkg/dpkg.cfg.d/zz-maillogsentinel-test-nodoc
CONFIG=/etc/maillogsentinel/config.toml
STATE=/var/lib/maillogsentinel
EXAMPLE="$ROOT/config.example.toml"
INSTALLED_BY_US=""

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nPACKAGE TEST FAILED: %s\n' "$*" >&2; exit 1; }
skip() {
  printf '\nPACKAGE TEST SKIPPED: %s\n' "$*" >&2
  [ "${MLS_PACKAGE_MUST_RUN:-}" = 1 ] && exit 1
  exit 0
}

[ "$(id -u)" = 0 ] || skip "not root: it installs and purges the package"
if dpkg -s maillogsentinel >/dev/null 2>&1 || [ -e "$STATE" ] || [ -e /etc/maillogsentinel ] \
    || getent passwd maillogsentinel >/dev/null; then
  skip "maillogsentinel (or its user, state or configuration) is already on this machine, and this test would purge it"
fi

MADE_POLICY=""
cleanup() {
  set +e
  [ -n "$MADE_POLICY" ] && rm -f /usr/sbin/policy-rc.d
  [ -f "$WORK/config.example.toml" ] && cp "$WORK/config.example.toml" "$EXAMPLE"
  rm -f "$NODOC"
  if [ -n "$INSTALLED_BY_US" ]; then
    dpkg --purge maillogsentinel >/dev/null 2>&1
    rm -rf "$STATE" /etc/maillogsentinel
  fi
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK"

# The package starts its service where systemd runs; this test runs the daemon itself, so the
# service is kept from starting (as Debian's policy-rc.d allows) while it runs.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && MADE_POLICY=1
fi

# --- the tools ----------------------------------------------------------------------------
need=()
for p in lintian adduser systemd; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo deb --version >/dev/null 2>&1 || cargo install --locked --quiet cargo-deb

# --- build: this tree, and a rebuild with a changed default --------------------------------------
say "build"
cd "$ROOT"
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
DEB1=$(bash packaging/build-deb --output "$WORK/maillogsentinel_1.deb")
cp "$EXAMPLE" "$WORK/config.example.toml"
sed -i 's/^stats_interval = "15m"$/stats_interval = "30m"/' "$EXAMPLE"
grep -q '^stats_interval = "30m"$' "$EXAMPLE" || fail "config.example.toml has no stats_interval = \"15m\" line to change"
DEB2=$(cargo deb --no-build --locked --deb-version 0.1.0-2 --output "$WORK/maillogsentinel_2.deb" | tail -n 1)
cp "$WORK/config.example.toml" "$EXAMPLE"
echo "built $DEB1 and $DEB2"

say "lintian"
set +e
lintian --fail-on error,warning "$DEB1" > "$WORK/lintian.txt" 2>&1
rc=$?
set -e
grep -v 'running with root privileges' "$WORK/lintian.txt" || true
[ "$rc" = 0 ] || fail "lintian found errors or warnings (above)"
echo "lintian: no errors, no warnings"

say "systemd-analyze security --offline=true"
for unit in maillogsentinel.service maillogsentinel-geoip-update.service; do
  line=$(systemd-analyze security --offline=true "$ROOT/packaging/$unit" 2>&1 | grep 'Overall exposure level') \
    || fail "systemd-analyze security gave no score for $unit"
  echo "$line"
  score=$(echo "$line" | sed -E 's/.*: ([0-9]+\.[0-9]+) .*/\1/')
  awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "$unit scores $score, above 2.0"
done

# --- 1. scan as root first, then install ------------------------------------------------------------
say "scan as root before installing, then dpkg -i"
INSTALLED_BY_US=1
mkdir -p "$STATE"
"$TARGET/release/maillogsentinel" scan --no-enrich "$ROOT/tests/data/mail.log" 2>&1 | tail -n 1
[ "$(stat -c %U "$STATE/intrusions.csv")" = root ] || fail "the scan did not leave a root-owned record"
dpkg -i "$DEB1"
getent passwd maillogsentinel >/dev/null || fail "no user maillogsentinel"
groups=$(id -nG maillogsentinel)
case " $groups " in *" adm "*) ;; *) fail "maillogsentinel is not in group adm: $groups" ;; esac
if getent group systemd-journal >/dev/null; then
  case " $groups " in *" systemd-journal "*) ;; *) fail "maillogsentinel is not in group systemd-journal: $groups" ;; esac
fi
[ "$(stat -c '%a %U %G' "$CONFIG")" = "640 root maillogsentinel" ] \
  || fail "$CONFIG is $(stat -c '%a %U %G' "$CONFIG"), not 640 root maillogsentinel"
dpkg-query -W -f='${Conffiles}\n' maillogsentinel | grep -q " $CONFIG " || fail "$CONFIG is not a conffile"
for f in "$STATE" "$STATE/intrusions.csv" "$STATE/lock"; do
  [ "$(stat -c %U "$f")" = maillogsentinel ] || fail "$f belongs to $(stat -c %U "$f"), not the service user"
done
zcat /usr/share/man/man1/maillogsentinel.1.gz | grep -q '^\.SH FILES' || fail "maillogsentinel(1) has no FILES section"
[ -f /usr/share/man/man1/maillogsentinel-scan.1.gz ] || fail "no maillogsentinel-scan(1)"
bash -c 'source /usr/share/bash-completion/completions/maillogsentinel && complete -p maillogsentinel' >/dev/null \
  || fail "the bash completion does not load"
[ -s /usr/share/zsh/vendor-completions/_maillogsentinel ] || fail "no zsh completion"
[ -s /usr/share/fish/vendor_completions.d/maillogsentinel.fish ] || fail "no fish completion"
[ -L /etc/systemd/system/multi-user.target.wants/maillogsentinel.service ] || fail "the service is not enabled"
[ -L /etc/systemd/system/timers.target.wants/maillogsentinel-geoip-update.timer ] || fail "the GeoIP timer is not enabled"

say "check --user maillogsentinel, as installed"
set +e
maillogsentinel check --user maillogsentinel > "$WORK/check.txt" 2>&1
rc=$?
set -e
grep '^#' "$WORK/check.txt" | grep -v '^# \[' | head -n 20
[ "$rc" = 0 ] || [ "$rc" = 1 ] || fail "check exited $rc (2: the packaged configuration is invalid)"
grep -q "^# ok: the state directory $STATE is writable" "$WORK/check.txt" || fail "check: the service user cannot write $STATE"
grep -q "^# ok: the intrusion record $STATE/intrusions.csv is writable" "$WORK/check.txt" \
  || fail "check: the service user cannot write the record the root scan left"

say "the daemon, as the service user, on what the root scan left"
rm -f "$STATE/checkpoint.json"   # so that the one looked at below is the daemon's own
set +e
timeout -s TERM 3 setpriv --reuid=maillogsentinel --regid=maillogsentinel --init-groups \
  /usr/bin/maillogsentinel run > "$WORK/run.txt" 2>&1
rc=$?
set -e
tail -n 3 "$WORK/run.txt"
[ "$rc" = 124 ] || fail "the daemon exited by itself ($rc) instead of running until stopped"
grep -q 'maillogsentinel .* running' "$WORK/run.txt" || fail "the daemon did not start"
grep -qi 'permission denied' "$WORK/run.txt" && fail "permission denied in the daemon's log"
[ "$(stat -c %U "$STATE/checkpoint.json")" = maillogsentinel ] || fail "no checkpoint written by the service user"

# --- 2. upgrade keeping an edited configuration, then purge -------------------------------------------
say "edit the configuration, upgrade with --force-confold"
sed -i 's/^stats_interval = .*/stats_interval = "1h"/' "$CONFIG"
dpkg -i --force-confold "$DEB2"
[ "$(dpkg-query -W -f='${Version}' maillogsentinel)" = 0.1.0-2 ] || fail "not upgraded"
grep -q '^stats_interval = "1h"$' "$CONFIG" || fail "the postmaster's edit was lost on upgrade"
grep -q '^stats_interval = "30m"$' "$CONFIG.dpkg-dist" || fail "the new default is not beside it ($CONFIG.dpkg-dist)"
[ "$(stat -c '%a %U %G' "$CONFIG")" = "640 root maillogsentinel" ] || fail "the upgrade changed $CONFIG's mode"

purge_and_look() {
  say "purge: nothing left"
  dpkg --purge maillogsentinel
  INSTALLED_BY_US=""
  local left=()
  for p in /etc/maillogsentinel "$STATE" /run/maillogsentinel /usr/bin/maillogsentinel \
      /etc/systemd/system/multi-user.target.wants/maillogsentinel.service \
      /etc/systemd/system/timers.target.wants/maillogsentinel-geoip-update.timer; do
    [ -e "$p" ] || [ -L "$p" ] && left+=("$p")
  done
  getent passwd maillogsentinel >/dev/null && left+=("user maillogsentinel")
  getent group maillogsentinel >/dev/null && left+=("group maillogsentinel")
  dpkg-statoverride --list "$CONFIG" >/dev/null 2>&1 && left+=("statoverride $CONFIG")
  dpkg -s maillogsentinel >/dev/null 2>&1 && left+=("dpkg status")
  [ ${#left[@]} -eq 0 ] || fail "left after purge: ${left[*]}"
  echo "nothing left"
}
purge_and_look

# --- 3. a minimal image: no /usr/share/doc, no man pages -----------------------------------------------
say "dpkg -i with path-exclude=/usr/share/doc/* (a minimal image)"
printf 'path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\n' > "$NODOC"
INSTALLED_BY_US=1
dpkg -i "$DEB1"
dpkg -s maillogsentinel | grep -q '^Status: install ok installed' || fail "not configured on a minimal image"
[ -e /usr/share/doc/maillogsentinel/README.md ] && fail "path-exclude was not in force"
grep -q '^\[sources\]' "$CONFIG" || fail "no configuration on a minimal image"
maillogsentinel check -c "$CONFIG" >/dev/null 2>&1 || [ $? = 1 ] || fail "the configuration is invalid on a minimal image"

say "edit the configuration, upgrade with --force-confnew"
sed -i 's/^stats_interval = .*/stats_interval = "1h"/' "$CONFIG"
dpkg -i --force-confnew "$DEB2"
grep -q '^stats_interval = "30m"$' "$CONFIG" || fail "--force-confnew did not install the new default"
grep -q '^stats_interval = "1h"$' "$CONFIG.dpkg-old" || fail "the postmaster's edit is not kept as $CONFIG.dpkg-old"
[ "$(stat -c '%a %U %G' "$CONFIG")" = "640 root maillogsentinel" ] || fail "the upgrade changed $CONFIG's mode"
rm -f "$NODOC"
purge_and_look

say "PACKAGE TEST PASSED"
