//! `report` and the daemon's reporter with real parts: the fixture CSV, aiosmtpd on loopback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};

use crate::report_day;
use crate::smtp_server::{SmtpServer, free_port};
use crate::support::*;

const HOSTILE: &str = "<script>alert(1)</script>";

/// A log with a hostile username, and a config mailing to `port`.
fn setup(dir: &Path, port: u16, extra: &str) -> (PathBuf, PathBuf) {
    let log = dir.join("mail.log");
    let mut text = std::fs::read_to_string(data("mail.log")).unwrap();
    text.push_str(&attack(HOSTILE));
    text.push_str(&attack("=HYPERLINK(\"http://evil.example\")"));
    std::fs::write(&log, text).unwrap();
    set_mtime(&log, fixture_mtime());
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{d}/mail.log\"]\nserver = \"mx\"\nstate_dir = \"{d}/state\"\njournal = false\npoll_interval = \"200ms\"\n\n[output]\ncsv = \"{d}/out.csv\"\n\n{NO_ENRICH}\n[report]\nto = [\"postmaster@example.org\", \"Admin <admin@example.org>\"]\nfrom = \"sentinel@example.org\"\nsubject_prefix = \"[mx]\"\nretry = \"1s\"\n{extra}\n[report.smtp]\nhost = \"127.0.0.1\"\nport = {port}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    (log, cfg)
}

fn scan_into_csv(cfg: &Path, log: &Path) {
    let o = run(&[
        "scan",
        "--no-enrich",
        "-c",
        cfg.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn print_text_and_json_for_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let (log, cfg) = setup(dir.path(), 1, "");
    scan_into_csv(&cfg, &log);
    let c = cfg.to_str().unwrap();
    let o = run(&[
        "report",
        "-c",
        c,
        "--from",
        "2026-11-22",
        "--to",
        "2026-11-23",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // 12 fixture rows on the 22nd (one is on the 2nd) plus the two added.
    assert_eq!(v["totals"]["attempts"], 14);
    assert_eq!(v["top_ips"][0]["ip"], "198.51.100.77");
    assert_eq!(v["top_ips"][0]["count"], 4);
    assert_eq!(v["previous"]["attempts"], 0);
    let users: Vec<&str> = v["top_usernames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(users.contains(&HOSTILE), "{users:?}");
    assert!(
        users.contains(&"=HYPERLINK(\"http://evil.example\")"),
        "the CSV guard is undone for reports: {users:?}"
    );
    let v6 = &v["ipv6_prefixes"][0];
    assert_eq!(v6["prefix"], "2001:db8:0:0::/64");

    let o = run(&[
        "report",
        "-c",
        c,
        "--from",
        "2026-11-22",
        "--to",
        "2026-11-23",
        "--print",
    ]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(
        text.contains("failed logins") && text.contains("198.51.100.77"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    let bad = run(&[
        "report",
        "-c",
        c,
        "--from",
        "yesterday-ish",
        "--to",
        "2026-11-23",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("cannot read the time"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn send_mails_text_html_chart_and_rows_with_attacker_text_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path());
    let (log, cfg) = setup(dir.path(), smtp.port, "");
    scan_into_csv(&cfg, &log);
    let o = run(&[
        "report",
        "-c",
        cfg.to_str().unwrap(),
        "--from",
        "2026-11-22",
        "--to",
        "2026-11-23",
        "--send",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(wait_until(Duration::from_secs(10), || smtp
        .messages()
        .len()
        == 1));
    let raw = &smtp.messages()[0];
    let m = MessageParser::default().parse(raw).unwrap();
    let subject = m.subject().unwrap();
    // The verdict: the server, the failures and their change, the addresses.
    assert_eq!(
        subject,
        "[mx] mx: 14 failed logins (none in the previous 24 h) from 9 addresses (9 new); \
         no auth-backend outage",
    );
    // Headers for a machine-made mail: an id, a date, and no automatic replies.
    let header = |name: &str| {
        m.header_raw(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert!(
        header("Message-ID").starts_with("<maillogsentinel.")
            && header("Message-ID").ends_with("@example.org>"),
        "{}",
        header("Message-ID")
    );
    assert!(m.date().is_some());
    assert_eq!(header("Auto-Submitted"), "auto-generated");
    assert_eq!(header("X-Auto-Response-Suppress"), "All");
    let to: Vec<String> = m
        .to()
        .unwrap()
        .iter()
        .filter_map(|a| a.address().map(str::to_string))
        .collect();
    assert_eq!(to, ["postmaster@example.org", "admin@example.org"]);
    let text = m.body_text(0).unwrap();
    assert!(
        text.contains("198.51.100.77") && text.contains(HOSTILE),
        "{text}"
    );
    assert_eq!(
        text.lines().next(),
        subject.strip_prefix("[mx] "),
        "verdict first"
    );
    let html = m.body_html(0).unwrap();
    assert!(!html.contains(HOSTILE), "raw script tag in the HTML");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("name=\"viewport\""), "{html}");
    assert!(
        html.contains("src=\"cid:chart\" width=\"720\" height=\"280\" alt=\"Chart of failed logins per hour: 14 in all, peak "),
        "{html}"
    );
    let parts: Vec<_> = m.attachments().collect();
    let chart = parts
        .iter()
        .find(|p| p.content_id() == Some("chart"))
        .expect("inline chart");
    assert!(chart.contents().starts_with(b"\x89PNG"));
    let csv = parts
        .iter()
        .find(|p| p.attachment_name().is_some_and(|n| n.ends_with(".csv")))
        .expect("CSV attachment");
    let rows = String::from_utf8(csv.contents().to_vec()).unwrap();
    let lines: Vec<&str> = rows.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 1 + 14, "{rows}");
    assert!(lines[0].starts_with("timestamp,server"));
    assert!(
        rows.contains("'=HYPERLINK"),
        "the attachment keeps the formula guard"
    );
    // No header was made out of attacker text.
    let text = String::from_utf8_lossy(raw);
    let head = text
        .split("\n\n")
        .next()
        .unwrap()
        .split("\r\n\r\n")
        .next()
        .unwrap();
    assert!(!head.contains("script"), "{head}");
}

#[test]
fn smtp_down_then_up_delivers_the_report_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (log, cfg) = setup(dir.path(), port, "");
    scan_into_csv(&cfg, &log);
    // Down: --send fails, says why, keeps the report in the outbox.
    let o = run(&[
        "report",
        "-c",
        cfg.to_str().unwrap(),
        "--since",
        "3650d",
        "--send",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot send the report mail") && stderr(&o).contains("outbox"),
        "{}",
        stderr(&o)
    );
    // Up, with the daemon running: it retries the outbox and delivers it, once.
    let smtp = SmtpServer::start_on(dir.path(), port);
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(30), || smtp.messages().len() == 1),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(smtp.messages().len(), 1, "delivered once");
    assert!(
        std::fs::read_dir(dir.path().join("state/outbox"))
            .unwrap()
            .next()
            .is_none(),
        "outbox empty"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn sigusr1_mails_a_report_of_the_time_since_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path());
    let (_log, cfg) = setup(dir.path(), smtp.port, "schedule = \"\"");
    // The first report starts where the last one ended; without a last one it would cover the
    // last 24 h of the wall clock, so this test would pass only on the fixture's day. A state
    // saying the last report ended at 2026-11-21 00:00 UTC fixes where the first window starts
    // (its end, "now", is after every fixture row whatever the date).
    std::fs::write(
        dir.path().join("state/report-state.json"),
        "{\"last_to\":1795219200}",
    )
    .unwrap();
    let mut d = Daemon::start(&cfg, dir.path());
    let out = dir.path().join("out.csv");
    assert!(
        wait_until(Duration::from_secs(15), || usernames(&out).len() == 15),
        "{}",
        d.logged()
    );
    d.signal("USR1");
    assert!(
        wait_until(Duration::from_secs(20), || smtp.messages().len() == 1),
        "{}",
        d.logged()
    );
    let m = MessageParser::default()
        .parse(&smtp.messages()[0])
        .unwrap()
        .subject()
        .unwrap()
        .to_string();
    assert!(m.starts_with("[mx] mx: 14 failed logins ("), "{m}");
    // The daemon logs once the send returned: shortly after the mail arrived.
    assert!(
        wait_until(Duration::from_secs(10), || d
            .logged()
            .contains("report sent (requested by SIGUSR1)")),
        "{}",
        d.logged()
    );
    // The next one starts where this one ended: it holds nothing new.
    d.signal("USR1");
    assert!(
        wait_until(Duration::from_secs(20), || smtp.messages().len() == 2),
        "{}",
        d.logged()
    );
    // (The Maildir's file names do not sort by arrival within a second: compare as a set.)
    let mut subjects: Vec<String> = smtp
        .messages()
        .iter()
        .map(|raw| {
            MessageParser::default()
                .parse(raw)
                .unwrap()
                .subject()
                .unwrap()
                .split(" (")
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects[0], "[mx] mx: 14 failed logins", "{subjects:?}");
    // (Both signals may fall in one second: then the second window is empty.)
    assert!(
        ["[mx] mx: no failed logins", "[mx] mx: nothing to report"].contains(&subjects[1].as_str()),
        "{subjects:?}"
    );
    assert!(d.running());
    assert_eq!(d.stop(), Some(0));
    // The auth-backend failure of the fixture was recorded by the daemon for reports.
    let o = run(&[
        "report",
        "-c",
        cfg.to_str().unwrap(),
        "--since",
        "3650d",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["backend_failures"], 1, "{v}");
    assert_eq!(
        v["backend_reasons"][0]["key"],
        "Connection lost to authentication server"
    );
}

#[test]
fn a_compromise_alert_is_mailed_with_no_attacker_text_in_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path());
    let (log, cfg) = setup(dir.path(), smtp.port, "\n[alerts]\nmail_delay = \"1s\"\n");
    std::fs::write(&log, noise(0)).unwrap();
    let now = chrono::Utc::now();
    let ts = |ago: i64| {
        (now - chrono::Duration::seconds(ago))
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string()
    };
    let d = Daemon::start(&cfg, dir.path());
    // A username with a terminal escape and a fake header: data, shown escaped.
    let user = "x\u{1b}[2J\\nBcc: victim@example.org";
    append(
        &log,
        &format!(
            "{} mx postfix/smtpd[1]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: x, sasl_username=root\n\
             {} mx dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip=203.0.113.5, lip=192.0.2.1, mpid=1, session=<s>\n",
            ts(60),
            ts(30)
        ),
    );
    assert!(
        wait_until(Duration::from_secs(20), || smtp.messages().len() == 1),
        "{}",
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    let raw = &smtp.messages()[0];
    let m = MessageParser::default().parse(raw).unwrap();
    assert_eq!(
        m.subject().unwrap(),
        "[mx] 1 possible compromise: logins after failed logins"
    );
    assert!(m.bcc().is_none());
    let text = m.body_text(0).unwrap();
    assert!(
        text.contains("logged in from 203.0.113.5")
            && text.contains("1 failed logins from this address"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "{text:?}");
    let text_all = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let headers = text_all.split("\n\n").next().unwrap();
    assert!(!headers.contains("victim"), "{headers}");
}

#[test]
fn logins_after_failures_come_first_and_new_origins_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, cfg) = setup(dir.path(), 1, "");
    scan_into_csv(&cfg, &log);
    // The daemon's alert record: one alert in the window, one before it.
    std::fs::write(
        dir.path().join("state/alerts.csv"),
        "timestamp,server,service,ip,username,mechanism,signals,address_failures,username_addresses,network,network_failures,country,asn,as_org\r\n\
         2026-11-20T09:00:00+01:00,mx,dovecot/imap-login,192.0.2.1,old,PLAIN,address,3,1,192.0.2.0/24,3,,,\r\n\
         2026-11-22T09:30:00+01:00,mx,dovecot/imap-login,203.0.113.5,'=alice,PLAIN,address+username,4,12,203.0.113.0/24,4,CN,4134,CHINANET\r\n",
    )
    .unwrap();
    // The logins record: 30 days of history, then the window.
    let row = |ts: &str, ip: &str, user: &str, country: &str, asn: &str| {
        format!("{ts},mx,dovecot/imap-login,{ip},{user},PLAIN,,,,ok,{country},{asn},Org{asn}\r\n")
    };
    let mut logins = String::from(
        "timestamp,server,service,ip,username,mechanism,reason,client_hostname,reverse_dns,dns_status,country,asn,as_org\r\n",
    );
    logins += &row(
        "2026-11-01T10:00:00+01:00",
        "192.0.2.10",
        "alice",
        "FR",
        "3215",
    );
    logins += &row(
        "2026-11-02T10:00:00+01:00",
        "192.0.2.11",
        "carol",
        "DE",
        "3320",
    );
    logins += &row(
        "2026-11-22T08:00:00+01:00",
        "192.0.2.10",
        "alice",
        "FR",
        "3215",
    );
    logins += &row(
        "2026-11-22T09:00:00+01:00",
        "198.51.100.3",
        "bob",
        "US",
        "7018",
    );
    logins += &row(
        "2026-11-22T09:30:00+01:00",
        "203.0.113.5",
        "alice",
        "CN",
        "4134",
    );
    logins += &row(
        "2026-11-22T09:40:00+01:00",
        "203.0.113.6",
        "alice",
        "CN",
        "4134",
    );
    logins += &row(
        "2026-11-22T10:00:00+01:00",
        "192.0.2.12",
        "carol",
        "DE",
        "3209",
    );
    std::fs::write(dir.path().join("logins.csv"), logins).unwrap();
    // Dovecot's verdicts the daemon kept: two attempts on an existing account, one unknown.
    std::fs::write(
        dir.path().join("state/auth-verdicts.csv"),
        "2026-11-22T09:00:00+01:00,203.0.113.5,alice,known\r\n\
         2026-11-22T09:01:00+01:00,203.0.113.5,alice,known\r\n\
         2026-11-22T09:02:00+01:00,203.0.113.5,'=root,unknown\r\n\
         2026-11-21T09:02:00+01:00,203.0.113.5,bob,known\r\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let window = ["--from", "2026-11-22", "--to", "2026-11-23"];
    let o = run(&[&["report", "-c", c][..], &window, &["--format", "json"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let alerts = v["logins_after_failures"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["username"], "=alice", "the CSV guard is undone");
    assert_eq!(alerts[0]["address_failures"], 4);
    assert_eq!(alerts[0]["asn"], 4134);
    assert_eq!(alerts[0]["as_org"], "CHINANET");
    assert_eq!(
        (
            v["known_user_attempts"].as_u64(),
            v["unknown_user_attempts"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(v["known_usernames"][0]["key"], "alice");
    assert_eq!(v["known_usernames"].as_array().unwrap().len(), 1);
    let new: Vec<(String, String)> = v["new_origins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["username"].as_str().unwrap().to_string(),
                n["new"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // bob has no history (not listed); alice's second CN login is not new again.
    assert_eq!(
        new,
        [
            ("alice".to_string(), "country+AS".to_string()),
            ("carol".to_string(), "AS".to_string())
        ]
    );
    // The text report starts with them.
    let o = run(&[&["report", "-c", c][..], &window, &["--print"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let first = text.lines().nth(3).unwrap_or_default();
    assert!(first.starts_with("Logins after failures"), "{text}");
}

/// `report` over the day of [`report_day`], with `extra` arguments.
fn run_day(cfg: &Path, extra: &[&str]) -> std::process::Output {
    let c = cfg.to_str().unwrap();
    let window = ["--from", report_day::FROM, "--to", report_day::TO];
    run(&[&["report", "-c", c][..], &window, extra].concat())
}

/// `report` over a day with two spoofed reverse DNS names, in one of the three formats.
fn day_report(cfg: &Path, format: &str, extra: &[&str]) -> String {
    let o = run_day(cfg, &[&["--format", format][..], extra].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn spoofed_reverse_dns_is_marked_unconfirmed_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = report_day::setup(dir.path(), 1);
    let v: serde_json::Value = serde_json::from_str(&day_report(&cfg, "json", &[])).unwrap();
    assert_eq!(v["schema"], 2);
    assert_eq!(
        v["verdict"],
        "mx1.example.org: 297 failed logins (+12% on the previous 24 h) from 40 addresses \
         (30 new); no auth-backend outage"
    );
    let top = &v["top_ips"][0];
    assert_eq!(
        (&top["ip"], &top["count"], &top["previous"]),
        (&"192.0.2.10".into(), &30.into(), &0.into())
    );
    assert_eq!(top["reverse_dns"], "smtp.office365.com");
    assert_eq!(top["dns_status"], "mismatch");
    assert_eq!(
        (&top["asn"], &top["as_org"]),
        (&7552.into(), &"Viettel Group".into())
    );
    assert_eq!(v["top_ips"][2]["dns_status"], "ok");
    // Never counted as a host's name; listed apart, as claims.
    let hosts: Vec<&str> = v["top_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["key"].as_str().unwrap())
        .collect();
    assert!(!hosts.is_empty());
    assert!(
        hosts
            .iter()
            .all(|h| h.ends_with(".a-rather-long-provider-name.example.net")),
        "{hosts:?}"
    );
    let claims: Vec<(&str, u64)> = v["unconfirmed_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["key"].as_str().unwrap(), h["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        claims,
        [("smtp.office365.com", 30), ("mail.google.com", 25)]
    );
    // Numbers as numbers, keys apart from display strings, previous periods filled in.
    let asn = &v["top_asns"][0];
    assert!(
        asn["asn"].is_u64() && asn["org"].is_string() && asn["previous"].is_u64(),
        "{asn}"
    );
    assert!(
        v["distributed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["previous"].as_u64() > Some(0)),
        "{}",
        v["distributed"]
    );
    assert_eq!(v["per_hour"].as_array().unwrap().len(), 24);
    assert!(v["per_hour"][0]["start"].is_string() && v["per_hour"][0]["count"].is_u64());

    for (format, extra) in [
        ("text", &[][..]),
        ("text", &["--full"][..]),
        ("html", &[][..]),
    ] {
        let out = day_report(&cfg, format, extra);
        assert!(
            out.contains("smtp.office365.com (unconfirmed)"),
            "{format} {extra:?}: {out}"
        );
        assert!(
            out.contains("mail.google.com (unconfirmed)"),
            "{format} {extra:?}"
        );
        if format == "text" {
            assert_eq!(out.lines().next(), v["verdict"].as_str(), "verdict first");
        }
    }
    // The full text's host table holds no spoofed name.
    let full = day_report(&cfg, "text", &["--full"]);
    let hosts_table: String = full
        .split("\n\n")
        .find(|t| t.starts_with("Top client hosts"))
        .unwrap()
        .to_string();
    assert!(
        !hosts_table.contains("office365") && !hosts_table.contains("google"),
        "{hosts_table}"
    );
}

#[test]
fn the_terminal_report_fits_fifty_lines_and_measures_columns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = report_day::setup(dir.path(), 1);
    let short = day_report(&cfg, "text", &[]);
    let lines: Vec<&str> = short.lines().collect();
    assert!(lines.len() <= 50, "{} lines:\n{short}", lines.len());
    assert_eq!(
        lines[3], "Overview",
        "the overview right after the verdict: {short}"
    );
    assert!(short.contains("maillogsentinel report --full"), "{short}");
    // Every line of the usernames table is as wide as its header, whatever the script: the
    // Japanese username is two columns a character, the long one is cut.
    let full = day_report(&cfg, "text", &["--full"]);
    let table: Vec<&str> = full
        .lines()
        .skip_while(|l| *l != "Top usernames")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(table.iter().any(|l| l.contains("管理者")), "{full}");
    assert!(table.iter().any(|l| l.contains("webmaster🔥")), "{full}");
    assert!(table.iter().any(|l| l.contains("…")), "{full}");
    // The last column (ASNs) ends at the same terminal column on every row.
    let width = |l: &str| unicode_width::UnicodeWidthStr::width(l);
    let header = width(table[0]);
    for l in &table[1..] {
        assert_eq!(width(l), header, "{l:?} in\n{}", table.join("\n"));
    }
    assert!(full.lines().count() > 50 && full.contains("Top countries"));
}

#[test]
fn format_with_send_alone_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = report_day::setup(dir.path(), 1);
    let o = run(&[
        "report",
        "-c",
        cfg.to_str().unwrap(),
        "--since",
        "1d",
        "--send",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("add --print"), "{}", stderr(&o));
}

/// The `.eml` files in a directory.
fn emls(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .count()
    })
}

#[test]
fn a_permanent_refusal_is_kept_as_failed_and_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let refusing = SmtpServer::start_refusing(dir.path());
    let cfg = report_day::setup(dir.path(), refusing.port);
    std::fs::write(dir.path().join("mail.log"), "").unwrap();
    let c = cfg.to_str().unwrap();
    let send = || run_day(&cfg, &["--send"]);
    // Refused at once: said, kept as failed, not queued for retries.
    let o = send();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("refused the report mail for good")
            && err.contains("(550): 5.1.1")
            && err.contains("not retried")
            && err.contains("outbox/failed/"),
        "{err}"
    );
    assert_eq!(refusing.refused(), ["postmaster@example.org"]);
    let (outbox, failed) = (
        dir.path().join("state/outbox"),
        dir.path().join("state/outbox/failed"),
    );
    assert_eq!((emls(&outbox), emls(&failed)), (0, 1));
    let meta = std::fs::read_dir(&failed)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "json"))
        .unwrap()
        .path();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    assert!(
        meta["refused"].as_str().unwrap().contains("User unknown"),
        "{meta}"
    );

    // Queued while the server was down, then refused when the daemon retries: moved to
    // failed after that one attempt, never tried again.
    drop(refusing);
    let port = free_port();
    let cfg2 = report_day::setup(dir.path(), port);
    assert_eq!(cfg2, cfg);
    let o = send();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("to be retried"), "{}", stderr(&o));
    assert_eq!(emls(&outbox), 1);
    // (The new server appends to the same list: the first refusal is on it.) Should another
    // test have taken the port meanwhile, the configuration moves to another one.
    let mut port = port;
    let refusing = loop {
        if let Some(s) = SmtpServer::try_refusing_on(dir.path(), port) {
            break s;
        }
        port = free_port();
        report_day::setup(dir.path(), port);
    };
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(30), || refusing.refused().len() == 2),
        "{}",
        d.logged()
    );
    assert!(
        wait_until(Duration::from_secs(10), || d
            .logged()
            .contains("refused a queued report for good")),
        "{}",
        d.logged()
    );
    // Retries come every second (`retry = "1s"`, doubling): three would have come by now.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(refusing.refused().len(), 2, "retried: {}", d.logged());
    assert_eq!((emls(&outbox), emls(&failed)), (0, 2));
    let o = run(&["status", "-c", c]);
    assert!(
        stdout(&o).contains("REFUSED: 2 mail(s) refused for good"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(d.stop(), Some(0));
}
