//! The daemon under systemd: `Type=notify` readiness, reload, stop and watchdog messages on a
//! real unix datagram socket, and journal-shaped logs when stderr is the journal.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::support::*;

/// Collects notify datagrams until `want` has been seen (in order) or 15 s pass.
fn expect_in_order(sock: &UnixDatagram, seen: &mut Vec<String>, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    let mut i = 0;
    // Earlier messages already collected count too.
    for m in seen.iter() {
        if i < want.len() && m.lines().any(|l| l == want[i]) {
            i += 1;
        }
    }
    while i < want.len() {
        assert!(Instant::now() < deadline, "wanted {want:?}, got {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l == want[i]) {
                i += 1;
            }
            seen.push(msg);
        }
    }
}

/// A notify socket in `dir` (what systemd listens on) and the binary told to use it, with a
/// 400 ms watchdog.
fn notified(dir: &std::path::Path) -> (UnixDatagram, std::process::Command) {
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut cmd = bin();
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID");
    (sock, cmd)
}

#[test]
fn readiness_reload_stop_and_watchdog_are_notified() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &attack("x"));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let (sock, cmd) = notified(dir.path());
    let d = Daemon::start_with(cmd, &cfg, dir.path());
    let mut seen = Vec::new();
    expect_in_order(&sock, &mut seen, &["READY=1", "WATCHDOG=1"]);
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=following 1 file(s)"), "{ready}");
    d.signal("HUP");
    expect_in_order(
        &sock,
        &mut seen,
        &["READY=1", "WATCHDOG=1", "RELOADING=1", "READY=1"],
    );
    let reloading = seen.iter().find(|m| m.contains("RELOADING=1")).unwrap();
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    // Watchdog pings keep coming while the daemon is healthy.
    let pings_before = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    std::thread::sleep(Duration::from_millis(900));
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let pings_after = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        pings_after >= pings_before + 2,
        "{pings_before} -> {pings_after}"
    );
    d.signal("TERM");
    expect_in_order(&sock, &mut seen, &["STOPPING=1"]);
    let mut d = d;
    assert_eq!(
        wait_timeout(&mut d.child, Duration::from_secs(15)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn logs_carry_journal_priorities_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("missing.log");
    let cfg = daemon_config(dir.path(), &[&log], "");
    let stderr_file = dir.path().join("daemon.log");
    std::fs::write(&stderr_file, "").unwrap();
    let meta = std::fs::metadata(&stderr_file).unwrap();
    let mut cmd = bin();
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    let d = Daemon::start_with(cmd, &cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("does not exist")),
        "{}",
        d.logged()
    );
    let text = d.logged();
    let warn = text.lines().find(|l| l.contains("does not exist")).unwrap();
    assert!(warn.starts_with("<4>log file does not exist"), "{warn}");
    let info = text.lines().find(|l| l.contains("running")).unwrap();
    assert!(info.starts_with("<6>maillogsentinel"), "{info}");
    assert!(
        !text.contains("INFO") && !text.contains("WARN"),
        "no level words, no timestamps: {text}"
    );
    assert_eq!(d.stop(), Some(0));

    // Not the journal (the stream names another file): plain lines with a level and a time.
    let mut cmd = bin();
    cmd.env("JOURNAL_STREAM", "1:1");
    std::fs::write(&stderr_file, "").unwrap();
    let d = Daemon::start_with(cmd, &cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("does not exist")),
        "{}",
        d.logged()
    );
    let warn = d
        .logged()
        .lines()
        .find(|l| l.contains("does not exist"))
        .unwrap()
        .to_string();
    assert!(warn.contains(" WARN ") && warn.starts_with("20"), "{warn}");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_stuck_sink_stops_the_watchdog_pings() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let cfg = daemon_config(dir.path(), &[&log], "");
    let (sock, mut cmd) = notified(dir.path());
    cmd.env("MAILLOGSENTINEL_TEST_CRASH", "hang-after-rows");
    let d = Daemon::start_with(cmd, &cfg, dir.path());
    let mut seen = Vec::new();
    expect_in_order(&sock, &mut seen, &["READY=1", "WATCHDOG=1"]);
    // The next commit hangs the sink thread.
    append(&log, &attack("x"));
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("simulated hang")),
        "{}",
        d.logged()
    );
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("stopped responding")),
        "{}",
        d.logged()
    );
    // From then on: no more pings, so systemd would restart the service.
    let mut buf = [0u8; 4096];
    while sock.recv(&mut buf).is_ok() {}
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pings = 0;
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            pings += String::from_utf8_lossy(&buf[..n])
                .matches("WATCHDOG=1")
                .count();
        }
    }
    assert_eq!(
        pings, 0,
        "the watchdog is still pinged while the sink is stuck"
    );
    drop(d);
}
