//! A real systemd-journald for tests and benchmarks, on a private runtime: it never touches the
//! host's journal. Self-contained (benches/journal.rs includes this file too).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// A real systemd-journald on a private runtime: started by the test in a mount namespace of
/// its own (tmpfs on /run/systemd and /run/log, the test's directories bound on its socket
/// directory and on /run/log/journal, a test journald.conf), so it never touches the host's
/// journal. Needs root (for the namespace); `None`, with the reason printed, where it cannot run.
pub struct Journald {
    child: std::process::Child,
    /// Its syslog socket (`/dev/log` inside).
    pub dev_log: PathBuf,
    /// The journal directory it writes (its /run/log/journal).
    pub journal: PathBuf,
}

impl Journald {
    pub fn start(dir: &Path) -> Option<Journald> {
        let journald = Path::new("/lib/systemd/systemd-journald");
        let uid = Command::new("id").arg("-u").output().unwrap();
        let why = if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            Some("it needs root to start journald in a mount namespace of its own")
        } else if !journald.exists() {
            Some("/lib/systemd/systemd-journald is not installed")
        } else if !Path::new("/etc/machine-id").exists() {
            Some("journald needs /etc/machine-id")
        } else if !Path::new("/etc/systemd/journald.conf").exists() {
            Some("/etc/systemd/journald.conf is missing (the test's own is mounted over it)")
        } else {
            None
        };
        if let Some(why) = why {
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let (rt, journal) = (dir.join("journald-run"), dir.join("journal"));
        std::fs::create_dir_all(&rt).unwrap();
        std::fs::create_dir_all(&journal).unwrap();
        let conf = dir.join("journald.conf");
        std::fs::write(
            &conf,
            "[Journal]\nStorage=volatile\nReadKMsg=no\nAudit=no\nRateLimitBurst=0\nForwardToSyslog=no\nForwardToWall=no\nForwardToConsole=no\nForwardToKMsg=no\n",
        )
        .unwrap();
        let script = format!(
            "set -e\nmount --make-rprivate /\nmkdir -p /run/systemd /run/log\nmount -t tmpfs tmpfs /run/systemd\nmount -t tmpfs tmpfs /run/log\nmkdir -p /run/systemd/journal /run/log/journal\nmount --bind '{rt}' /run/systemd/journal\nmount --bind '{journal}' /run/log/journal\nmount --bind '{conf}' /etc/systemd/journald.conf\nexec {journald}\n",
            rt = rt.display(),
            journal = journal.display(),
            conf = conf.display(),
            journald = journald.display()
        );
        // journald keeps the machine's real clock even when the tests run under libfaketime
        // (its event loop does not work with a faked clock; the daemon under test is what
        // must not depend on the date).
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .env_remove("LD_PRELOAD")
            .env_remove("FAKETIME")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("journald.log")).unwrap())
            .spawn()
            .unwrap();
        let j = Journald {
            child,
            dev_log: rt.join("dev-log"),
            journal,
        };
        assert!(
            wait_until(Duration::from_secs(10), || j.dev_log.exists()),
            "journald did not start: {}",
            std::fs::read_to_string(dir.join("journald.log")).unwrap_or_default()
        );
        Some(j)
    }

    /// Logs `message` as `tag` with facility mail, through its syslog socket (as Postfix does
    /// through /dev/log).
    pub fn log(&self, tag: &str, message: &str) {
        let ok = Command::new("logger")
            .env_remove("LD_PRELOAD")
            .env_remove("FAKETIME")
            .arg("--socket")
            .arg(&self.dev_log)
            .args(["-p", "mail.warning", "-t", tag, "--", message])
            .status()
            .unwrap()
            .success();
        assert!(ok, "logger");
    }

    /// Rotates its files (what `journalctl --rotate` asks of it).
    pub fn rotate(&self) {
        let files = || journal_files(&self.journal).len();
        let before = files();
        let ok = Command::new("kill")
            .args(["-USR2", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        assert!(
            wait_until(Duration::from_secs(10), || files() > before),
            "journald did not rotate"
        );
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `.journal` files under `dir` (journald keeps them in a directory per machine).
pub fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(journal_files(&p));
        } else if p.extension().is_some_and(|x| x == "journal") {
            out.push(p);
        }
    }
    out
}
