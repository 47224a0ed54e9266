#!/usr/bin/env bash
# End-to-end: a real Postfix + Dovecot under attack on loopback, maillogsentinel following its
# log, enriching from a local dnsmasq and test GeoIP databases, and mailing its report back
# through the same Postfix. Needs root (it installs packages and runs Postfix); touches only
# 127.0.0.1 and ::1; stops everything it started, also when an assertion fails.
#
#   sudo tests/e2e/run.sh            (re-runnable; work files under /tmp/mls-e2e)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${MLS_E2E_WORK:-/tmp/mls-e2e}
SMTP=20025 SUBMISSION=20587 SMTPS=20465 AUTHPORT=20012 DNSPORT=20053 IMAP=20143 POP3=20110
PF="$WORK/postfix"
LOG="$WORK/log/mail.log"
CSV="$WORK/state/intrusions.csv"
DAEMON_PID="" DOVECOT_PID="" DNSMASQ_PID="" JOURNALD_PID="" MADE_DEV_LOG=""

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nE2E FAILED: %s\n' "$*" >&2; exit 1; }

# --- 1. packages --------------------------------------------------------------------------
say "packages"
need=()
for p in postfix dovecot-core dovecot-imapd dovecot-pop3d swaks dnsmasq-base libio-socket-inet6-perl openssl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # Keep the packages' own services from starting: this test runs private instances.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
fi
echo "postfix $(postconf -d -h mail_version), $(dovecot --version | cut -d' ' -f1), swaks $(swaks --version | head -1 | awk '{print $NF}')"

# --- cleanup, on every exit --------------------------------------------------------------------
cleanup() {
  set +e
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
  [ -f "$PF/main.cf" ] && postfix -c "$PF" stop >/dev/null 2>&1
  [ -n "$DOVECOT_PID" ] && kill "$DOVECOT_PID" 2>/dev/null && wait "$DOVECOT_PID" 2>/dev/null
  [ -n "$DNSMASQ_PID" ] && kill "$DNSMASQ_PID" 2>/dev/null && wait "$DNSMASQ_PID" 2>/dev/null
  [ -n "$JOURNALD_PID" ] && kill "$JOURNALD_PID" 2>/dev/null && wait "$JOURNALD_PID" 2>/dev/null
  [ -n "$MADE_DEV_LOG" ] && rm -f /dev/log
  # Leftovers of an earlier run that was killed before it could clean up.
  pkill -f "dovecot -F -c $WORK/" 2>/dev/null
  pkill -f "dnsmasq --keep-in-foreground --port=$DNSPORT" 2>/dev/null
  sleep 0.3
}
trap cleanup EXIT
cleanup
rm -rf "$WORK"
mkdir -p "$WORK"/{log,state,mail,dovecot/run,geo,spool,data}

# --- 2. binaries and test data ------------------------------------------------------------------
say "build"
(cd "$ROOT" && cargo build --quiet --bin maillogsentinel --example e2e-mmdb)
# Where cargo put them: target/ unless CARGO_TARGET_DIR says otherwise.
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
BIN="$TARGET/debug/maillogsentinel"
"$TARGET/debug/examples/e2e-mmdb" "$WORK/geo"

# --- 3. Dovecot: SASL for Postfix, IMAP and POP3, one real user, its own log file ------------------
say "dovecot"
cat > "$WORK/dovecot/passwd" <<PW
alice@e2e.test:{PLAIN}correct-horse
PW
chmod 644 "$WORK/dovecot/passwd"
mkdir -p "$WORK/vmail" && chown nobody:nogroup "$WORK/vmail"
cat > "$WORK/dovecot/dovecot.conf" <<CONF
protocols = imap pop3
listen = 127.0.0.1, ::1
mail_location = maildir:$WORK/vmail/%n
base_dir = $WORK/dovecot/run
state_dir = $WORK/dovecot/run
log_path = $WORK/log/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5
auth_failure_delay = 0
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = $WORK/dovecot/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$WORK/vmail/%n
}
service imap-login {
  inet_listener imap {
    port = $IMAP
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $POP3
  }
  inet_listener pop3s {
    port = 0
  }
}
service auth {
  inet_listener {
    address = 127.0.0.1
    port = $AUTHPORT
  }
}
service anvil {
  chroot =
}
CONF
dovecot -F -c "$WORK/dovecot/dovecot.conf" &
DOVECOT_PID=$!

# --- 4. dnsmasq: PTR and A/AAAA for the attackers ------------------------------------------------
say "dnsmasq"
dnsmasq --keep-in-foreground --port="$DNSPORT" --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --pid-file= --local=/in-addr.arpa/ --local=/ip6.arpa/ --local=/example.net/ \
  --host-record=attacker.example.net,203.0.113.7 \
  --host-record=v6.example.net,2001:db8::66 \
  --ptr-record=7.113.0.203.in-addr.arpa,attacker.example.net \
  --ptr-record=6.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa,v6.example.net \
  --ptr-record=9.100.51.198.in-addr.arpa,www.bank.example.net &
DNSMASQ_PID=$!

# --- 5. Postfix: a private instance on high ports ---------------------------------------------------
say "postfix"
mkdir -p "$PF"
cp /usr/share/postfix/master.cf.dist "$PF/master.cf"
: > "$PF/main.cf"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mx.e2e.test" \
  -keyout "$PF/key.pem" -out "$PF/cert.pem" >/dev/null 2>&1
nobody_uid=$(id -u nobody) nogroup_gid=$(getent group nogroup | cut -d: -f3)
chown nobody:nogroup "$WORK/mail"
chown postfix "$WORK/data"
pc() { postconf -c "$PF" -e "$@"; }
pc "queue_directory = $WORK/spool" "data_directory = $WORK/data" \
   "myhostname = mx.e2e.test" "mydomain = e2e.test" "myorigin = e2e.test" \
   "mydestination =" "inet_interfaces = 127.0.0.1, [::1]" "inet_protocols = all" \
   "mynetworks = 192.0.2.255/32" "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination" \
   "smtpd_sasl_auth_enable = yes" "smtpd_sasl_type = dovecot" "smtpd_sasl_path = inet:127.0.0.1:$AUTHPORT" \
   "smtpd_tls_auth_only = no" "smtpd_tls_security_level = may" \
   "smtpd_tls_cert_file = $PF/cert.pem" "smtpd_tls_key_file = $PF/key.pem" \
   "smtpd_authorized_xclient_hosts = 127.0.0.1, [::1]" \
   "maillog_file = $LOG" "maillog_file_prefixes = $WORK/log" \
   "virtual_mailbox_domains = reports.test" "virtual_mailbox_base = $WORK/mail" \
   "virtual_mailbox_maps = static:reports/" "virtual_uid_maps = static:$nobody_uid" "virtual_gid_maps = static:$nogroup_gid" \
   "alias_maps =" "alias_database =" "compatibility_level = 3.6" "smtpd_hard_error_limit = 4" \
   "smtpd_error_sleep_time = 0" "smtpd_soft_error_limit = 100"
# Our ports instead of 25; no chroot (paths are absolute).
sed -i -e 's/^smtp      inet.*/'"$SMTP"' inet n - n - - smtpd/' "$PF/master.cf"
cat >> "$PF/master.cf" <<MASTER
$SUBMISSION inet n - n - - smtpd -o syslog_name=postfix/submission
$SMTPS inet n - n - - smtpd -o syslog_name=postfix/smtps -o smtpd_tls_wrappermode=yes
MASTER
# postlogd writes maillog_file; Debian's master.cf has it, others may not.
postconf -c "$PF" -M postlog/unix-dgram="postlog unix-dgram n - n - 1 postlogd"
postconf -c "$PF" -F '*/*/chroot = n'
postfix -c "$PF" check
postfix -c "$PF" start
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for i in $(seq 100); do listening $SMTP && listening $SUBMISSION && listening $SMTPS && break; sleep 0.1; done
listening $SMTP || fail "postfix is not listening on $SMTP: $(tail -5 "$LOG" 2>/dev/null)"

# --- 6. maillogsentinel --------------------------------------------------------------------------------
say "maillogsentinel run"
cat > "$WORK/config.toml" <<CONF
[sources]
files = ["$LOG", "$WORK/log/dovecot.log"]
server = "mx.e2e.test"
state_dir = "$WORK/state"
poll_interval = "500ms"
rotate_wait = "3s"

[output]
csv = "$CSV"

[enrich]
dns_servers = ["127.0.0.1:$DNSPORT"]
dns_timeout = "1s"
country_db = "$WORK/geo/country.mmdb"
asn_db = "$WORK/geo/asn.mmdb"

[alerts]
mail_delay = "1s"

[report]
schedule = ""
to = ["postmaster@reports.test"]
from = "maillogsentinel@e2e.test"
subject_prefix = "[e2e]"
retry = "1s"

[report.smtp]
host = "127.0.0.1"
port = $SMTP
CONF
start_daemon() {
  "$BIN" run -c "$WORK/config.toml" >>"$WORK/log/daemon.log" 2>&1 &
  DAEMON_PID=$!
  for i in $(seq 100); do grep -q "running" "$WORK/log/daemon.log" 2>/dev/null && return; sleep 0.1; done
  fail "the daemon did not start: $(tail -5 "$WORK/log/daemon.log")"
}
start_daemon

# --- 7. attacks ------------------------------------------------------------------------------------------
say "attacks"
swk() { swaks --silent 3 --quit-after AUTH --server "$@" >/dev/null 2>&1 || true; }
attack() { # server port addr user mech [extra swaks args]
  local server=$1 port=$2 addr=$3 user=$4 mech=$5; shift 5
  local x=(); [ -n "$addr" ] && x=(--xclient-addr "$addr" --xclient-name "[UNAVAILABLE]")
  swk "$server" --port "$port" "${x[@]}" --auth "$mech" --auth-user "$user" --auth-password wrong "$@"
}
attack 127.0.0.1 $SMTP 203.0.113.7 admin LOGIN
attack 127.0.0.1 $SMTP 203.0.113.7 "info@e2e.test" PLAIN
attack 127.0.0.1 $SMTP 198.51.100.9 "john smith" CRAM-MD5
attack 127.0.0.1 $SMTP 192.0.2.44 "jürgen" LOGIN
attack 127.0.0.1 $SMTP IPV6:2001:db8::66 postmaster PLAIN
attack 127.0.0.1 $SUBMISSION 198.51.100.9 webmaster LOGIN
attack 127.0.0.1 $SMTPS 203.0.113.8 sales PLAIN --tlsc
attack 127.0.0.1 $SMTP "" local-v4 LOGIN
attack ::1 $SMTP "" local-v6 PLAIN -6
XCLIENT_ADDR=203.0.113.66 python3 "$ROOT/tests/e2e/sessions.py" 127.0.0.1 $SMTP too-many-errors > "$WORK/too-many"
XCLIENT_ADDR=203.0.113.67 python3 "$ROOT/tests/e2e/sessions.py" 127.0.0.1 $SMTP drop >/dev/null
XCLIENT_ADDR=203.0.113.68 python3 "$ROOT/tests/e2e/sessions.py" 127.0.0.1 $SMTP cancel >/dev/null
# Not attacks: a successful login that sends mail, ordinary mail, a relay attempt.
swaks --silent 3 --server 127.0.0.1 --port $SMTP --auth PLAIN --auth-user alice@e2e.test \
  --auth-password correct-horse --from alice@e2e.test --to postmaster@reports.test >/dev/null \
  || fail "a successful login was refused"
swaks --silent 3 --server 127.0.0.1 --port $SMTP --from friend@example.org --to postmaster@reports.test >/dev/null \
  || fail "ordinary mail was refused"
swaks --silent 3 --server 127.0.0.1 --port $SMTP --from spam@example.org --to victim@example.org >/dev/null 2>&1 \
  && fail "relay was allowed"

failure_lines() { zcat -f "$LOG" "$WORK"/log/mail.log.* 2>/dev/null | grep -aE 'smtpd\[[0-9]+\]: warning: [^ ]+\]: SASL [^ ]+ authentication failed' \
  | grep -avc 'Connection lost to authentication server' || true; }
csv_rows() { [ -f "$CSV" ] && echo $(( $(wc -l < "$CSV") - 1 )) || echo 0; }
wait_rows() { # the CSV reaches as many rows as the log has failure lines, within 10 s
  local want
  for i in $(seq 100); do
    want=$(failure_lines)
    [ "$(csv_rows)" -eq "$want" ] && [ "$want" -gt 0 ] && return 0
    sleep 0.1
  done
  fail "CSV has $(csv_rows) rows, the log $(failure_lines) failure lines"
}
wait_rows
echo "failure lines in the log: $(failure_lines); CSV rows: $(csv_rows); too-many-errors session: $(cat "$WORK/too-many") failures"

say "checks"
row() { grep -F -- "$1" "$CSV" | head -1; }
expect() { # what, pattern
  grep -qF -- "$2" "$CSV" || fail "$1: no row with $2"
}
expect "LOGIN from XCLIENT address, enriched" ",203.0.113.7,admin,LOGIN,(reason unavailable),,attacker.example.net,ok,BR,64502,Exemplo Telecom"
expect "PLAIN" ",203.0.113.7,info@e2e.test,PLAIN,"
expect "CRAM-MD5, PTR that does not confirm" ",198.51.100.9,john smith,CRAM-MD5,(reason unavailable),,www.bank.example.net,mismatch,DE,64501,"
expect "UTF-8 username" ",192.0.2.44,jürgen,LOGIN,"
expect "IPv6 with PTR" ",2001:db8::66,postmaster,PLAIN,(reason unavailable),,v6.example.net,ok,JP,64503,"
expect "submission service" "postfix/submission/smtpd,198.51.100.9,webmaster,LOGIN"
expect "smtps service" "postfix/smtps/smtpd,203.0.113.8,sales,PLAIN"
expect "from 127.0.0.1" ",127.0.0.1,local-v4,LOGIN,"
expect "from ::1" ",::1,local-v6,PLAIN,"
[ "$(grep -c ',203.0.113.66,brute' "$CSV")" -eq "$(cat "$WORK/too-many")" ] || fail "too-many-errors session: rows != 535 replies"
grep -q 'too many errors after AUTH' "$LOG" || fail "no 'too many errors' in the log"
for ip in 203.0.113.67 203.0.113.68; do grep -qF ",$ip," "$CSV" && fail "a dropped or cancelled AUTH ($ip) was recorded"; done
grep -q 'authentication aborted' "$LOG" || fail "no aborted AUTH in the log"
grep -qF ',alice@e2e.test,' "$CSV" && fail "the successful login was recorded"
grep -q 'sasl_username=alice@e2e.test' "$LOG" || fail "no successful login in the log"
# The successful login is in the logins record, and, since 127.0.0.1 failed before (local-v4),
# it is an alert: a row of alerts.csv and a mail through the same Postfix.
LOGINS="$(dirname "$CSV")/logins.csv"
for i in $(seq 100); do [ -f "$WORK/state/alerts.csv" ] && break; sleep 0.1; done
[ "$(tail -n +2 "$LOGINS" | wc -l)" -eq 1 ] || fail "logins record: $(cat "$LOGINS" 2>/dev/null)"
grep -qF ',postfix/smtpd,127.0.0.1,alice@e2e.test,PLAIN,,localhost,' "$LOGINS" || fail "no login row for alice: $(cat "$LOGINS")"
grep -qF ',127.0.0.1,alice@e2e.test,PLAIN,address,' "$WORK/state/alerts.csv" || fail "no alert for alice: $(cat "$WORK/state/alerts.csv" 2>/dev/null)"
grep -q 'possible compromise: "alice@e2e.test" logged in from 127.0.0.1' "$WORK/log/daemon.log" || fail "the alert is not in the daemon's log"
mailbox="$WORK/mail/reports/new"
mail_with() { # the first delivered mail whose subject matches, waiting up to 20 s
  for i in $(seq 100); do
    grep -l "^Subject: $1" "$mailbox"/* 2>/dev/null | head -1 | grep . && return
    sleep 0.2
  done
}
alert_mail=$(mail_with '\[e2e\] 1 possible compromise')
[ -n "$alert_mail" ] || fail "no alert mail in $mailbox: $(tail -5 "$WORK/log/daemon.log")"
python3 -c 'import email, sys; print(email.message_from_binary_file(open(sys.argv[1], "rb")).get_payload(decode=True).decode())' "$alert_mail" \
  | grep '"alice@e2e.test" logged in from 127.0.0.1 (postfix/smtpd) after 1 failed logins' >/dev/null \
  || fail "the alert mail does not name the login"
echo "logins record: 1 row; alert: $(grep -m1 '^Subject:' "$alert_mail")"
grep -q 'Relay access denied' "$LOG" || fail "no relay reject in the log"

# --- 8. rotation, reload, restart ----------------------------------------------------------------------
say "rotation while attacking, SIGHUP, restart"
for i in $(seq 1 30); do
  attack 127.0.0.1 $SMTP "198.51.100.$((100 + i))" "rot$i" LOGIN
  case $i in
    10) postfix -c "$PF" logrotate >/dev/null ;;
    15) kill -HUP "$DAEMON_PID" ;;
    20) kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || fail "the daemon did not stop cleanly"; DAEMON_PID="" ;;
    22) start_daemon ;;
    25) postfix -c "$PF" logrotate >/dev/null ;;
  esac
done
ls "$WORK/log" | grep -q 'mail.log\.' || fail "postfix logrotate made no rotated file"
wait_rows
for i in $(seq 1 30); do
  [ "$(grep -c ",198.51.100.$((100 + i)),rot$i," "$CSV")" -eq 1 ] || fail "rot$i is not in the CSV exactly once"
done
grep -q "configuration reloaded" "$WORK/log/daemon.log" || fail "no reload logged"
dups=$(tail -n +2 "$CSV" | sort | uniq -d | wc -l)
[ "$dups" -eq 0 ] || fail "$dups duplicated rows"
echo "after 2 rotations, a reload and a restart: $(csv_rows) rows for $(failure_lines) failure lines, no duplicate"

# --- 9. the report, through the same Postfix -----------------------------------------------------------
say "report on SIGUSR1"
# A report covers [last report, now) to the second: let the last attack's second pass.
sleep 1.5
kill -USR1 "$DAEMON_PID"
report=$(mail_with '\[e2e\] [^:]*: [0-9]* failed logins')
[ -n "$report" ] || fail "no report in $mailbox: $(tail -5 "$WORK/log/daemon.log")"
subject=$(python3 -c 'import email, email.policy, sys
print(email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)["Subject"])' "$report")
echo "$subject"
total=$(csv_rows)
# The subject is the verdict: the server(s), the failures, the addresses, the login after failures.
echo "$subject" | grep -q "\[e2e\] [^:]*: $total failed logins (" || fail "report subject does not say $total failed logins"
echo "$subject" | grep -q "1 login after failures" || fail "report subject does not tell of the login after failures"
grep -q '^Auto-Submitted: auto-generated' "$report" || fail "no Auto-Submitted header"
grep -q 'Content-ID: <chart>' "$report" || fail "no inline chart"
python3 -c '
import email, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"))
print(next(p for p in m.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode())' "$report" \
  | grep -A3 '^Logins after failures' | grep '127.0.0.1 .*alice@e2e.test' >/dev/null \
  || fail "the report does not list the login after failures first"
grep -q '^Content-Disposition: attachment' "$report" && grep -q 'intrusions-.*\.csv' "$report" || fail "no CSV attachment"

# --- 9b. IMAP and POP3 brute force against Dovecot (its own log file) ---------------------------------------
say "IMAP and POP3 attacks (Python imaplib/poplib), Dovecot logging to its own file"
for i in $(seq 100); do listening $IMAP && listening $POP3 && break; sleep 0.1; done
python3 "$ROOT/tests/e2e/imap_pop3.py" $IMAP $POP3 || fail "the IMAP/POP3 sessions failed"
DLOG="$WORK/log/dovecot.log"
summaries() { grep -ac -- '-login: Info: .*(auth failed, ' "$DLOG" || true; }
dovecot_rows() { grep -c ',dovecot/' "$CSV" || true; }
for i in $(seq 100); do
  [ "$(summaries)" -eq 5 ] && [ "$(dovecot_rows)" -eq 5 ] && grep -qF ',alice@e2e.test,' "$WORK/state/alerts.csv" \
    && [ "$(grep -c 'dovecot/imap-login' "$LOGINS")" -eq 1 ] && break
  sleep 0.1
done
[ "$(summaries)" -eq 5 ] || fail "Dovecot wrote $(summaries) failure summaries, not 5: $(grep -a -- '-login:' "$DLOG" | tail -8)"
[ "$(dovecot_rows)" -eq 5 ] || fail "$(dovecot_rows) Dovecot rows for 5 summary lines: $(grep ',dovecot/' "$CSV")"
expect "IMAP, 3 attempts in one connection, log_path line with the configured server" \
  ',mx.e2e.test,dovecot/imap-login,127.0.0.1,admin,PLAIN,"auth failed, 3 attempts in'
expect "IMAP over IPv6, unknown user" ',dovecot/imap-login,::1,nosuchuser,PLAIN,"auth failed, 1 attempts in'
expect "POP3" ',dovecot/pop3-login,127.0.0.1,info@e2e.test,PLAIN,'
[ "$(grep -c ',dovecot/pop3-login,::1,sales,' "$CSV")" -eq 2 ] || fail "two POP3 connections for sales are not two rows"
grep -qF ',mx.e2e.test,dovecot/imap-login,::1,alice@e2e.test,PLAIN,' "$LOGINS" || fail "no IMAP login row: $(cat "$LOGINS")"
[ "$(tail -n +2 "$LOGINS" | wc -l)" -eq 2 ] || fail "the logins record holds $(tail -n +2 "$LOGINS" | wc -l) rows, not 2"
grep -qF ',dovecot/imap-login,::1,alice@e2e.test,PLAIN,address,' "$WORK/state/alerts.csv" \
  || fail "the IMAP login from ::1 after failures is no alert: $(cat "$WORK/state/alerts.csv")"
grep -qF ',nosuchuser,' "$LOGINS" && fail "a failed login is in the logins record"
echo "Dovecot: 5 summary lines, 5 rows (one for 3 attempts in one connection), 1 IMAP login, alerted"

# --- 10. the same Postfix logging to a real journald through /dev/log ------------------------------------
say "journal: Postfix logging through /dev/log to a real journald"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || fail "the daemon did not stop cleanly"; DAEMON_PID=""
postfix -c "$PF" stop >/dev/null
# journald on a private runtime: a mount namespace of its own with tmpfs on /run/systemd and
# /run/log; its sockets and its journal directory are ours, so the host's journal is untouched.
JRT="$WORK/journald/run" JDIR="$WORK/journald/journal"
mkdir -p "$JRT" "$JDIR"
cat > "$WORK/journald/journald.conf" <<CONF
[Journal]
Storage=volatile
ReadKMsg=no
Audit=no
RateLimitBurst=0
ForwardToSyslog=no
ForwardToWall=no
CONF
unshare -m sh -c "set -e; mount --make-rprivate /; mkdir -p /run/systemd /run/log
  mount -t tmpfs tmpfs /run/systemd; mount -t tmpfs tmpfs /run/log
  mkdir -p /run/systemd/journal /run/log/journal
  mount --bind '$JRT' /run/systemd/journal; mount --bind '$JDIR' /run/log/journal
  mount --bind '$WORK/journald/journald.conf' /etc/systemd/journald.conf
  exec /lib/systemd/systemd-journald" 2>"$WORK/log/journald.log" &
JOURNALD_PID=$!
for i in $(seq 100); do [ -S "$JRT/dev-log" ] && break; sleep 0.1; done
[ -S "$JRT/dev-log" ] || fail "journald did not start: $(cat "$WORK/log/journald.log")"
# Postfix logs through syslog(3), i.e. /dev/log: in a mount namespace where /dev/log is
# journald's socket (a mount point is needed; this host may have no /dev/log).
postconf -c "$PF" -e "maillog_file ="
if [ ! -e /dev/log ]; then : > /dev/log; MADE_DEV_LOG=1; fi
unshare -m sh -c "mount --make-rprivate / && mount --bind '$JRT/dev-log' /dev/log && postfix -c '$PF' start" \
  || fail "postfix did not start logging to journald"
for i in $(seq 100); do listening $SMTP && listening $SUBMISSION && break; sleep 0.1; done
listening $SMTP || fail "postfix is not listening on $SMTP"
cat > "$WORK/config-journal.toml" <<CONF
[sources]
# No such file: journal = "auto" reads the journal.
files = ["$WORK/log/none.log"]
journal_path = "$JDIR"
state_dir = "$WORK/state-journal"

[output]
csv = "$WORK/state-journal/intrusions.csv"

[enrich]
dns_servers = ["127.0.0.1:$DNSPORT"]
dns_timeout = "1s"
country_db = "$WORK/geo/country.mmdb"
asn_db = "$WORK/geo/asn.mmdb"
CONF
JCSV="$WORK/state-journal/intrusions.csv"
start_journal_daemon() {
  "$BIN" run -c "$WORK/config-journal.toml" >>"$WORK/log/daemon-journal.log" 2>&1 &
  DAEMON_PID=$!
  for i in $(seq 100); do grep -q "running" "$WORK/log/daemon-journal.log" 2>/dev/null && return; sleep 0.1; done
  fail "the daemon did not start: $(tail -5 "$WORK/log/daemon-journal.log")"
}
start_journal_daemon
grep -q "reading the journal in $JDIR" "$WORK/log/daemon-journal.log" || fail "the daemon did not choose the journal: $(cat "$WORK/log/daemon-journal.log")"
for i in $(seq 1 20); do
  attack 127.0.0.1 $SMTP "198.51.100.$((150 + i))" "jrnl$i" LOGIN
  case $i in
    6) kill -USR2 "$JOURNALD_PID" ;;  # journald rotates its files
    10) kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || fail "the daemon did not stop cleanly"; DAEMON_PID="" ;;
    13) start_journal_daemon ;;
    16) kill -USR2 "$JOURNALD_PID" ;;
  esac
done
journal_failures() { journalctl -D "$JDIR" -o cat SYSLOG_FACILITY=2 2>/dev/null \
  | grep -aE '^warning: [^ ]+\]: SASL [^ ]+ authentication failed' | grep -avc 'Connection lost to authentication server' || true; }
jrows() { [ -f "$JCSV" ] && echo $(( $(wc -l < "$JCSV") - 1 )) || echo 0; }
for i in $(seq 100); do
  want=$(journal_failures)
  [ "$(jrows)" -eq "$want" ] && [ "$want" -ge 20 ] && break
  sleep 0.1
done
[ "$(jrows)" -eq "$(journal_failures)" ] || fail "CSV has $(jrows) rows, the journal $(journal_failures) failure entries"
for i in $(seq 1 20); do
  [ "$(grep -c ",198.51.100.$((150 + i)),jrnl$i," "$JCSV")" -eq 1 ] || fail "jrnl$i is not in the journal CSV exactly once"
done
grep -qF "postfix/smtpd,198.51.100.151,jrnl1,LOGIN,(reason unavailable)" "$JCSV" || fail "journal row fields: $(sed -n 2p "$JCSV")"
[ "$(ls "$JDIR"/*/ | grep -c '@')" -ge 2 ] || fail "journald did not rotate: $(ls "$JDIR"/*/)"
echo "journal: $(jrows) rows for $(journal_failures) failure entries, across 2 journal rotations and a restart"
postfix -c "$PF" stop >/dev/null

# --- 10b. Dovecot logging through syslog into the same journal -------------------------------------------
say "IMAP and POP3 attacks again, Dovecot logging through /dev/log to the journal beside Postfix"
kill -TERM "$DOVECOT_PID"; wait "$DOVECOT_PID" 2>/dev/null; DOVECOT_PID=""
for i in $(seq 100); do listening $IMAP || break; sleep 0.1; done
# Dovecot's default: no log_path, so syslog(3) with facility mail, i.e. /dev/log.
grep -v '^log_path' "$WORK/dovecot/dovecot.conf" > "$WORK/dovecot/dovecot-syslog.conf"
echo "syslog_facility = mail" >> "$WORK/dovecot/dovecot-syslog.conf"
unshare -m sh -c "mount --make-rprivate / && mount --bind '$JRT/dev-log' /dev/log && exec dovecot -F -c '$WORK/dovecot/dovecot-syslog.conf'" &
DOVECOT_PID=$!
for i in $(seq 100); do listening $IMAP && listening $POP3 && break; sleep 0.1; done
listening $IMAP || fail "dovecot (logging to syslog) is not listening on $IMAP"
python3 "$ROOT/tests/e2e/imap_pop3.py" $IMAP $POP3 || fail "the IMAP/POP3 sessions failed"
JLOGINS="$WORK/state-journal/logins.csv"
journal_summaries() { journalctl -D "$JDIR" -o cat SYSLOG_IDENTIFIER=dovecot 2>/dev/null | grep -ac -- '-login: .*(auth failed, ' || true; }
journal_dovecot_rows() { grep -c ',dovecot/' "$JCSV" || true; }
for i in $(seq 100); do
  [ "$(journal_summaries)" -eq 5 ] && [ "$(journal_dovecot_rows)" -eq 5 ] \
    && grep -qF ',alice@e2e.test,' "$WORK/state-journal/alerts.csv" 2>/dev/null && break
  sleep 0.1
done
[ "$(journal_summaries)" -eq 5 ] || fail "the journal holds $(journal_summaries) Dovecot failure summaries, not 5: $(journalctl -D "$JDIR" -o cat SYSLOG_IDENTIFIER=dovecot | tail -8)"
[ "$(journal_dovecot_rows)" -eq 5 ] || fail "$(journal_dovecot_rows) Dovecot rows from the journal for 5 summaries: $(grep ',dovecot/' "$JCSV")"
# The server is the journal's _HOSTNAME: this machine, not [sources] server.
grep -qF ",$(hostname),dovecot/imap-login,127.0.0.1,admin,PLAIN,\"auth failed, 3 attempts in" "$JCSV" \
  || fail "IMAP, 3 attempts in one connection, from the journal: $(grep ',dovecot/' "$JCSV")"
grep -qF ',dovecot/imap-login,::1,nosuchuser,PLAIN,"auth failed, 1 attempts in' "$JCSV" || fail "IMAP over IPv6 from the journal"
[ "$(grep -c ',dovecot/pop3-login,::1,sales,' "$JCSV")" -eq 2 ] || fail "two POP3 connections for sales are not two rows (journal)"
[ "$(grep -c ',dovecot/imap-login,::1,alice@e2e.test,PLAIN,' "$JLOGINS")" -eq 1 ] || fail "no single IMAP login row from the journal: $(cat "$JLOGINS")"
grep -qF ',dovecot/imap-login,::1,alice@e2e.test,PLAIN,address,' "$WORK/state-journal/alerts.csv" \
  || fail "the IMAP login from ::1 after failures (journal) is no alert: $(cat "$WORK/state-journal/alerts.csv")"
[ "$(jrows)" -eq $(( $(journal_failures) + 5 )) ] || fail "the journal CSV has $(jrows) rows, not the Postfix failures and 5 Dovecot ones"
echo "Dovecot through syslog: 5 summaries in the journal, 5 rows, 1 login, alerted"

say "E2E PASSED: $total attacks recorded exactly once, report delivered, a login after failures alerted and mailed; $(jrows) more through journald (Postfix and Dovecot)"
