//! Exactly once under stress: rotations of every kind while a writer appends, and restarts
//! after SIGTERM and `kill -9` at random moments. The CSV must hold each failure line once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flate2::{Compression, write::GzEncoder};

use crate::support::*;

/// A small deterministic PRNG for the test's choices.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Checks that `out` holds exactly the users `0..n` (as `u{i}`), each once.
fn assert_exactly_once(out: &Path, n: usize) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for u in usernames(out) {
        *counts.entry(u).or_default() += 1;
    }
    let dups: Vec<_> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(u, c)| format!("{u} x{c}"))
        .collect();
    let missing: Vec<_> = (0..n)
        .map(|i| format!("u{i}"))
        .filter(|u| !counts.contains_key(u))
        .collect();
    let extra: Vec<_> = counts
        .keys()
        .filter(|u| {
            u.strip_prefix('u')
                .and_then(|n| n.parse::<usize>().ok())
                .is_none_or(|i| i >= n)
        })
        .collect();
    assert!(
        dups.is_empty() && missing.is_empty() && extra.is_empty(),
        "duplicated: {dups:?}\nmissing ({}): {:?}\nunexpected: {extra:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

/// `mail.log-0001` -> `mail.log-0001.gz`.
fn gz_name(p: &Path) -> std::path::PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".gz");
    s.into()
}

fn gzip_file(from: &Path, to: &Path) {
    use std::io::Write;
    let data = std::fs::read(from).unwrap();
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(&data).unwrap();
    let tmp = to.with_extension("partial");
    std::fs::write(&tmp, enc.finish().unwrap()).unwrap();
    std::fs::rename(&tmp, to).unwrap();
    std::fs::remove_file(from).unwrap();
}

#[test]
fn rotations_of_every_kind_while_a_writer_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut next = 0usize;
    let rotations = 120;
    let write_some = |path: &Path, rng: &mut Rng, next: &mut usize| {
        let n = 1 + rng.below(60) as usize;
        let mut text = String::new();
        for _ in 0..n {
            if rng.below(4) == 0 {
                text.push_str(&noise(*next));
            }
            text.push_str(&attack(&format!("u{next}")));
            *next += 1;
        }
        append(path, &text);
    };
    for r in 0..rotations {
        write_some(&log, &mut rng, &mut next);
        if rng.below(3) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(30)));
        }
        let rotated = dir.path().join(format!("mail.log-{r:04}"));
        match r % 4 {
            // logrotate default: rename, create; the writer still writes to the old file for a
            // moment (it has not reopened yet), then to the new one.
            0 => {
                std::fs::rename(&log, &rotated).unwrap();
                write_some(&rotated, &mut rng, &mut next);
                append(&log, "");
            }
            // rename + create + compress at once (no delaycompress).
            1 => {
                std::fs::rename(&log, &rotated).unwrap();
                append(&log, "");
                write_some(&log, &mut rng, &mut next);
                gzip_file(&rotated, &gz_name(&rotated));
            }
            // copytruncate: copy, then truncate in place (nothing written in between).
            2 => {
                std::fs::copy(&log, &rotated).unwrap();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&log)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            // delete and re-create later. Deleting a log loses what no reader has opened yet, so
            // this happens once the daemon has caught up, as it does on a real server.
            _ => {
                let caught_up = next;
                if !wait_until(Duration::from_secs(30), || {
                    usernames(&out).len() >= caught_up
                }) {
                    assert_exactly_once(&out, caught_up);
                }
                std::fs::remove_file(&log).unwrap();
                std::thread::sleep(Duration::from_millis(rng.below(50)));
                append(
                    &log,
                    &format!("Nov 22 08:01:06 mx postfix/master[1]: log re-created {r}\n"),
                );
            }
        }
        // Compress an older plain rotation now and then (delaycompress).
        if r >= 2 && r % 4 == 0 {
            let older = dir.path().join(format!("mail.log-{:04}", r - 2));
            if older.exists() {
                gzip_file(&older, &gz_name(&older));
            }
        }
    }
    write_some(&log, &mut rng, &mut next);
    let n = next;
    assert!(
        wait_until(Duration::from_secs(60), || usernames(&out).len() >= n),
        "{} of {n} rows\n{}",
        usernames(&out).len(),
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    assert_exactly_once(&out, n);
}

#[test]
fn restarts_after_sigterm_and_kill_9_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(
        dir.path(),
        &[&log],
        "[daemon]\ncheckpoint_interval = \"100ms\"",
    );
    let out = dir.path().join("out.csv");
    let total = 20_000usize;
    // The writer appends in bursts and rotates now and then, for the whole test.
    let writer = {
        let log = log.clone();
        let dir = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let mut rng = Rng(42);
            let mut i = 0;
            let mut rotation = 0;
            while i < total {
                let n = (1 + rng.below(40) as usize).min(total - i);
                let mut text = String::new();
                for _ in 0..n {
                    text.push_str(&attack(&format!("u{i}")));
                    if rng.below(3) == 0 {
                        text.push_str(&noise(i));
                    }
                    i += 1;
                }
                append(&log, &text);
                if rng.below(150) == 0 {
                    rotation += 1;
                    std::fs::rename(&log, dir.join(format!("mail.log-{rotation:03}"))).unwrap();
                    append(
                        &log,
                        &format!("Nov 22 08:01:06 mx postfix/master[1]: rotation {rotation}\n"),
                    );
                }
                std::thread::sleep(Duration::from_micros(1500 + rng.below(3000)));
            }
        })
    };
    let mut rng = Rng(7);
    for _ in 0..20 {
        let d = Daemon::start(&cfg, dir.path());
        std::thread::sleep(Duration::from_millis(20 + rng.below(250)));
        d.kill9();
    }
    for _ in 0..3 {
        let d = Daemon::start(&cfg, dir.path());
        std::thread::sleep(Duration::from_millis(50 + rng.below(200)));
        assert_eq!(d.stop(), Some(0), "a clean stop exits 0");
    }
    let d = Daemon::start(&cfg, dir.path());
    writer.join().unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || usernames(&out).len() >= total),
        "{} of {total} rows\n{}",
        usernames(&out).len(),
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.stop(), Some(0));
    assert_exactly_once(&out, total);
}

#[test]
fn a_crash_at_each_step_of_a_commit_is_recovered_exactly_once() {
    // Failures and logins go to two records under one checkpoint: a crash between them (the
    // failures written, the logins not) must leave each row in its record once.
    for point in [
        "after-checkpoint",
        "mid-rows",
        "between-records",
        "after-rows",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mail.log");
        let cfg = daemon_config(dir.path(), &[&log], "");
        let out = dir.path().join("out.csv");
        let logins = dir.path().join("logins.csv");
        append(&log, &(attack("u0") + &login("l0") + &attack("u1")));
        let d = Daemon::start(&cfg, dir.path());
        assert!(
            wait_until(Duration::from_secs(15), || usernames(&out).len() == 2
                && usernames(&logins).len() == 1),
            "{point}: {}",
            d.logged()
        );
        assert_eq!(d.stop(), Some(0));

        // The next commit dies at `point`.
        let mut cmd = bin();
        cmd.env("MAILLOGSENTINEL_TEST_CRASH", point);
        let mut d = Daemon::start_with(cmd, &cfg, dir.path());
        append(
            &log,
            &(attack("u2") + &login("l1") + &attack("u3") + &attack("u4") + &login("l2")),
        );
        let status =
            wait_timeout(&mut d.child, Duration::from_secs(15)).expect("the crash happens");
        assert!(!status.success(), "{point}: {status:?}");
        assert!(
            d.logged().contains("simulated crash"),
            "{point}: {}",
            d.logged()
        );
        let torn = std::fs::read(&out).unwrap();
        if point == "mid-rows" {
            assert!(!torn.ends_with(b"\r\n"), "mid-rows leaves a torn row");
        }

        if point == "between-records" {
            assert_eq!(
                usernames(&out).len(),
                5,
                "{point}: the failures were written"
            );
            assert_eq!(usernames(&logins), ["l0"], "{point}: the logins were not");
        }

        let d = Daemon::start(&cfg, dir.path());
        assert!(
            wait_until(Duration::from_secs(15), || usernames(&out).len() >= 5
                && usernames(&logins).len() >= 3),
            "{point}: {:?} {:?}\n{}",
            usernames(&out),
            usernames(&logins),
            d.logged()
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(d.stop(), Some(0));
        assert_eq!(usernames(&out), ["u0", "u1", "u2", "u3", "u4"], "{point}");
        assert_eq!(usernames(&logins), ["l0", "l1", "l2"], "{point}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            text.matches("timestamp,server").count(),
            1,
            "{point}: one header"
        );
    }
}

#[test]
fn rename_rotations_while_a_writer_keeps_its_file_open_and_writes_concurrently() {
    use std::io::Write;
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    let total = 12_000usize;
    // The writer behaves like rsyslog: it holds its file open, writes without pause, and only
    // reopens the path when told (logrotate's postrotate HUP), so lines keep landing in the
    // renamed file for a while after each rotation.
    let (reopen_tx, reopen_rx) = mpsc::channel::<()>();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap()
            };
            let mut f = open();
            for i in 0..total {
                if reopen_rx.try_recv().is_ok() {
                    f = open();
                }
                f.write_all(attack(&format!("u{i}")).as_bytes()).unwrap();
                if i % 4 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    // The rotator: rename, create, tell the writer (a little later), compress the one before.
    let mut rng = Rng(99);
    let mut rotations = 0;
    while !writer.is_finished() && rotations < 150 {
        std::thread::sleep(Duration::from_millis(5 + rng.below(20)));
        rotations += 1;
        let rotated = dir.path().join(format!("mail.log-{rotations:04}"));
        std::fs::rename(&log, &rotated).unwrap();
        append(
            &log,
            &format!("Nov 22 08:01:06 mx rsyslogd: rotation {rotations}\n"),
        );
        std::thread::sleep(Duration::from_millis(rng.below(10)));
        let _ = reopen_tx.send(());
        if rotations >= 3 {
            let older = dir.path().join(format!("mail.log-{:04}", rotations - 2));
            // Old enough that the writer has long left it (delaycompress).
            gzip_file(&older, &gz_name(&older));
        }
    }
    writer.join().unwrap();
    assert!(
        rotations >= 100,
        "only {rotations} rotations happened while writing"
    );
    assert!(
        wait_until(Duration::from_secs(60), || usernames(&out).len() >= total),
        "{} of {total} rows after {rotations} rotations\n{}",
        usernames(&out).len(),
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    assert_exactly_once(&out, total);
}
