//! The daemon under systemd: `Type=notify` readiness, reload, stop and watchdog messages on a
//! real unix datagram socket, and logs when stderr is the journal: native entries on a socket
//! read like journald reads it, the stream format where no journal socket answers, and real
//! journald where the machine runs one.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
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

/// A log file name an attacker cannot choose, but which shows what control characters in any
/// logged text would do: clear the screen, go back to the line's start, start a forged entry.
const HOSTILE_NAME: &str = "mail\x1b[2J\r\n<0>forged.log";

/// A failure of the mail server's SASL backend: the reason (logged in a warning's message)
/// carries a terminal title sequence and a screen clear.
const BACKEND_FAILURE: &str = "Nov 22 08:01:04 mx postfix/smtpd[77]: warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: generic failure \x1b]0;owned\x07\x1b[2J, sasl_username=x\n";

/// The reason of [`BACKEND_FAILURE`] as it must be logged.
const BACKEND_REASON_ESCAPED: &str = "generic failure \\x1b]0;owned\\x07\\x1b[2J";

/// A configuration whose error message spans several lines (TOML shows the offending line).
const BAD_CONFIG: &str = "[sources]\nfiles = [\"/var/log/mail.log\"]\n\nmax_line_bytes = 12\n";

/// The binary as systemd starts it with `StandardError=journal`: stderr is a stream (here the
/// file `dir/name`) that `JOURNAL_STREAM` names, and no `NO_COLOR`. Native journal entries go
/// to `socket` (a path where nothing listens makes the binary fall back to the stream).
fn under_journald(dir: &Path, name: &str, socket: &Path) -> (std::process::Command, PathBuf) {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let mut cmd = bin();
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("MAILLOGSENTINEL_TEST_JOURNAL_SOCKET", socket)
        .env_remove("NO_COLOR")
        .stderr(file);
    (cmd, path)
}

/// Checks stream-format output: every line is one entry `<PRIORITY>...`, and no control
/// character other than the line ends is written.
fn assert_journal_lines(text: &str) {
    assert!(!text.is_empty());
    for line in text.lines() {
        let b = line.as_bytes();
        assert!(
            b.len() > 3 && b[0] == b'<' && b[1].is_ascii_digit() && b[2] == b'>',
            "not a journal line: {line:?} in {text:?}"
        );
    }
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "control characters (escape codes) written: {text:?}"
    );
}

#[test]
fn journal_stream_is_one_line_per_event_with_its_priority_and_no_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    let no_journal = dir.path().join("no-journal.sock");
    let log = dir.path().join(HOSTILE_NAME);
    std::fs::write(&log, BACKEND_FAILURE).unwrap();

    let (cmd, err) = under_journald(dir.path(), "scan.err", &no_journal);
    let o = run_in(
        cmd,
        &["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()],
    );
    assert!(o.status.success());
    let text = std::fs::read_to_string(&err).unwrap();
    assert_journal_lines(&text);
    let warn = text.lines().find(|l| l.contains("backend")).unwrap();
    assert!(
        warn.starts_with(&format!(
            "<4>the mail server's SASL backend failed ({BACKEND_REASON_ESCAPED})"
        )),
        "{warn}"
    );
    assert!(
        warn.contains("/mail\\x1b[2J\\r\\n<0>forged.log line=1") && warn.contains("from 192.0.2.7"),
        "{warn}"
    );
    assert!(text.contains("\n<6>scanned: "), "{text}");

    // A configuration error of several lines is one entry at priority 3 ("err").
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, BAD_CONFIG).unwrap();
    let (cmd, err) = under_journald(dir.path(), "check.err", &no_journal);
    let o = run_in(cmd, &["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let text = std::fs::read_to_string(&err).unwrap();
    assert_journal_lines(&text);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("<3>invalid config file")
            && text.contains("\\n")
            && text.contains("line 4"),
        "{text}"
    );
}

#[test]
fn logs_carry_journal_priorities_when_stderr_is_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("missing.log");
    let cfg = daemon_config(dir.path(), &[&log], "");
    let (cmd, _) = under_journald(
        dir.path(),
        "daemon.log",
        &dir.path().join("no-journal.sock"),
    );
    let d = Daemon::start_with(cmd, &cfg, dir.path());
    // The reader's warning and the start-up line come from two threads, in either order.
    assert!(
        wait_until(Duration::from_secs(15), || {
            let text = d.logged();
            text.contains("does not exist") && text.contains("running")
        }),
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
    // A reload error of several lines stays one entry with its priority.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\nbogus = 1\n")).unwrap();
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("reload failed")),
        "{}",
        d.logged()
    );
    let text = d.logged();
    assert_journal_lines(&text);
    let failed = text.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(
        failed.starts_with("<3>") && failed.contains("\\n") && failed.contains("bogus"),
        "{failed}"
    );
    assert_eq!(d.stop(), Some(0));

    // Not the journal (the stream names another file): plain lines with a level and a time.
    std::fs::write(&cfg, good).unwrap();
    let mut cmd = bin();
    cmd.env("JOURNAL_STREAM", "1:1");
    std::fs::write(dir.path().join("daemon.log"), "").unwrap();
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

/// One native journal entry: its fields by name.
type Entry = std::collections::BTreeMap<String, String>;

/// Parses a native-protocol datagram: `NAME=value` lines, or `NAME`, a 64-bit little-endian
/// length and that many bytes.
fn parse_entry(mut data: &[u8]) -> Entry {
    let mut entry = Entry::new();
    while !data.is_empty() {
        let nl = data.iter().position(|&b| b == b'\n').expect("field ends");
        let head = &data[..nl];
        data = &data[nl + 1..];
        let (name, value) = match head.iter().position(|&b| b == b'=') {
            Some(eq) => (&head[..eq], &head[eq + 1..]),
            None => {
                let len = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
                let value = &data[8..8 + len];
                assert_eq!(data[8 + len], b'\n', "binary field ends with a newline");
                data = &data[8 + len + 1..];
                (head, value)
            }
        };
        let name = String::from_utf8(name.to_vec()).unwrap();
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "{name:?} is no journal field name"
        );
        entry.insert(name, String::from_utf8(value.to_vec()).unwrap());
    }
    entry
}

/// What journald would receive: a datagram socket read by a thread.
struct JournalSocket {
    path: PathBuf,
    entries: std::sync::Arc<std::sync::Mutex<Vec<Entry>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl JournalSocket {
    fn bind(dir: &Path) -> JournalSocket {
        use std::sync::atomic::Ordering;
        let path = dir.join("journal.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let j = JournalSocket {
            path,
            entries: Default::default(),
            stop: Default::default(),
        };
        let (entries, stop) = (j.entries.clone(), j.stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while !stop.load(Ordering::Relaxed) {
                // Empty datagrams are the binary checking that journald listens.
                if let Ok(n @ 1..) = sock.recv(&mut buf) {
                    entries.lock().unwrap().push(parse_entry(&buf[..n]));
                }
            }
        });
        j
    }

    fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }

    /// The first entry whose message contains `text`, waiting up to 15 s for it.
    fn wait_for(&self, text: &str) -> Entry {
        let found = || {
            self.entries()
                .into_iter()
                .find(|e| e.get("MESSAGE").is_some_and(|m| m.contains(text)))
        };
        assert!(
            wait_until(Duration::from_secs(15), || found().is_some()),
            "no entry with {text:?}: {:?}",
            self.entries()
        );
        found().unwrap()
    }
}

impl Drop for JournalSocket {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn native_journal_entries_carry_priority_message_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let journal = JournalSocket::bind(dir.path());
    let log = dir.path().join(HOSTILE_NAME);
    std::fs::write(&log, BACKEND_FAILURE).unwrap();
    let (cmd, err) = under_journald(dir.path(), "scan.err", &journal.path);
    let o = run_in(
        cmd,
        &["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()],
    );
    assert!(o.status.success());
    let warn = journal.wait_for("backend failed");
    assert_eq!(warn["PRIORITY"], "4");
    assert_eq!(warn["SYSLOG_IDENTIFIER"], "maillogsentinel");
    assert!(
        warn["MESSAGE"].starts_with(&format!(
            "the mail server's SASL backend failed ({BACKEND_REASON_ESCAPED})"
        )),
        "{warn:?}"
    );
    assert!(
        warn["F_PATH"].ends_with("/mail\\x1b[2J\\r\\n<0>forged.log"),
        "{warn:?}"
    );
    assert!(warn["MESSAGE"].contains("from 192.0.2.7"), "{warn:?}");
    assert!(warn.contains_key("CODE_FILE") && warn.contains_key("CODE_LINE"));
    assert_eq!(journal.wait_for("scanned: ")["PRIORITY"], "6");
    for e in journal.entries() {
        assert!(
            !e.values()
                .any(|v| v.chars().any(|c| c.is_control() && c != '\n')),
            "control characters in {e:?}"
        );
    }

    // A configuration error of several lines: one entry, its lines kept, priority 3.
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, BAD_CONFIG).unwrap();
    let (cmd, check_err) = under_journald(dir.path(), "check.err", &journal.path);
    let o = run_in(cmd, &["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let invalid = journal.wait_for("invalid config file");
    assert_eq!(invalid["PRIORITY"], "3");
    assert!(
        invalid["MESSAGE"].contains('\n') && invalid["MESSAGE"].contains("line 4"),
        "{invalid:?}"
    );

    // The daemon: a reload error of several lines, one entry.
    let missing = dir.path().join("missing.log");
    let cfg = daemon_config(dir.path(), &[&missing], "");
    let (cmd, daemon_err) = under_journald(dir.path(), "daemon.log", &journal.path);
    let d = Daemon::start_with(cmd, &cfg, dir.path());
    assert_eq!(journal.wait_for(" running files=")["PRIORITY"], "6");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\nbogus = 1\n")).unwrap();
    d.signal("HUP");
    let failed = journal.wait_for("reload failed");
    assert_eq!(failed["PRIORITY"], "3");
    assert!(failed["MESSAGE"].contains("\n") && failed["MESSAGE"].contains("bogus"));
    assert_eq!(d.stop(), Some(0));

    // Everything went to the journal, nothing to the stream.
    for f in [err, check_err, daemon_err] {
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "", "{}", f.display());
    }
}

#[test]
fn the_real_journal_gets_one_entry_per_event() {
    let socket = Path::new("/run/systemd/journal/socket");
    if !socket.exists() {
        eprintln!(
            "skipped: no journald on this machine ({} is absent)",
            socket.display()
        );
        return;
    }
    let journalctl = |args: &[&str]| {
        std::process::Command::new("journalctl")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    if journalctl(&["--version"]).is_none() {
        eprintln!("skipped: journald runs but journalctl is not there to read it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join(HOSTILE_NAME);
    std::fs::write(&log, BACKEND_FAILURE).unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, BAD_CONFIG).unwrap();
    let (mut cmd, scan_err) = under_journald(dir.path(), "scan.err", socket);
    cmd.env_remove("MAILLOGSENTINEL_TEST_JOURNAL_SOCKET");
    let o = run_in(
        cmd,
        &["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()],
    );
    assert!(o.status.success());
    let (mut cmd, check_err) = under_journald(dir.path(), "check.err", socket);
    cmd.env_remove("MAILLOGSENTINEL_TEST_JOURNAL_SOCKET");
    let o = run_in(cmd, &["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    for f in [scan_err, check_err] {
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "", "{}", f.display());
    }

    // Our entries are those naming this test's directory (unique); MESSAGE must be text in
    // JSON (journalctl turns fields with escape codes or other binary into byte arrays).
    let token = dir.path().to_str().unwrap().to_string();
    let ours = || -> Vec<serde_json::Value> {
        let _ = journalctl(&["--sync"]);
        let Some(o) = journalctl(&[
            "-o",
            "json",
            "--no-pager",
            "-n",
            "1000",
            "SYSLOG_IDENTIFIER=maillogsentinel",
        ]) else {
            return Vec::new();
        };
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e.to_string().contains(&token))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(15), || ours().len() >= 2),
        "entries: {:?}",
        ours()
    );
    let entries = ours();
    let message = |e: &serde_json::Value| e["MESSAGE"].as_str().map(str::to_string);
    assert!(
        entries.iter().all(|e| message(e).is_some()),
        "MESSAGE not text: {entries:?}"
    );
    let invalid = entries
        .iter()
        .find(|e| message(e).unwrap().contains("invalid config file"))
        .expect("the configuration error");
    assert_eq!(invalid["PRIORITY"], "3");
    assert!(message(invalid).unwrap().contains('\n'), "{invalid}");
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
