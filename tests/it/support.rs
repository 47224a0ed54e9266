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
    let mut c = Command::new(env!("CARGO_BIN_EXE_maillogsentinel"));
    c.env("TZ", TZ)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("MAILLOGSENTINEL_LOG");
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
            "[sources]\nfiles = [\"{d}/mail.log\"]\nstate_dir = \"{d}/state\"\n\n[output]\ncsv = \"{d}/out/intrusions.csv\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}

/// The CSV header row.
pub const HEADER: &str = "timestamp,server,service,ip,username,mechanism,reason,client_hostname,reverse_dns,dns_status,country,asn,as_org\r\n";
