//! The journal source on real journal files: built from Postfix- and Dovecot-shaped entries
//! by `systemd-journal-remote` (it reads journald's export format and writes `.journal` files,
//! exactly as journald would), read through `journal_path` by `scan --journal` and by the
//! daemon across restarts, a vacuumed position and `kill -9`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::journald::Journald;
use crate::support::*;

/// 2026-11-18T11:06:40Z, in microseconds: entries are placed from here.
pub const BASE_USEC: u64 = 1_795_000_000_000_000;

/// A journal entry: its receive time and fields (values may be binary).
pub struct JEntry {
    /// `__REALTIME_TIMESTAMP`.
    pub usec: u64,
    /// Fields, in order.
    pub fields: Vec<(&'static str, Vec<u8>)>,
}

/// An entry of facility mail from `ident` on host mx1.
pub fn mail(usec: u64, ident: &str, message: &str) -> JEntry {
    JEntry {
        usec,
        fields: vec![
            ("_HOSTNAME", b"mx1".to_vec()),
            ("SYSLOG_FACILITY", b"2".to_vec()),
            ("SYSLOG_IDENTIFIER", ident.as_bytes().to_vec()),
            ("_PID", b"4242".to_vec()),
            ("MESSAGE", message.as_bytes().to_vec()),
        ],
    }
}

/// smtpd's failure line for `user` from 192.0.2.`n`.
pub fn failure(n: usize, user: &str) -> String {
    format!(
        "warning: unknown[192.0.2.{}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={user}",
        n % 250 + 1
    )
}

/// A failure of user `u{i}` at `BASE_USEC + i` milliseconds.
pub fn attack_entry(i: usize) -> JEntry {
    mail(
        BASE_USEC + i as u64 * 1000,
        "postfix/smtpd",
        &failure(i, &format!("u{i}")),
    )
}

/// Where Debian puts systemd-journal-remote, when it is installed.
fn journal_remote() -> Option<PathBuf> {
    [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Says why a test does not run here (never a silent pass).
pub fn skip_without_journal_remote() -> bool {
    if journal_remote().is_none() {
        eprintln!(
            "SKIPPED: systemd-journal-remote is not installed (apt-get install systemd-journal-remote); journal files cannot be built"
        );
        return true;
    }
    false
}

/// The export format: text fields as `NAME=value`, others as `NAME`, a little-endian length
/// and the bytes; entries end with an empty line. All entries are of one boot, so their
/// monotonic clock follows their realtime one (libsystemd orders entries of one boot by it).
fn export(entries: &[JEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        write!(
            out,
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n",
            e.usec,
            e.usec - BASE_USEC + 1_000_000
        )
        .unwrap();
        for (name, value) in &e.fields {
            if value.iter().all(|&b| b >= b' ' || b == b'\t') {
                out.extend_from_slice(name.as_bytes());
                out.push(b'=');
                out.extend_from_slice(value);
            } else {
                out.extend_from_slice(name.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(&(value.len() as u64).to_le_bytes());
                out.extend_from_slice(value);
            }
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    out
}

/// Writes `entries` as the journal file `path` (its name ends in `.journal`), built in a
/// scratch directory and moved in whole, as journald's rotation puts files in place.
pub fn build_journal(path: &Path, entries: &[JEntry]) {
    let scratch = tempfile::tempdir().unwrap();
    let tmp = scratch.path().join(path.file_name().unwrap());
    let mut child = Command::new(journal_remote().expect("checked by the caller"))
        .arg(format!("--output={}", tmp.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&export(entries))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "systemd-journal-remote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(&tmp, path.with_extension("partial")).unwrap();
    std::fs::rename(path.with_extension("partial"), path).unwrap();
}

/// Waits until the CSV `out` holds at least `n` rows (the daemon's log on failure).
fn wait_rows(d: &Daemon, out: &Path, n: usize) {
    assert!(
        wait_until(Duration::from_secs(15), || usernames(out).len() >= n),
        "{:?}\n{}",
        usernames(out),
        d.logged()
    );
}

/// Lets a moment pass (so that a row too many would show), stops the daemon cleanly and checks
/// the CSV's usernames.
fn stop_with_rows<S: AsRef<str>>(d: Daemon, out: &Path, want: &[S]) {
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.stop(), Some(0));
    let want: Vec<&str> = want.iter().map(AsRef::as_ref).collect();
    assert_eq!(usernames(out), want);
}

/// A daemon config reading the journal directory `dir/journal` (the configured file does not
/// exist, so `journal = "auto"` chooses the journal).
fn journal_config(dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("journal")).unwrap();
    daemon_config(
        dir,
        &[&dir.join("mail.log")],
        &format!("journal_path = \"{}/journal\"\n{extra}", dir.display()),
    )
}

/// A test directory with a daemon config reading `dir/journal` (see [`journal_config`]) whose
/// first file, `a.journal`, holds `first`: (directory, config, journal directory, CSV). `None`,
/// with the reason printed, where journal files cannot be built.
fn journal_test(
    extra: &str,
    first: &[JEntry],
) -> Option<(tempfile::TempDir, PathBuf, PathBuf, PathBuf)> {
    if skip_without_journal_remote() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = journal_config(dir.path(), extra);
    let jdir = dir.path().join("journal");
    build_journal(&jdir.join("a.journal"), first);
    let out = dir.path().join("out.csv");
    Some((dir, cfg, jdir, out))
}

#[test]
fn scan_finds_every_failure_of_facility_mail_and_counts_what_it_skips() {
    if skip_without_journal_remote() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("system.journal");
    let t = |s: u64| BASE_USEC + s * 1_000_000;
    let mut with_source_time = mail(t(1), "postfix/smtpd", &failure(1, "alice"));
    // Logged by smtpd half a second before journald received it.
    with_source_time.fields.push((
        "_SOURCE_REALTIME_TIMESTAMP",
        (t(1) - 500_000).to_string().into_bytes(),
    ));
    let mut other_facility = mail(t(3), "postfix/smtpd", &failure(3, "daemon-facility"));
    other_facility.fields[1].1 = b"3".to_vec();
    let mut sshd = mail(t(4), "sshd", "error: PAM: authentication failed for root");
    sshd.fields[1].1 = b"4".to_vec();
    let mut no_message = mail(t(5), "postfix/smtpd", "");
    no_message.fields.retain(|(n, _)| *n != "MESSAGE");
    let mut binary = mail(t(6), "postfix/smtpd", "");
    binary.fields[4].1 = b"warning: authentication failed\0\x01binary".to_vec();
    let entries = vec![
        with_source_time,
        mail(t(2), "postfix/submission/smtpd", &failure(2, "bob")),
        other_facility,
        sshd,
        no_message,
        binary,
        mail(
            t(7),
            "dovecot",
            "imap-login: Login: user=<carol>, method=PLAIN, rip=192.0.2.9",
        ),
        mail(t(8), "postfix/smtpd", "connect from unknown[192.0.2.8]"),
        mail(t(9), "postfix/smtpd", &failure(9, "dave")),
    ];
    build_journal(&j, &entries);
    let cfg = dir.path().join("c.toml");
    let write_cfg = |extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[sources]\njournal_path = \"{}\"\n{extra}\n{NO_ENRICH}",
                j.display()
            ),
        )
        .unwrap()
    };
    write_cfg("");
    let o = run(&["scan", "-c", cfg.to_str().unwrap(), "--journal", "-o", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = stdout(&o);
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    // The sender's own time, with its microseconds, in the local zone (TZ=CET here).
    assert!(
        rows[0].starts_with(
            "2026-11-18T12:06:40.500000+01:00,mx1,postfix/smtpd,192.0.2.2,alice,LOGIN,"
        ),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].contains(",mx1,postfix/submission/smtpd,192.0.2.3,bob,"),
        "{}",
        rows[1]
    );
    assert!(rows[2].contains(",dave,"), "{}", rows[2]);
    let err = stderr(&o);
    // Entries of facility mail: all but the daemon- and auth-facility ones.
    assert!(err.contains("scanned: 7 lines"), "{err}");
    assert!(err.contains("3 failed logins"), "{err}");
    assert!(
        err.contains("2 journal entries without a text message skipped"),
        "{err}"
    );

    // journal_match replaces the default: OR within a field, AND across fields.
    write_cfg(
        "journal_match = [\"SYSLOG_IDENTIFIER=postfix/submission/smtpd\", \"SYSLOG_IDENTIFIER=dovecot\", \"_HOSTNAME=mx1\"]",
    );
    let o = run(&["scan", "-c", cfg.to_str().unwrap(), "--journal", "-o", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().skip(1).collect::<Vec<_>>().len(),
        1,
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("scanned: 2 lines"), "{}", stderr(&o));

    // A window: [t(2), t(9)) in local time holds bob only.
    write_cfg("");
    let o = run(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "--journal",
        "--from",
        "2026-11-18 12:06:42",
        "--to",
        "2026-11-18T12:06:49+01:00",
        "-o",
        "-",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let users: Vec<String> = stdout(&o)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().to_string())
        .collect();
    assert_eq!(users, ["bob"], "{}", stderr(&o));

    // A bad term names the key and says what to write.
    write_cfg("journal_match = [\"syslog_identifier=postfix\"]");
    let o = run(&["scan", "-c", cfg.to_str().unwrap(), "--journal", "-o", "-"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("journal_match") && stderr(&o).contains("upper-case"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_daemon_chooses_the_journal_when_no_log_file_exists_and_resumes_at_its_cursor() {
    let Some((dir, cfg, jdir, out)) = journal_test(
        "backfill = true\n",
        &(0..3).map(attack_entry).collect::<Vec<_>>(),
    ) else {
        return;
    };

    let d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 3);
    // A file added while running (journald rotating) is read too.
    build_journal(
        &jdir.join("b.journal"),
        &(3..5).map(attack_entry).collect::<Vec<_>>(),
    );
    wait_rows(&d, &out, 5);
    assert_eq!(d.stop(), Some(0));
    let logged = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(
        logged.contains("reading the journal in")
            && logged.contains("none of the configured log files exists"),
        "{logged}"
    );

    // A restart reads on after the saved cursor: nothing twice.
    build_journal(
        &jdir.join("c.journal"),
        &(5..7).map(attack_entry).collect::<Vec<_>>(),
    );
    let d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 7);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    let want: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
    assert_eq!(usernames(&out), want);

    // Vacuumed while stopped: the saved entry is gone. Reading resumes after its time, and
    // the log says how much may be missing.
    for f in ["a", "b", "c"] {
        std::fs::remove_file(jdir.join(format!("{f}.journal"))).unwrap();
    }
    // u7..u9 were written (and vacuumed) while the daemon was down; u10, u11 remain.
    let later: Vec<JEntry> = (10..12)
        .map(|i| {
            let mut e = attack_entry(i);
            e.usec += 3_600_000_000;
            e
        })
        .collect();
    build_journal(&jdir.join("d.journal"), &later);
    let d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 9);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    let mut want = want;
    want.extend(["u10".to_string(), "u11".to_string()]);
    assert_eq!(usernames(&out), want);
    let logged = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(
        logged.contains("is no longer in the journal") && logged.contains("1h"),
        "{logged}"
    );
}

#[test]
fn a_first_start_without_backfill_reads_only_new_entries_also_after_a_restart() {
    // backfill = "auto": a journal's retained history is only read with `true`.
    let Some((dir, cfg, jdir, out)) =
        journal_test("", &(0..3).map(attack_entry).collect::<Vec<_>>())
    else {
        return;
    };
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("reading only new journal entries")),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    // Restarted before anything new: the history is still not read.
    let d = Daemon::start(&cfg, dir.path());
    build_journal(
        &jdir.join("b.journal"),
        &(3..5).map(attack_entry).collect::<Vec<_>>(),
    );
    wait_rows(&d, &out, 2);
    stop_with_rows(d, &out, &["u3", "u4"]);
}

#[test]
fn kill_9_in_the_middle_of_a_backfill_loses_and_repeats_nothing() {
    if skip_without_journal_remote() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = journal_config(dir.path(), "backfill = true\n");
    let jdir = dir.path().join("journal");
    let out = dir.path().join("out.csv");
    // Large enough that the backfill takes several commits (4,096 entries a batch).
    let total = 100_000;
    build_journal(
        &jdir.join("a.journal"),
        &(0..total).map(attack_entry).collect::<Vec<_>>(),
    );
    let (mut kills, mut midway) = (0, Vec::new());
    while usernames(&out).len() < total && kills < 3 {
        let d = Daemon::start(&cfg, dir.path());
        let before = usernames(&out).len();
        // Killed once some rows of this run are in, before the end.
        wait_until(Duration::from_secs(30), || {
            let n = usernames(&out).len();
            n > before || n == total
        });
        d.kill9();
        kills += 1;
        let n = usernames(&out).len();
        if n < total {
            midway.push(n);
        }
    }
    eprintln!("killed {kills} times, with {midway:?} of {total} rows in");
    assert!(
        !midway.is_empty(),
        "no kill landed in the middle of the backfill"
    );
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(60), || usernames(&out).len() >= total),
        "{} rows\n{}",
        usernames(&out).len(),
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    let users = usernames(&out);
    let mut seen = std::collections::BTreeSet::new();
    let dups: Vec<&String> = users.iter().filter(|u| !seen.insert(*u)).collect();
    assert!(
        dups.is_empty(),
        "{} duplicated: {:?}",
        dups.len(),
        &dups[..dups.len().min(10)]
    );
    assert_eq!(users.len(), total, "killed {kills} times");
}

#[test]
fn a_crash_at_each_step_of_a_commit_is_recovered_exactly_once() {
    if skip_without_journal_remote() {
        return;
    }
    for point in ["after-checkpoint", "mid-rows", "after-rows"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = journal_config(dir.path(), "backfill = true\n");
        let jdir = dir.path().join("journal");
        let out = dir.path().join("out.csv");
        build_journal(
            &jdir.join("a.journal"),
            &(0..2).map(attack_entry).collect::<Vec<_>>(),
        );
        let d = Daemon::start(&cfg, dir.path());
        assert!(
            wait_until(Duration::from_secs(15), || usernames(&out).len() == 2),
            "{point}: {}",
            d.logged()
        );
        assert_eq!(d.stop(), Some(0));

        let mut cmd = bin();
        cmd.env("MAILLOGSENTINEL_TEST_CRASH", point);
        let mut d = Daemon::start_with(cmd, &cfg, dir.path());
        build_journal(
            &jdir.join("b.journal"),
            &(2..5).map(attack_entry).collect::<Vec<_>>(),
        );
        let status =
            wait_timeout(&mut d.child, Duration::from_secs(15)).expect("the crash happens");
        assert!(!status.success(), "{point}: {status:?}");

        let d = Daemon::start(&cfg, dir.path());
        assert!(
            wait_until(Duration::from_secs(15), || usernames(&out).len() >= 5),
            "{point}: {:?}\n{}",
            usernames(&out),
            d.logged()
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(d.stop(), Some(0));
        assert_eq!(usernames(&out), ["u0", "u1", "u2", "u3", "u4"], "{point}");
    }
}

#[test]
fn a_real_journald_followed_across_rotation_restart_and_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let Some(jd) = Journald::start(dir.path()) else {
        return;
    };
    let out = dir.path().join("out.csv");
    let cfg = daemon_config(
        dir.path(),
        &[&dir.path().join("mail.log")],
        &format!(
            "journal_path = \"{}\"\nbackfill = true\n",
            jd.journal.display()
        ),
    );
    let attack = |i: usize| jd.log("postfix/smtpd", &failure(i, &format!("u{i}")));
    // Written before the daemon starts: read as the retained journal (backfill = true).
    jd.log("postfix/smtpd", "connect from unknown[192.0.2.200]");
    attack(0);
    jd.log(
        "dovecot",
        "imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.9",
    );
    let d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 1);
    // Live, with a rotation in the middle.
    attack(1);
    attack(2);
    jd.rotate();
    attack(3);
    attack(4);
    wait_rows(&d, &out, 5);
    assert_eq!(d.stop(), Some(0));

    // While the daemon is down: rotations around more attacks, then a vacuum that deletes
    // every file but the active one and the newest archive (u5, u6): the file of the saved
    // position (u4's) is gone.
    jd.rotate();
    attack(5);
    attack(6);
    jd.rotate();
    let journalctl = |args: &[&str]| {
        let o = Command::new("journalctl")
            .arg("-D")
            .arg(&jd.journal)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    journalctl(&["--vacuum-files=2"]);
    let left = journalctl(&["-o", "cat"]);
    assert!(
        !left.contains("sasl_username=u4") && left.contains("sasl_username=u5"),
        "the vacuum left: {left}"
    );
    let d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 7);
    attack(7);
    wait_rows(&d, &out, 8);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    let want: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
    assert_eq!(usernames(&out), want);
    let logged = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(logged.contains("is no longer in the journal"), "{logged}");
}

#[test]
fn a_first_start_on_an_empty_journal_reads_every_entry_that_comes() {
    if skip_without_journal_remote() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The journal directory holds no file yet (journald has not written, a new container).
    let cfg = journal_config(dir.path(), "");
    let jdir = dir.path().join("journal");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("no journal entry to read yet")),
        "{}",
        d.logged()
    );
    // Other facilities first, then failures: all of them come after the start.
    let mut entries = vec![mail(BASE_USEC, "CRON", "(root) CMD (true)")];
    entries[0].fields[1].1 = b"9".to_vec();
    entries.extend((1..6).map(attack_entry));
    build_journal(&jdir.join("b.journal"), &entries);
    wait_rows(&d, &out, 5);
    stop_with_rows(d, &out, &["u1", "u2", "u3", "u4", "u5"]);
}

#[test]
fn kill_9_right_after_a_first_start_at_the_tail_keeps_its_position() {
    if skip_without_journal_remote() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Progress is saved on a timer only after an hour: the tail position must be saved at once.
    let cfg = daemon_config(
        dir.path(),
        &[&dir.path().join("mail.log")],
        &format!("journal_path = \"{}/journal\"\n", dir.path().display()),
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[daemon]\ncheckpoint_interval = \"1h\"\n"),
    )
    .unwrap();
    let jdir = dir.path().join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    let out = dir.path().join("out.csv");
    build_journal(
        &jdir.join("a.journal"),
        &(0..3).map(attack_entry).collect::<Vec<_>>(),
    );
    let d = Daemon::start(&cfg, dir.path());
    let checkpoint = dir.path().join("state/checkpoint.json");
    assert!(
        wait_until(Duration::from_secs(15), || std::fs::read_to_string(
            &checkpoint
        )
        .is_ok_and(|c| c.contains("\"journals\""))),
        "{}",
        d.logged()
    );
    d.kill9();
    // Logged while the daemon was down: read at the next start, the history before it not.
    build_journal(
        &jdir.join("b.journal"),
        &(3..5).map(attack_entry).collect::<Vec<_>>(),
    );
    let d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 2);
    stop_with_rows(d, &out, &["u3", "u4"]);
}

#[test]
fn auto_keeps_the_source_of_the_last_start_when_a_log_file_appears() {
    let Some((dir, cfg, jdir, out)) = journal_test(
        "backfill = true\n",
        &(0..2).map(attack_entry).collect::<Vec<_>>(),
    ) else {
        return;
    };
    let d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 2);
    assert_eq!(d.stop(), Some(0));
    // rsyslog installed meanwhile: mail.log now exists and holds the same attacks.
    append(
        &dir.path().join("mail.log"),
        &(attack("u0") + &attack("u1")),
    );
    build_journal(&jdir.join("b.journal"), &[attack_entry(2)]);
    let d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 3);
    stop_with_rows(d, &out, &["u0", "u1", "u2"]);
    let logged = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(logged.contains("was read at the last start"), "{logged}");
}

#[test]
fn a_reload_with_other_matches_reads_on_from_the_committed_entry() {
    if skip_without_journal_remote() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = journal_config(dir.path(), "backfill = true\n");
    let jdir = dir.path().join("journal");
    let out = dir.path().join("out.csv");
    // The last entry read is Dovecot's, which the new matches leave out.
    let mut first = vec![attack_entry(0)];
    first.push(mail(
        BASE_USEC + 1000,
        "dovecot",
        "imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.9",
    ));
    build_journal(&jdir.join("a.journal"), &first);
    let mut d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 1);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "backfill = true\n",
        "backfill = true\njournal_match = [\"SYSLOG_IDENTIFIER=postfix/smtpd\"]\n",
    );
    std::fs::write(&cfg, text).unwrap();
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("now reading the journal")),
        "{}",
        d.logged()
    );
    build_journal(
        &jdir.join("b.journal"),
        &(2..4).map(attack_entry).collect::<Vec<_>>(),
    );
    wait_rows(&d, &out, 3);
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.running());
    assert_eq!(d.stop(), Some(0));
    assert_eq!(usernames(&out), ["u0", "u2", "u3"]);
    let logged = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(!logged.contains("may be missing"), "{logged}");
}

#[test]
fn a_damaged_region_in_a_journal_file_costs_only_its_own_entries() {
    if skip_without_journal_remote() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("system.journal");
    let n = 20_000;
    build_journal(&j, &(0..n).map(attack_entry).collect::<Vec<_>>());
    // 4 KiB of garbage at 40% of the file (a bad sector, a torn write).
    let mut bytes = std::fs::read(&j).unwrap();
    let at = bytes.len() * 2 / 5;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for b in &mut bytes[at..at + 4096] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&j, &bytes).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[sources]\njournal_path = \"{}\"\n{NO_ENRICH}", j.display()),
    )
    .unwrap();
    let o = run(&["scan", "-c", cfg.to_str().unwrap(), "--journal", "-o", "-"]);
    let users: Vec<String> = stdout(&o)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap_or_default().to_string())
        .collect();
    // Entries after the damage are read (libsystemd's own matches would stop at it), and
    // only a few around it are lost.
    assert!(
        users.last().map(String::as_str) == Some(format!("u{}", n - 1).as_str()),
        "last row: {:?} ({} rows)\n{}",
        users.last(),
        users.len(),
        stderr(&o)
    );
    assert!(users.len() > n * 9 / 10, "{} of {n} rows", users.len());
}

#[test]
fn a_reload_from_the_journal_to_the_files_reads_them_from_their_end() {
    let Some((dir, cfg, _jdir, out)) = journal_test(
        "backfill = true\n",
        &(0..2).map(attack_entry).collect::<Vec<_>>(),
    ) else {
        return;
    };
    let mut d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 2);
    // rsyslog installed: mail.log holds the same attacks; the postmaster turns the journal off.
    let log = dir.path().join("mail.log");
    append(&log, &(attack("u0") + &attack("u1")));
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("backfill = true\n", "backfill = true\njournal = false\n");
    std::fs::write(&cfg, text).unwrap();
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("reading only what comes next")),
        "{}",
        d.logged()
    );
    append(&log, &attack("u9"));
    wait_rows(&d, &out, 3);
    assert!(d.running());
    stop_with_rows(d, &out, &["u0", "u1", "u9"]);
}

#[test]
fn scan_of_the_journal_into_the_store_then_the_daemon_records_each_entry_once() {
    let Some((dir, cfg, jdir, out)) = journal_test(
        "backfill = true\n",
        &(0..3).map(attack_entry).collect::<Vec<_>>(),
    ) else {
        return;
    };
    let scan = || {
        let o = run(&[
            "scan",
            "--no-enrich",
            "-c",
            cfg.to_str().unwrap(),
            "--journal",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    scan();
    assert_eq!(usernames(&out), ["u0", "u1", "u2"]);
    // Again, after more entries: only those.
    build_journal(
        &jdir.join("b.journal"),
        &(3..5).map(attack_entry).collect::<Vec<_>>(),
    );
    let o = scan();
    assert!(
        stderr(&o).contains("reading on after the entry recorded last"),
        "{}",
        stderr(&o)
    );
    let want: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
    assert_eq!(usernames(&out), want);
    // The daemon (backfill = true) reads on from there too.
    build_journal(
        &jdir.join("c.journal"),
        &(5..7).map(attack_entry).collect::<Vec<_>>(),
    );
    let d = Daemon::start(&cfg, dir.path());
    wait_rows(&d, &out, 7);
    // status names the journal and the time of the entry recorded last.
    let o = run(&["status", "--json", "-c", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["sources"][0]["kind"], "journal", "{s}");
    let last = s["sources"][0]["last_read"].as_str().unwrap().to_string();
    let at = chrono::DateTime::parse_from_rfc3339(&last).unwrap();
    assert_eq!(
        at.timestamp(),
        ((BASE_USEC + 6_000) / 1_000_000) as i64,
        "{s}"
    );
    let want: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
    stop_with_rows(d, &out, &want);
}
