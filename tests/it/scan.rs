//! `scan` on fixture files: the CSV is compared byte for byte with the expected one.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use crate::support::*;

fn expected(name: &str) -> String {
    std::fs::read_to_string(data(name)).unwrap()
}

#[test]
fn plain_file_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "mail.log");
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("mail.csv"));
    // The auth-backend failure is not a row but is warned about, with file and line.
    let err = stderr(&o);
    assert!(
        err.contains("SASL backend failed") && err.contains("line=19"),
        "{err}"
    );
    assert!(
        err.contains("13 failed logins, 2 logins, 1 auth-backend failures"),
        "{err}"
    );
}

#[test]
fn dovecot_login_summaries_are_rows_beside_postfix_failures() {
    // One row per failed summary; a login, a connection without attempts and the auth
    // process's verdict are none. Hostile usernames are data (escaped for spreadsheets; the
    // address is the server's last rip=). A line of Dovecot's own log file (log_path) names no
    // host: its row records `[sources] server`.
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "dovecot.log");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[sources]\nserver = \"imap.example.org\"\n").unwrap();
    let o = run(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "--no-enrich",
        "-o",
        "-",
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("dovecot.csv"));
    let err = stderr(&o);
    assert!(
        err.contains("9 lines") && err.contains("0 unrecognised"),
        "{err}"
    );
}

#[test]
fn successful_logins_go_to_the_logins_record() {
    // Postfix's `client=..., sasl_method=` lines and Dovecot's `Login:`: rows of their own
    // record, same columns, never in the intrusion record.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path());
    let mail = fixture_copy(dir.path(), "mail.log");
    let dovecot = fixture_copy(dir.path(), "dovecot.log");
    let (mail, dovecot) = (mail.to_str().unwrap(), dovecot.to_str().unwrap());
    // With the configured outputs: logins.csv beside the intrusion record.
    let o = run(&[
        "scan",
        "--no-enrich",
        "-c",
        cfg.to_str().unwrap(),
        mail,
        dovecot,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("out");
    assert_eq!(
        std::fs::read_to_string(out.join("logins.csv")).unwrap(),
        expected("logins.csv")
    );
    let intrusions = std::fs::read_to_string(out.join("intrusions.csv")).unwrap();
    assert!(!intrusions.contains("alice"), "{intrusions}");
    let err = stderr(&o);
    assert!(
        err.contains("3 logins") && err.contains("1 connections without auth attempts"),
        "{err}"
    );
    // With --output: logins only where --logins says.
    let logins = dir.path().join("l.csv");
    let o = run(&[
        "scan",
        "--no-enrich",
        "-o",
        "-",
        "--logins",
        logins.to_str().unwrap(),
        mail,
        dovecot,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&logins).unwrap(),
        expected("logins.csv")
    );
    // Both to stdout would mix them: refused before anything is read.
    let o = run(&["scan", "--no-enrich", "-o", "-", "--logins", "-", mail]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--logins"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
}

#[test]
fn gzip_file_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let gz = fixture_copy(dir.path(), "mail.log.gz");
    let o = run(&["scan", "--no-enrich", "-o", "-", gz.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("mail.csv"));
}

#[test]
fn rfc3339_and_journal_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "iso.log");
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("iso.csv"));
}

#[test]
fn year_is_inferred_across_new_year() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "newyear.log");
    // The file was last written on 2 January 2027 (09:00 UTC).
    set_mtime(
        &log,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_880_400),
    );
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("newyear.csv"));
}

/// Local times around the test zone's changes (CET/CEST, 29 March and 25 October 2026): the
/// skipped hour is placed an hour later, the repeated one takes the earlier instant, and each
/// line keeps its own offset whatever the line before it had.
#[test]
fn daylight_saving_changes() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "dst.log");
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stamps: Vec<String> = stdout(&o)
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        stamps,
        [
            "2026-03-29T01:59:59+01:00",
            "2026-03-29T03:30:00+02:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T03:59:59+02:00",
            "2026-10-25T01:59:59+02:00",
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:59:59+02:00",
            "2026-10-25T03:00:00+01:00",
            "2026-10-25T03:00:00+01:00",
        ]
    );
}

#[test]
fn stdin_dash() {
    let mut child = bin()
        .args(["scan", "--no-enrich", "-o", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // No file, so no mtime: the year comes from the clock; use a timestamp with a year.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(data("iso.log")).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("iso.csv"));
}

/// The stderr lines that carry `what` (tracing writes one event per line).
fn warnings<'a>(err: &'a str, what: &str) -> Vec<&'a str> {
    err.lines().filter(|l| l.contains(what)).collect()
}

#[test]
fn rfc5424_repeated_unreadable_and_relay_lines() {
    // forms.log: RFC 5424 lines (one with structured data and a BOM, dated after the file was
    // written: its own year is kept), an rsyslog `message repeated 3 times` line (3 rows) and
    // one repeating a backend failure, two failures whose client cannot be read, and this
    // server's relay login refused twice.
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "forms.log");
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("forms.csv"));
    let err = stderr(&o);
    let unread = warnings(&err, "a SASL failure line was not recorded");
    assert_eq!(unread.len(), 2, "{err}");
    assert!(
        unread[0].contains("line=7") && unread[1].contains("line=8"),
        "{err}"
    );
    let relay = warnings(&err, "refused this server's SASL login");
    assert_eq!(relay.len(), 2, "{err}");
    assert!(
        relay[0].contains("mx1.relay.example.net[198.51.100.6]") && relay[0].contains("line=9"),
        "{err}"
    );
    assert!(
        relay[1].contains("mx2.relay.example.net[198.51.100.7]") && relay[1].contains("line=10"),
        "{err}"
    );
    let backend = warnings(&err, "SASL backend failed");
    assert!(backend.len() == 1 && backend[0].contains("line=6"), "{err}");
    assert!(
        err.contains(
            "6 failed logins, 0 logins, 2 auth-backend failures, 2 relay login failures, 2 unrecognised"
        ),
        "{err}"
    );
}

#[test]
fn a_repeat_count_over_the_cap_is_capped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    std::fs::write(
        &log,
        "Nov 22 08:01:04 mx postfix/smtpd[3363]: message repeated 4000000000 times: [ warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=admin]\n",
    )
    .unwrap();
    set_mtime(&log, fixture_mtime());
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1 + 1000);
    let err = stderr(&o);
    assert_eq!(
        warnings(&err, "stands for more than 1000 lines").len(),
        1,
        "{err}"
    );
    assert!(
        err.contains("1000 failed logins") && err.contains("1 repeat counts capped"),
        "{err}"
    );
}

#[test]
fn files_are_read_in_the_order_given() {
    let dir = tempfile::tempdir().unwrap();
    let a = fixture_copy(dir.path(), "iso.log");
    let b = fixture_copy(dir.path(), "mail.log.gz");
    let o = run(&[
        "scan",
        "--no-enrich",
        "-o",
        "-",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mail = expected("mail.csv");
    let want = expected("iso.csv") + mail.strip_prefix(HEADER).unwrap();
    assert_eq!(stdout(&o), want);
}

#[test]
fn output_file_is_appended_with_one_header() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "mail.log");
    let out = dir.path().join("out.csv");
    for _ in 0..2 {
        let o = run(&[
            "scan",
            "--no-enrich",
            "-o",
            out.to_str().unwrap(),
            log.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
    let rows = expected("mail.csv");
    let want = rows.clone() + rows.strip_prefix(HEADER).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o007, 0, "CSV must not be world-readable: {mode:o}");
}

#[test]
fn without_output_rows_go_to_the_configured_csv() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path());
    let log = fixture_copy(dir.path(), "mail.log");
    let o = run(&[
        "scan",
        "--no-enrich",
        "-c",
        cfg.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = dir.path().join("out/intrusions.csv");
    assert_eq!(std::fs::read_to_string(csv).unwrap(), expected("mail.csv"));
}

#[test]
fn a_foreign_output_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "mail.log");
    let out = dir.path().join("other.csv");
    std::fs::write(&out, "a,b\n1,2\n").unwrap();
    let o = run(&[
        "scan",
        "--no-enrich",
        "-o",
        out.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(out.to_str().unwrap()), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "a,b\n1,2\n");
}
