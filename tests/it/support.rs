//! Helpers shared by the integration tests: running the binary in a fixed zone, fixtures, and
//! files with a fixed modification time (the year of syslog timestamps is inferred from it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

/// The zone every test runs the binary in: Central European Time with its DST rules, given as a
/// POSIX TZ string so that no tzdata package is needed.
pub const TZ: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

/// 2026-11-22 12:00:00 in [`TZ`]: the mtime given to fixtures.
pub fn fixture_mtime() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_345_200)
}

/// A fixture in tests/data.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Copies a fixture into `dir` with the fixed mtime and returns the copy's path.
pub fn fixture_copy(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(data(name), &to).unwrap();
    set_mtime(&to, fixture_mtime());
    to
}

/// Sets a file's modification time.
pub fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// The binary, with the test zone and no config from the machine.
pub fn bin() -> Command {
    isolated(Command::new(env!("CARGO_BIN_EXE_maillogsentinel")))
}

/// A command (the binary, or a wrapper such as `setpriv` running it) given the test zone, and
/// an empty configuration instead of the host's /etc/maillogsentinel/config.toml where no `-c`
/// is passed: built-in defaults, whatever is installed on the machine.
pub fn isolated(mut c: Command) -> Command {
    c.env("TZ", TZ)
        .env("NO_COLOR", "1")
        .env("MAILLOGSENTINEL_CONFIG", data("defaults.toml"))
        .env_remove("RUST_LOG")
        .env_remove("MAILLOGSENTINEL_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        // A control socket in the host's runtime directory would be the host's business.
        .env_remove("RUNTIME_DIRECTORY");
    c.stdin(Stdio::null());
    c
}

/// Runs the binary and returns its output.
pub fn run(args: &[&str]) -> Output {
    run_in(bin(), args)
}

/// Runs a prepared command with `args`.
pub fn run_in(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args).output().expect("the binary runs")
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config file in `dir` writing the CSV to `dir/out/intrusions.csv`.
pub fn config_in(dir: &Path) -> PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{d}/mail.log\"]\nstate_dir = \"{d}/state\"\njournal = false\n\n[output]\ncsv = \"{d}/out/intrusions.csv\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}

/// The CSV header row.
pub const HEADER: &str = "timestamp,server,service,ip,username,mechanism,reason,client_hostname,reverse_dns,dns_status,country,asn,as_org\r\n";

/// A daemon under test: the real binary running `run` on a config in a temp dir.
pub struct Daemon {
    /// The process.
    pub child: std::process::Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `maillogsentinel run -c cfg`, stderr to `dir/daemon.log` (appended).
    pub fn start(cfg: &Path, dir: &Path) -> Daemon {
        Daemon::start_with(bin(), cfg, dir)
    }

    /// Starts with a prepared command (extra environment, another user).
    pub fn start_with(mut cmd: Command, cfg: &Path, dir: &Path) -> Daemon {
        let log = dir.join("daemon.log");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = cmd
            .args(["run", "-c", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("daemon starts");
        Daemon { child, log }
    }

    /// Sends a signal by name (`TERM`, `HUP`, `KILL`, `USR1`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        let status = wait_timeout(&mut self.child, Duration::from_secs(20))
            .expect("daemon stops within 20 s");
        status.code()
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// What it logged so far.
    pub fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for a child up to `limit`.
pub fn wait_timeout(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The data rows of a CSV file (no header); empty when it does not exist.
pub fn csv_rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_terminator("\r\n")
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// The username column of each row (usernames in these tests have no comma or quote).
pub fn usernames(path: &Path) -> Vec<String> {
    csv_rows(path)
        .iter()
        .map(|r| r.split(',').nth(4).unwrap_or_default().to_string())
        .collect()
}

/// A failure line for `user`, with a syslog timestamp of today.
pub fn attack(user: &str) -> String {
    format!(
        "Nov 22 08:01:04 mx postfix/submission/smtpd[77]: warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: (reason unavailable), sasl_username={user}\n"
    )
}

/// A successful Dovecot login of `user`.
pub fn login(user: &str) -> String {
    format!(
        "Nov 22 08:01:06 mx dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.1, mpid=1, TLS, session=<s>\n"
    )
}

/// An ordinary line that is not a failure.
pub fn noise(i: usize) -> String {
    format!("Nov 22 08:01:05 mx postfix/qmgr[12]: {i:010X}: removed\n")
}

/// Appends to a file (creating it).
pub fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Enrichment off (no network, no databases): for tests about everything else.
pub const NO_ENRICH: &str = "[enrich]\nreverse_dns = false\ncountry_db = \"\"\nasn_db = \"\"\n";

/// A daemon config in `dir` following `files`, with fast polling for tests.
pub fn daemon_config(dir: &Path, files: &[&Path], extra: &str) -> PathBuf {
    let cfg = dir.join("config.toml");
    let list: Vec<String> = files
        .iter()
        .map(|f| format!("\"{}\"", f.display()))
        .collect();
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [{}]\nstate_dir = \"{d}/state\"\npoll_interval = \"200ms\"\nrotate_wait = \"2s\"\n{journal}{extra}\n[output]\ncsv = \"{d}/out.csv\"\n{NO_ENRICH}",
            list.join(", "),
            // The host's journal never stands in for a test's missing log.
            journal = if extra.contains("journal") { "" } else { "journal = false\n" },
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}
