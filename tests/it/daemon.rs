//! `maillogsentinel run`: live following, partial lines, backfill, missing and unreadable
//! files, reload, signals.

use std::time::Duration;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn appended_lines_become_rows_and_a_partial_line_waits() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    append(&log, &attack("first"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["first"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    // Half a line, then the rest: exactly one row, once complete.
    let line = attack("split");
    let (a, b) = line.split_at(60);
    append(&log, a);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        usernames(&out),
        ["first"],
        "a partial line must wait for its newline"
    );
    append(&log, b);
    assert!(
        wait_until(WAIT, || usernames(&out) == ["first", "split"]),
        "{:?}",
        usernames(&out)
    );
    assert_eq!(d.stop(), Some(0));
    assert_eq!(usernames(&out), ["first", "split"]);
}

#[test]
fn successful_logins_are_recorded_beside_failures_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let (out, logins) = (dir.path().join("out.csv"), dir.path().join("logins.csv"));
    let d = Daemon::start(&cfg, dir.path());
    append(&log, &(attack("bad") + &login("alice") + &noise(1)));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["bad"]
            && usernames(&logins) == ["alice"]),
        "{:?} {:?}\n{}",
        usernames(&out),
        usernames(&logins),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    let checkpoint = std::fs::read_to_string(dir.path().join("state/checkpoint.json")).unwrap();
    assert!(checkpoint.contains("logins.csv"), "{checkpoint}");

    // `logins = ""`: no record of them (the failures as before).
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("[output]\n", "[output]\nlogins = \"\"\n"),
    )
    .unwrap();
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    append(&log, &(login("alice") + &attack("bad")));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["bad"]),
        "{}",
        d.logged()
    );
    // More logins than the events in flight the sources may hold (8192), none recorded: they
    // must give their share back, or reading would stop for good.
    let many: String = (0..9000).map(|i| login(&format!("u{i}"))).collect();
    append(&log, &(many + &attack("after")));
    assert!(
        wait_until(Duration::from_secs(30), || usernames(&out)
            == ["bad", "after"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    assert!(!dir.path().join("logins.csv").exists());
}

#[test]
fn a_login_after_failures_is_an_alert_also_across_a_restart() {
    // Timestamps a few minutes before now (RFC 3339, so no year or zone is guessed): the
    // alert window is counted back from the login, and at start from now.
    let now = chrono::Utc::now();
    let ts = |ago: i64| {
        (now - chrono::Duration::seconds(ago))
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string()
    };
    let fail = |ago: i64, ip: &str, user: &str| {
        format!(
            "{} mx postfix/smtpd[1]: warning: unknown[{ip}]: SASL LOGIN authentication failed: x, sasl_username={user}\n",
            ts(ago)
        )
    };
    let login = |ago: i64, ip: &str, user: &str| {
        format!(
            "{} mx dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=192.0.2.1, mpid=1, session=<s>\n",
            ts(ago)
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let alerts = dir.path().join("state/alerts.csv");
    let d = Daemon::start(&cfg, dir.path());
    append(
        &log,
        &(fail(600, "203.0.113.5", "root")
            + &fail(590, "203.0.113.5", "admin")
            + &login(300, "203.0.113.5", "alice")
            // An address that never failed, and a user's own single typo: no alert.
            + &login(290, "192.0.2.50", "bob")
            + &fail(280, "198.51.100.9", "carol")
            + &login(270, "198.51.100.9", "carol")
            // Dovecot's verdict (auth_verbose): kept for reports, not a row.
            + &format!(
                "{} mx dovecot: auth: passwd-file(root,203.0.113.5,<s>): unknown user\n",
                ts(260)
            )),
    );
    assert!(
        wait_until(WAIT, || csv_rows(&alerts).len() == 1),
        "{:?}\n{}",
        csv_rows(&alerts),
        d.logged()
    );
    let verdicts = dir.path().join("state/auth-verdicts.csv");
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&verdicts)
            .is_ok_and(|v| v.ends_with(",203.0.113.5,root,unknown\r\n"))),
        "{:?}",
        std::fs::read_to_string(&verdicts)
    );
    let row = &csv_rows(&alerts)[0];
    assert!(row.contains(",203.0.113.5,alice,PLAIN,address,2,"), "{row}");
    assert_eq!(d.stop(), Some(0));
    // The daemon's log says it once, with the facts.
    // A restart remembers the window's failures: a later login from that address alerts too.
    let d = Daemon::start(&cfg, dir.path());
    append(&log, &login(100, "203.0.113.5", "dave"));
    assert!(
        wait_until(WAIT, || csv_rows(&alerts).len() == 2),
        "{:?}\n{}",
        csv_rows(&alerts),
        d.logged()
    );
    assert!(csv_rows(&alerts)[1].contains(",dave,"));
    let logged = d.logged();
    assert!(
        logged.contains("possible compromise: \"dave\" logged in from 203.0.113.5")
            && logged.contains("2 failed logins from this address (for other usernames too)"),
        "{logged}"
    );
    assert!(
        logged.contains("alerts: the last 1day of failures remembered"),
        "{logged}"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn new_log_forms_are_followed_and_relay_failures_reach_reports() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    append(&log, &std::fs::read_to_string(data("forms.log")).unwrap());
    // RFC 5424 lines and a `message repeated 3 times` line (3 rows).
    let want = ["admin", "eve", "root", "root", "root", "root"];
    assert!(
        wait_until(WAIT, || usernames(&out) == want),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    // Unreadable clients and relay logins are warned about, as backend failures are.
    assert!(
        wait_until(WAIT, || {
            let l = d.logged();
            l.matches("a SASL failure line was not recorded").count() == 2
                && l.matches("refused this server's SASL login").count() == 2
        }),
        "{}",
        d.logged()
    );
    let log_path = d.log.clone();
    assert_eq!(d.stop(), Some(0));
    let logged = std::fs::read_to_string(log_path).unwrap();
    assert!(
        logged.contains("2 auth-backend failures, 2 relay login failures, 2 unrecognised"),
        "{logged}"
    );
    // Reports list the relay refusals with the backend failures.
    let o = run(&[
        "report",
        "-c",
        cfg.to_str().unwrap(),
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["backend_failures"], 4, "{v}");
    let reasons: Vec<(String, u64)> = v["backend_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("Connection lost to authentication server".to_string(), 2),
            ("SASL authentication failed; server mx1.relay.example.net[198.51.100.6] said: 535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6".to_string(), 1),
            ("SASL authentication failed; server mx2.relay.example.net[198.51.100.7] said: 535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6".to_string(), 1),
        ]
    );
}

#[test]
fn first_start_reads_rotated_history_oldest_first() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let base = fixture_mtime();
    let hour = Duration::from_secs(3600);
    for (i, name) in [
        "mail.log.4.gz",
        "mail.log.3.gz",
        "mail.log.2.gz",
        "mail.log.1",
        "mail.log",
    ]
    .iter()
    .enumerate()
    {
        let text = format!(
            "{}{}{}",
            noise(i),
            attack(&format!("u{i}a")),
            attack(&format!("u{i}b"))
        );
        let path = dir.path().join(name);
        if name.ends_with(".gz") {
            let mut enc = GzEncoder::new(Vec::new(), Compression::default());
            enc.write_all(text.as_bytes()).unwrap();
            std::fs::write(&path, enc.finish().unwrap()).unwrap();
        } else {
            std::fs::write(&path, text).unwrap();
        }
        set_mtime(&path, base - hour * (5 - i as u32));
    }
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    let want: Vec<String> = (0..5)
        .flat_map(|i| [format!("u{i}a"), format!("u{i}b")])
        .collect();
    assert!(
        wait_until(WAIT, || usernames(&out).len() >= 10),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    assert_eq!(usernames(&out), want);
}

#[test]
fn without_backfill_only_new_lines_count() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&dir.path().join("mail.log.1"), &attack("old-rotated"));
    append(&log, &(attack("old") + "partial line without newline "));
    let cfg = daemon_config(dir.path(), &[&log], "backfill = false");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || d.logged().contains("first start without backfill")),
        "{}",
        d.logged()
    );
    // The partial line at the end was not read yet: its completion is a new line.
    append(&log, "and its end\n");
    append(&log, &attack("new"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["new"]),
        "{:?}",
        usernames(&out)
    );
    assert_eq!(d.stop(), Some(0));
    assert_eq!(usernames(&out), ["new"]);
}

#[test]
fn a_missing_file_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || d.logged().contains("does not exist (yet)")),
        "{}",
        d.logged()
    );
    append(&log, &attack("late"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["late"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(
        d.logged().matches("does not exist").count(),
        1,
        "warned once"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn an_unreadable_file_is_reported_and_retried() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &attack("secret"));
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = daemon_config(dir.path(), &[&log], "");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = dir.path().join("out.csv");
    let root = String::from_utf8_lossy(
        &std::process::Command::new("id")
            .arg("-u")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
        == "0";
    let cmd = if root {
        let mut c = isolated(std::process::Command::new("setpriv"));
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_maillogsentinel"));
        c
    } else {
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o000)).unwrap();
        bin()
    };
    let d = Daemon::start_with(cmd, &cfg, dir.path());
    assert!(
        wait_until(WAIT, || d.logged().contains("Permission denied")),
        "{}",
        d.logged()
    );
    assert!(
        d.logged()
            .contains(&format!("cannot open {}", log.display())),
        "{}",
        d.logged()
    );
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        wait_until(WAIT, || usernames(&out) == ["secret"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    let errors = d
        .logged()
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("Permission denied"))
        .count();
    assert_eq!(errors, 1, "reported once: {}", d.logged());
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn sighup_applies_a_valid_config_and_keeps_running_on_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    append(&a, &attack("a1"));
    append(&b, &attack("b1"));
    let cfg = daemon_config(dir.path(), &[&a], "");
    let out = dir.path().join("out.csv");
    let mut d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out) == ["a1"]),
        "{:?}",
        usernames(&out)
    );

    // A broken config: the daemon says what is wrong and goes on with the old one.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        good.replace("poll_interval = \"200ms\"", "poll_interval = 200"),
    )
    .unwrap();
    d.signal("HUP");
    assert!(
        wait_until(WAIT, || d.logged().contains("reload failed")),
        "{}",
        d.logged()
    );
    assert!(d.logged().contains("line 4"), "{}", d.logged());
    assert!(d.running());
    append(&a, &attack("a2"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["a1", "a2"]),
        "{:?}",
        usernames(&out)
    );

    // A valid change: a second file is followed, the first is not read again.
    std::fs::write(
        &cfg,
        daemon_config(dir.path(), &[&a, &b], "").pipe(|p| std::fs::read_to_string(p).unwrap()),
    )
    .unwrap();
    d.signal("HUP");
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 3),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert!(
        d.logged().contains("configuration reloaded: sources.files"),
        "{}",
        d.logged()
    );
    append(&a, &attack("a3"));
    append(&b, &attack("b2"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 5),
        "{:?}",
        usernames(&out)
    );
    let mut got = usernames(&out);
    got.sort();
    assert_eq!(got, ["a1", "a2", "a3", "b1", "b2"]);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn sigusr1_does_not_stop_the_daemon_and_a_second_daemon_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(1));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let mut d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || d.logged().contains("running")),
        "{}",
        d.logged()
    );
    d.signal("USR1");
    assert!(
        wait_until(WAIT, || d.logged().contains("report requested")),
        "{}",
        d.logged()
    );
    assert!(d.running());
    let second = run(&["run", "-c", cfg.to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(1));
    let err = stderr(&second);
    assert!(
        err.contains("another running maillogsentinel") || err.contains("locked"),
        "{err}"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn overlong_live_lines_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "max_line_bytes = 4096");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    let mut huge = attack("huge");
    huge.insert_str(20, &"x".repeat(100_000));
    append(&log, &huge);
    append(&log, &attack("after"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["after"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert!(
        d.logged().contains("longer than max_line_bytes"),
        "{}",
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
}

/// `x.pipe(f)`: for building a value inline.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[test]
fn polling_alone_follows_the_file_when_notifications_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "notify = false");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    append(&log, &attack("polled"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["polled"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    std::fs::rename(&log, dir.path().join("mail.log.1")).unwrap();
    append(&dir.path().join("mail.log.1"), &attack("late-in-old"));
    append(&log, &attack("in-new"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 3),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    assert_eq!(usernames(&out), ["polled", "late-in-old", "in-new"]);
}

#[test]
fn a_file_replaced_by_another_under_the_same_name_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &attack("one"));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out) == ["one"]),
        "{:?}",
        usernames(&out)
    );
    let other = dir.path().join("other.log");
    append(&other, &(noise(7) + &attack("two") + &attack("three")));
    std::fs::rename(&other, &log).unwrap();
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 3),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    append(&log, &attack("four"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 4),
        "{:?}",
        usernames(&out)
    );
    assert_eq!(d.stop(), Some(0));
    assert_eq!(usernames(&out), ["one", "two", "three", "four"]);
}

#[test]
fn a_log_replaced_while_its_writer_still_writes_is_finished_through_the_open_handle() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let mut writer = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    writer.write_all(attack("before").as_bytes()).unwrap();
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out) == ["before"]),
        "{}",
        d.logged()
    );
    // Another file renamed over the log: the old one has no name left, so no sibling will
    // ever show it; only the handle held since before can finish it. Its writer has not
    // reopened yet and goes on writing to it.
    let next = dir.path().join("next.tmp");
    std::fs::write(&next, noise(1)).unwrap();
    std::fs::rename(&next, &log).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..50 {
        writer
            .write_all(attack(&format!("late{i}")).as_bytes())
            .unwrap();
    }
    drop(writer);
    append(&log, &attack("new"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 52),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    let got = usernames(&out);
    assert_eq!(got.iter().filter(|u| u.starts_with("late")).count(), 50);
}

#[test]
fn a_csv_moved_away_for_archiving_is_started_anew() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &attack("first"));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out) == ["first"]),
        "{}",
        d.logged()
    );
    let archived = dir.path().join("out-2026-11.csv");
    std::fs::rename(&out, &archived).unwrap();
    append(&log, &attack("second"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["second"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(usernames(&archived), ["first"], "the archive is left alone");
    assert!(std::fs::read_to_string(&out).unwrap().starts_with(HEADER));
    assert_eq!(d.stop(), Some(0));
    // A restart is consistent with the new file: nothing read again, nothing lost.
    let d = Daemon::start(&cfg, dir.path());
    append(&log, &attack("third"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["second", "third"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn an_auth_backend_down_is_warned_a_few_times_then_counted_and_its_end_said() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let mut cmd = bin();
    cmd.env("MAILLOGSENTINEL_TEST_RATE_WINDOW", "2s");
    let d = Daemon::start_with(cmd, &cfg, dir.path());
    assert!(
        wait_until(WAIT, || d.logged().contains("running")),
        "{}",
        d.logged()
    );
    // Happening now (a failure from the log's history is only noted), thirty times.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let line = |i: usize| {
        format!(
            "{now} mx postfix/smtpd[{i}]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: Connection lost to authentication server\n"
        )
    };
    append(&log, &(0..30).map(line).collect::<String>());
    assert!(
        wait_until(WAIT, || d.logged().contains("25 more in the last 2s")),
        "{}",
        d.logged()
    );
    assert_eq!(
        d.logged()
            .matches("Connection lost to authentication server")
            .count(),
        5,
        "{}",
        d.logged()
    );
    // A login succeeds: the problem is said to be over, once.
    append(&log, &login("alice").replace("Nov 22 08:01:06", &now));
    assert!(
        wait_until(WAIT, || d
            .logged()
            .contains("resolved: logins succeed again")),
        "{}",
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
}
