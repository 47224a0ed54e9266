//! `maillogsentinel run` against faults found by attacking it: an idle busy loop, write errors,
//! an output moved away after a crash, logs rewritten shorter, quiet logs renamed.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

fn gzip(path: &Path, text: &str) {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    std::fs::write(path, enc.finish().unwrap()).unwrap();
}

/// Debian's layout in a temp dir: `mail.log` (user "zero"), `mail.log.1` ("one") and
/// `mail.log.2.gz` ("two"), one attack each: (dir, live log).
fn debian_layout() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    gzip(
        &dir.path().join("mail.log.2.gz"),
        &(noise(2) + &attack("two")),
    );
    std::fs::write(dir.path().join("mail.log.1"), noise(1) + &attack("one")).unwrap();
    std::fs::write(&log, noise(0) + &attack("zero")).unwrap();
    (dir, log)
}

/// (inode, mtime in ns) of a file: the checkpoint is replaced by rename, so a save changes both.
fn identity(path: &Path) -> (u64, i64) {
    let m = std::fs::metadata(path).unwrap();
    (m.ino(), m.mtime() * 1_000_000_000 + m.mtime_nsec())
}

/// A daemon following `dir/mail.log` (a noise line and an attack by `first`, with `extra` in
/// `[sources]`), once `first`'s row is in: (dir, log, CSV, daemon).
fn following(extra: &str, first: &str) -> (tempfile::TempDir, PathBuf, PathBuf, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &(noise(0) + &attack(first)));
    let cfg = daemon_config(dir.path(), &[&log], extra);
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out) == [first]),
        "{}",
        d.logged()
    );
    (dir, log, out, d)
}

/// The error a failing write logs (once per failure, not per retry).
const WRITE_ERROR: &str = "cannot write rows or positions";

/// Waits until the daemon logs a write failure containing `cause`, then checks that it keeps
/// running, retrying quietly: the error logged once, no panic.
fn expect_retrying_quietly(d: &mut Daemon, cause: &str) {
    assert!(
        wait_until(WAIT, || d
            .logged()
            .lines()
            .any(|l| l.contains(WRITE_ERROR) && l.contains(cause))),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(d.running(), "the daemon died:\n{}", d.logged());
    assert!(!d.logged().contains("panicked"), "{}", d.logged());
    assert_eq!(
        d.logged().matches(WRITE_ERROR).count(),
        1,
        "one error per failure, not one per retry:\n{}",
        d.logged()
    );
}

#[test]
fn an_idle_daemon_beside_rotated_siblings_rewrites_nothing() {
    // Debian's layout: the live log, yesterday's plain, older ones gzipped. The daemon's own
    // reads of the siblings used to wake it (inotify IN_OPEN), each wake re-read them: an idle
    // daemon spun for ever and saved its checkpoint at every interval.
    let (dir, log) = debian_layout();
    let cfg = daemon_config(
        dir.path(),
        &[&log],
        "[daemon]\ncheckpoint_interval = \"200ms\"\n",
    );
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 3),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    // mail.log.1 is finished once quiet for rotate_wait; then there is nothing left to do.
    assert!(
        wait_until(WAIT, || d
            .logged()
            .contains("finished reading rotated file")),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_secs(1));
    let checkpoint = dir.path().join("state/checkpoint.json");
    let before = identity(&checkpoint);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        identity(&checkpoint),
        before,
        "an idle daemon saved its checkpoint again\n{}",
        d.logged()
    );
    // Still awake to real changes.
    append(&log, &attack("later"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 4),
        "{}",
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_state_directory_deleted_under_the_daemon_is_retried_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    // The CSV outside the state directory, so that only the checkpoint fails.
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let state = dir.path().join("state");
    let mut d = Daemon::start(&cfg, dir.path());
    append(&log, &attack("before"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["before"]),
        "{}",
        d.logged()
    );
    std::fs::remove_dir_all(&state).unwrap();
    append(&log, &attack("during"));
    expect_retrying_quietly(&mut d, "No such file or directory");
    assert_eq!(usernames(&out), ["before"]);
    std::fs::create_dir(&state).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || usernames(&out)
            == ["before", "during"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert!(
        wait_until(WAIT, || d.logged().contains("works again")),
        "{}",
        d.logged()
    );

    // A stop request while writing fails is answered at once, not after the retries.
    std::fs::remove_dir_all(&state).unwrap();
    append(&log, &attack("at-stop"));
    assert!(
        wait_until(WAIT, || d.logged().matches(WRITE_ERROR).count() == 2),
        "{}",
        d.logged()
    );
    d.signal("TERM");
    let status = wait_timeout(&mut d.child, Duration::from_secs(5));
    assert!(
        status.is_some(),
        "SIGTERM ignored while writing fails\n{}",
        d.logged()
    );
    assert!(!d.logged().contains("panicked"), "{}", d.logged());
    // The cause is said once, not once per layer of error.
    let last = d.logged().lines().last().unwrap_or_default().to_string();
    assert_eq!(last.matches("os error 2").count(), 1, "{last}");
}

#[test]
fn a_batch_lost_in_a_crash_is_read_again_when_the_output_was_moved_or_grew() {
    for case in ["moved away", "appended to by another writer"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mail.log");
        let cfg = daemon_config(dir.path(), &[&log], "");
        let out = dir.path().join("out.csv");
        append(&log, &(attack("u0") + &attack("u1")));
        let d = Daemon::start(&cfg, dir.path());
        assert!(
            wait_until(WAIT, || usernames(&out).len() == 2),
            "{case}: {}",
            d.logged()
        );
        assert_eq!(d.stop(), Some(0));
        // The next commit saves its checkpoint, then dies before its rows are written.
        let mut cmd = bin();
        cmd.env("MAILLOGSENTINEL_TEST_CRASH", "after-checkpoint");
        let mut d = Daemon::start_with(cmd, &cfg, dir.path());
        append(&log, &(attack("u2") + &attack("u3")));
        assert!(
            wait_timeout(&mut d.child, WAIT).is_some(),
            "{case}: {}",
            d.logged()
        );
        let mut want = vec!["u2", "u3"];
        if case == "moved away" {
            // As docs/guide.md advises for archiving.
            std::fs::rename(&out, dir.path().join("out.csv.1")).unwrap();
        } else {
            // Longer than recorded: the checkpoint's "after" length says nothing about this file.
            // (A row longer than the lost batch, so the file is past its "after" length.)
            let reason = "r".repeat(400);
            append(
                &out,
                &format!("2026-11-22T08:00:00+01:00,mx,other,192.0.2.1,x,LOGIN,{reason},,,,,,\r\n"),
            );
            want.insert(0, "x");
            want.splice(0..0, ["u0", "u1"]);
        }
        let d = Daemon::start(&cfg, dir.path());
        assert!(
            wait_until(WAIT, || usernames(&out) == want),
            "{case}: {:?}\n{}",
            usernames(&out),
            d.logged()
        );
        assert_eq!(d.stop(), Some(0));
    }
}

#[test]
fn a_log_rewritten_shorter_with_its_first_line_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let first = noise(0);
    let long = first.clone() + &attack("a") + &noise(1) + &attack("b") + &noise(2);
    std::fs::write(&log, &long).unwrap();
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out) == ["a", "b"]),
        "{}",
        d.logged()
    );
    // In place, as a restore from backup or `sed -i` (without its rename) would: shorter, and
    // the same first line, so the same fingerprint.
    std::fs::write(&log, first.clone() + &attack("c")).unwrap();
    assert!(
        wait_until(WAIT, || usernames(&out) == ["a", "b", "c"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    append(&log, &attack("c2"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 4),
        "{}",
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    // The same while the daemon is down: the saved position is past the file's end.
    std::fs::write(&log, first + &attack("d")).unwrap();
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out) == ["a", "b", "c", "c2", "d"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_quiet_log_renamed_is_kept_open_for_its_writers_last_lines() {
    let (dir, log, out, d) = following("notify = false\n", "old");
    // Quiet for longer than rotate_wait (2 s), as a log is between two attacks.
    std::thread::sleep(Duration::from_millis(2500));
    let rotated = dir.path().join("mail.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    assert!(
        wait_until(WAIT, || d.logged().contains("log file gone")),
        "{}",
        d.logged()
    );
    // The writer has not reopened yet: its next line lands in the renamed file.
    append(&rotated, &attack("through-old-handle"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["old", "through-old-handle"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
}

/// libfaketime, to move the daemon's wall clock while it runs (Debian's `faketime` package).
fn libfaketime() -> Option<std::path::PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime",
        "/usr/lib/aarch64-linux-gnu/faketime",
    ]
    .iter()
    .map(|d| Path::new(d).join("libfaketimeMT.so.1"))
    .find(|p| p.exists())
}

#[test]
fn a_wall_clock_jump_forgets_nothing_that_was_read() {
    let Some(lib) = libfaketime() else {
        eprintln!(
            "SKIPPED a_wall_clock_jump_forgets_nothing_that_was_read: libfaketime is not installed (apt-get install faketime)"
        );
        return;
    };
    let (dir, log) = debian_layout();
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    // The wall clock comes from a file the test rewrites; the monotonic clock stays true.
    let clock = dir.path().join("faketime");
    std::fs::write(&clock, "+0d\n").unwrap();
    let mut cmd = bin();
    cmd.env("LD_PRELOAD", &lib)
        .env("FAKETIME_TIMESTAMP_FILE", &clock)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let d = Daemon::start_with(cmd, &cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 3),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    // A VM resumed a month later, or NTP fixing a clock without a battery.
    std::fs::write(&clock, "+30d\n").unwrap();
    append(&log, &attack("after-jump"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 4),
        "{}",
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    let d = Daemon::start(&cfg, dir.path());
    append(&log, &attack("after-restart"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() >= 5),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    let mut users = usernames(&out);
    users.sort();
    assert_eq!(
        users,
        ["after-jump", "after-restart", "one", "two", "zero"],
        "rotated history recorded again after the clock jumped"
    );
}

#[test]
fn a_reload_behind_a_backlog_never_blocks_stop_requests() {
    let dir = tempfile::tempdir().unwrap();
    // A DNS server that never answers, asked one address at a time: a backlog of minutes.
    let dead_dns = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = dir.path().join("config.toml");
    let write_cfg = |rotate_wait: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[sources]\nfiles = [\"{d}/mail.log\"]\nstate_dir = \"{d}/state\"\njournal = false\npoll_interval = \"200ms\"\nrotate_wait = \"{rotate_wait}\"\n\n[output]\ncsv = \"{d}/out.csv\"\n\n[enrich]\ndns_servers = [\"{}\"]\ndns_timeout = \"5s\"\nconcurrency = 1\ncountry_db = \"\"\nasn_db = \"\"\n",
                dead_dns.local_addr().unwrap(),
                d = dir.path().display()
            ),
        )
        .unwrap();
    };
    write_cfg("2s");
    let log = dir.path().join("mail.log");
    let lines: String = (0..3000)
        .map(|i| {
            format!(
                "Nov 22 08:01:04 mx postfix/smtpd[77]: warning: unknown[10.{}.{}.{}]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=u{i}\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect();
    append(&log, &lines);
    let mut d = Daemon::start(&cfg, dir.path());
    std::thread::sleep(Duration::from_secs(1));
    // A change that restarts the readers: the reload must wait for their batches to commit.
    write_cfg("3s");
    d.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    d.signal("TERM");
    assert!(
        wait_until(Duration::from_secs(5), || d
            .logged()
            .contains("stopping: draining the pipeline")),
        "SIGTERM not answered while a reload waits for the pipeline\n{}",
        d.logged()
    );
    // The drain itself waits for the backlog; a second request stops at once.
    d.signal("TERM");
    assert!(
        wait_timeout(&mut d.child, Duration::from_secs(5)).is_some(),
        "a second SIGTERM did not stop the daemon\n{}",
        d.logged()
    );
}

#[test]
fn a_new_state_directory_does_not_back_fill_into_a_record_that_holds_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    std::fs::write(dir.path().join("mail.log.1"), noise(1) + &attack("old")).unwrap();
    std::fs::write(&log, noise(0) + &attack("recent")).unwrap();
    let out = dir.path().join("out.csv");
    let cfg = daemon_config(dir.path(), &[&log], "");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 2),
        "{}",
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    // The state directory is lost (or `state_dir` changed): no checkpoint, a full record.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || d.logged().contains("reading only what comes next")),
        "{}",
        d.logged()
    );
    // A restart before any new line: the skipped history stays skipped.
    assert_eq!(d.stop(), Some(0));
    let d = Daemon::start(&cfg, dir.path());
    std::thread::sleep(Duration::from_millis(500));
    append(&log, &attack("new"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() >= 3),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    assert_eq!(usernames(&out), ["old", "recent", "new"]);
    assert!(
        std::fs::read_to_string(dir.path().join("daemon.log"))
            .unwrap()
            .contains("the logs' history is not read again"),
        "the choice is said"
    );
    // Asked for explicitly, the history is read again.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let cfg = daemon_config(dir.path(), &[&log], "backfill = true\n");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 6),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn backend_failures_from_history_are_not_warned_as_happening_now() {
    let line = |when: &str| {
        format!(
            "{when} mx postfix/smtpd[77]: warning: unknown[192.0.2.44]: SASL LOGIN authentication failed: Connection lost to authentication server\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &(noise(0) + &line("2025-11-22T08:04:00Z")));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let d = Daemon::start(&cfg, dir.path());
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    append(&log, &line(&now));
    assert!(
        wait_until(WAIT, || d.logged().matches("authentication server").count()
            == 2),
        "{}",
        d.logged()
    );
    let logged = d.logged();
    let past = logged.lines().find(|l| l.contains("2025-11-22")).unwrap();
    assert!(
        past.contains("INFO") && past.contains("not happening now"),
        "{past}"
    );
    let current = logged
        .lines()
        .filter(|l| l.contains("authentication server"))
        .find(|l| !l.contains("2025-11-22"))
        .unwrap();
    assert!(
        current.contains("WARN") && !current.contains("not happening now"),
        "{current}"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_hole_left_by_a_writer_without_o_append_after_copytruncate_loses_no_line() {
    use std::os::unix::fs::FileExt;
    let (dir, log, out, d) = following("", "before");
    // copytruncate; the writer (no O_APPEND) goes on at its old offset: a hole of NULs, then
    // its next line.
    let old_len = std::fs::metadata(&log).unwrap().len();
    std::fs::copy(&log, dir.path().join("mail.log.1")).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(0).unwrap();
    f.write_all_at(attack("after-hole").as_bytes(), old_len)
        .unwrap();
    assert!(
        wait_until(WAIT, || usernames(&out) == ["before", "after-hole"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_rotated_logs_last_line_without_a_newline_is_recorded() {
    let (dir, log, out, d) = following("", "first");
    let rotated = dir.path().join("mail.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // The writer was cut off before its newline; then it moved on to a new file.
    append(&rotated, attack("cut-off").trim_end_matches('\n'));
    append(&log, &(noise(1) + &attack("new")));
    assert!(
        wait_until(WAIT, || {
            let mut u = usernames(&out);
            u.sort();
            u == ["cut-off", "first", "new"]
        }),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
}

/// A small tmpfs mounted for a test, unmounted when dropped (even when the test fails).
struct SmallFs(PathBuf);

impl SmallFs {
    /// Mounts `size` of tmpfs at `dir` (root only); `None` when that cannot be done here.
    fn mount(dir: &Path, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallFs(dir.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_is_waited_out_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let Some(_fs) = SmallFs::mount(&disk, "256k") else {
        eprintln!(
            "SKIPPED a_full_disk_is_waited_out_and_nothing_is_lost: cannot mount a tmpfs here (needs root)"
        );
        return;
    };
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{}\"]\nstate_dir = \"{d}/state\"\njournal = false\npoll_interval = \"200ms\"\n[output]\ncsv = \"{d}/out.csv\"\n{NO_ENRICH}",
            log.display(),
            d = disk.display()
        ),
    )
    .unwrap();
    let out = disk.join("out.csv");
    let mut d = Daemon::start(&cfg, dir.path());
    append(&log, &attack("before"));
    assert!(
        wait_until(WAIT, || usernames(&out) == ["before"]),
        "{}",
        d.logged()
    );
    // Fill the disk to its last byte.
    let filler = disk.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![b'x'; 4096];
        while f.write_all(&block).is_ok() {}
        let mut byte = [b'x'];
        while f.write_all(&byte[..]).is_ok() {
            byte[0] = b'y';
        }
    }
    let lines: String = (0..50).map(|i| attack(&format!("full{i}"))).collect();
    append(&log, &lines);
    expect_retrying_quietly(&mut d, "No space left on device");
    // Space comes back: the daemon resumes by itself, every row once.
    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_until(Duration::from_secs(40), || usernames(&out).len() == 51),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    let mut want = vec!["before".to_string()];
    want.extend((0..50).map(|i| format!("full{i}")));
    assert_eq!(usernames(&out), want);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_csv_replaced_by_a_directory_is_retried_then_a_new_one_started() {
    let (dir, log, out, mut d) = following("", "before");
    std::fs::remove_file(&out).unwrap();
    std::fs::create_dir(&out).unwrap();
    append(&log, &attack("during"));
    expect_retrying_quietly(&mut d, "");
    std::fs::remove_dir(&out).unwrap();
    assert!(
        wait_until(Duration::from_secs(40), || usernames(&out) == ["during"]),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    drop(dir);
}

#[test]
fn a_record_root_left_behind_is_named_once_with_who_needs_it_and_the_fix() {
    // `scan` run as root before the service existed leaves a root-owned record; the service
    // user's daemon must say what to do, not "Permission denied: Permission denied".
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (it runs the daemon as nobody on a record root owns)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    for sub in ["state", "out"] {
        let d = dir.path().join(sub);
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(nobody.uid.as_raw()), None).unwrap();
    }
    let record = dir.path().join("out/intrusions.csv");
    std::fs::write(&record, HEADER).unwrap();
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o644)).unwrap();
    append(&dir.path().join("mail.log"), &attack("alice"));
    std::fs::set_permissions(
        dir.path().join("mail.log"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let cfg = config_in(dir.path());
    append(&cfg, NO_ENRICH);
    let mut c = isolated(Command::new("timeout"));
    c.args([
        "20",
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
    ])
    .arg(env!("CARGO_BIN_EXE_maillogsentinel"))
    .args(["run", "-c", cfg.to_str().unwrap()]);
    let o = c.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("Permission denied").count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}: cannot open for appending: Permission denied",
            record.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "(the file {} belongs to root, and this runs as nobody: `sudo chown nobody: {}`)",
            record.display(),
            record.display()
        )),
        "{err}"
    );
}
