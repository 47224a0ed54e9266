//! The journal source against baselines measured in the same run on the same journal file:
//!
//! 1. throughput: `scan --journal --no-enrich -o /dev/null` on a journal of 1,000,000 entries
//!    (mail entries from the log generator with ~1% smtpd failures, and one entry in five from
//!    other services and facilities), against `journalctl -D DIR -o export` (all entries,
//!    and only facility mail) and against the workaround pipe
//!    `journalctl -D DIR -o short-iso | maillogsentinel scan -o /dev/null -` (the journal is
//!    the directory of files journal-remote writes, rotating as journald does);
//! 2. live: the daemon following a journal file that `systemd-journal-remote` appends to (the
//!    same libsystemd writer journald uses), one failure every millisecond: latency from the
//!    entry written to its row readable in the CSV (median, p99), then idle CPU and RSS.
//!
//! Run with `cargo bench --bench journal` (entries: `MLS_BENCH_ENTRIES`, default 1,000,000;
//! runs per command: `MLS_BENCH_RUNS`, default 3; live entries: `MLS_BENCH_LINES`, default
//! 5,000). Needs systemd-journal-remote and journalctl. The journal is built once into
//! `target/bench-data/` and read once before timing, so every command reads from memory.

#[path = "support/rows.rs"]
mod rows;

use rows::follow_rows;

#[path = "support/loggen.rs"]
#[allow(dead_code)]
mod loggen;

#[path = "support/peak.rs"]
mod peak;

use peak::{Measured, cpu_ticks, measure_with, rss_kib};

#[path = "../tests/it/journald.rs"]
#[allow(dead_code)]
mod journald;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_maillogsentinel");
const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
/// 2026-11-18T11:06:40Z in microseconds.
const BASE_USEC: u64 = 1_795_000_000_000_000;

fn main() {
    let entries: u64 = env_or("MLS_BENCH_ENTRIES", 1_000_000);
    let runs: usize = env_or("MLS_BENCH_RUNS", 3);
    let lines: usize = env_or("MLS_BENCH_LINES", 5_000);
    assert!(
        Path::new(JOURNAL_REMOTE).exists(),
        "{JOURNAL_REMOTE} is missing: apt-get install systemd-journal-remote"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let (journal, failures) = ensure_journal(&dir, entries);
    let size = warm(&journal);
    let files = std::fs::read_dir(&journal).unwrap().count();
    println!(
        "input: {} ({files} files, {:.1} MB, {entries} entries, {failures} failed logins)",
        journal.display(),
        size as f64 / 1e6
    );
    let cfg = dir.join(format!("journal-{entries}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[sources]\njournal_path = \"{}\"\nstate_dir = \"{d}/journal-state\"\n[output]\ncsv = \"{d}/journal-out.csv\"\n[enrich]\nreverse_dns = false\ncountry_db = \"\"\nasn_db = \"\"\n",
            journal.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let j = journal.to_str().unwrap();

    // Correctness first: a benchmark of wrong output is worthless.
    let rows = count_rows(&[
        BIN,
        "scan",
        "-c",
        cfg,
        "--journal",
        "--no-enrich",
        "-o",
        "-",
    ]);
    assert_eq!(rows, failures, "scan --journal found {rows} rows");
    let pipe = format!(
        "journalctl -D '{j}' -o short-iso --no-pager | '{BIN}' scan -c '{cfg}' --no-enrich -o /dev/null -"
    );

    let export_all = measure(runs, &["journalctl", "-D", j, "-o", "export"]);
    let export_mail = measure(
        runs,
        &["journalctl", "-D", j, "-o", "export", "SYSLOG_FACILITY=2"],
    );
    let scan = measure(
        runs,
        &[
            BIN,
            "scan",
            "-c",
            cfg,
            "--journal",
            "--no-enrich",
            "-o",
            "/dev/null",
        ],
    );
    let piped = measure(runs, &["sh", "-c", &pipe]);

    println!();
    println!("| command | median time | entries/s | max RSS | ratio |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, m: &Measured, rss: bool| {
        println!(
            "| `{name}` | {:.3} s | {:.2} M | {} | {:.2}x the time of `journalctl -o export` |",
            m.median.as_secs_f64(),
            entries as f64 / m.median.as_secs_f64() / 1e6,
            if rss {
                format!("{:.1} MB", m.max_rss_kb as f64 / 1024.0)
            } else {
                "(a pipe of two)".into()
            },
            m.median.as_secs_f64() / export_all.median.as_secs_f64()
        );
    };
    row("journalctl -D DIR -o export > /dev/null", &export_all, true);
    row(
        "journalctl -D DIR -o export SYSLOG_FACILITY=2 > /dev/null",
        &export_mail,
        true,
    );
    row(
        "maillogsentinel scan --journal --no-enrich -o /dev/null",
        &scan,
        true,
    );
    row(
        "journalctl -D DIR -o short-iso | maillogsentinel scan -o /dev/null -",
        &piped,
        false,
    );

    live(&dir, lines);
    live_journald(&dir, lines);
}

/// The daemon following a real journald (root only: it runs in a mount namespace of its own),
/// failures sent to its syslog socket as Postfix sends them, one per millisecond.
fn live_journald(dir: &Path, lines: usize) {
    let dir = dir.join("journal-journald");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let Some(jd) = journald::Journald::start(&dir) else {
        println!("\n(no real journald here: not measured)");
        return;
    };
    jd.log("postfix/master", "daemon started");
    let (mut daemon, out) = start_daemon(&dir, &jd.journal);
    std::thread::sleep(Duration::from_millis(500));
    let socket = std::os::unix::net::UnixDatagram::unbound().unwrap();
    socket.connect(&jd.dev_log).unwrap();
    let sender = std::thread::spawn(move || {
        rows::paced(lines, |i| {
            // <20>: facility mail, severity warning.
            let datagram = format!(
                "<20>Nov 29 08:00:00 postfix/smtpd[77]: warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=u{i}"
            );
            socket.send(datagram.as_bytes()).unwrap();
        })
    });
    let arrived = follow_rows(&out, lines, Duration::from_secs(120));
    let sent = sender.join().unwrap();
    let got = arrived.iter().filter(|a| a.is_some()).count();
    let mut lat: Vec<Duration> = sent
        .iter()
        .zip(&arrived)
        .filter_map(|(s, a)| a.map(|a| a.duration_since(*s)))
        .collect();
    lat.sort();
    let _ = Command::new("kill").arg(daemon.id().to_string()).status();
    let _ = daemon.wait();
    assert_eq!(got, lines, "every row arrived");
    print_latency(
        &format!("real journald, {lines} failures one per ms to /dev/log"),
        "sent -> row",
        &lat,
    );
}

/// A table of latencies (sorted): median, p99 (goal < 50 ms), max.
fn print_latency(title: &str, what: &str, sorted: &[Duration]) {
    let pct = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!("| {title} | value | goal |");
    println!("|---|---|---|");
    println!("| latency {what}, median | {:.2} ms | |", ms(pct(0.5)));
    println!(
        "| latency {what}, p99 | {:.2} ms | < 50 ms |",
        ms(pct(0.99))
    );
    println!("| latency {what}, max | {:.2} ms | |", ms(pct(1.0)));
}

/// The daemon following a journal file being appended to.
fn live(dir: &Path, lines: usize) {
    let dir = dir.join("journal-live");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("live.journal");
    // The writer: journal-remote appending what it reads from a pipe, entry by entry.
    let mut writer = Command::new(JOURNAL_REMOTE)
        .arg(format!("--output={}", journal.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = writer.stdin.take().unwrap();
    let now_usec = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let mut mono = 1_000_000u64;
    let mut entry = move |out: &mut dyn Write, message: &str| {
        mono += 1;
        write!(
            out,
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={mono}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=mx\nSYSLOG_FACILITY=2\nSYSLOG_IDENTIFIER=postfix/smtpd\n_PID=77\nMESSAGE={message}\n\n",
            now_usec()
        )
        .unwrap();
        out.flush().unwrap();
    };
    entry(&mut input, "daemon started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !journal.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut daemon, out) = start_daemon(&dir, &journal);
    let pid = daemon.id();
    std::thread::sleep(Duration::from_millis(500));
    let sender = std::thread::spawn(move || {
        let sent = rows::paced(lines, |i| {
            entry(
                &mut input,
                &format!(
                    "warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=u{i}"
                ),
            );
        });
        (sent, input)
    });
    let arrived = follow_rows(&out, lines, Duration::from_secs(120));
    let (sent, input) = sender.join().unwrap();
    let mut lat: Vec<Duration> = sent
        .iter()
        .zip(&arrived)
        .map(|(s, a)| a.expect("every row arrived").duration_since(*s))
        .collect();
    lat.sort();
    std::thread::sleep(Duration::from_secs(1));
    let idle_secs = 10;
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle = cpu_ticks(pid) - t0;
    let (rss, hwm) = rss_kib(pid);
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = daemon.wait();
    drop(input);
    let _ = writer.wait();
    print_latency(
        &format!("live journal, {lines} failures one per ms"),
        "entry written -> row",
        &lat,
    );
    println!(
        "| idle CPU over {idle_secs} s | {:.2} % ({idle} ticks) | |",
        idle as f64 / (idle_secs as f64 * 100.0) * 100.0
    );
    println!(
        "| RSS of the following daemon, idle | {:.1} MB | < 20 MB |",
        rss as f64 / 1024.0
    );
    println!("| peak RSS | {:.1} MB | |", hwm as f64 / 1024.0);
}

/// Starts the daemon reading `journal` (a journal file or directory; the configured log file
/// does not exist), state and CSV in `dir`; returns it once its CSV exists, with the CSV's path.
fn start_daemon(dir: &Path, journal: &Path) -> (std::process::Child, PathBuf) {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{d}/mail.log\"]\njournal_path = \"{}\"\nstate_dir = \"{d}/state\"\n[output]\ncsv = \"{d}/out.csv\"\n[enrich]\nreverse_dns = false\ncountry_db = \"\"\nasn_db = \"\"\n",
            journal.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    let daemon = Command::new(BIN)
        .args(["run", "-c", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let out = dir.join("out.csv");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    (daemon, out)
}

/// Builds the journal unless one for the same size is there: the generator's mail log turned
/// into entries, one in five followed by another service's entry.
fn ensure_journal(dir: &Path, entries: u64) -> (PathBuf, u64) {
    let journal = dir.join(format!("bench-journal-{entries}"));
    let stamp = dir.join(format!("bench-journal-{entries}.failures"));
    if let (Ok(s), true) = (std::fs::read_to_string(&stamp), journal.exists())
        && let Ok(n) = s.trim().parse()
    {
        return (journal, n);
    }
    let _ = std::fs::remove_dir_all(&journal);
    std::fs::create_dir_all(&journal).unwrap();
    eprintln!("building {} ...", journal.display());
    let log = dir.join(format!("bench-{entries}.log"));
    let spec = loggen::Spec {
        // About 170 bytes a line: enough lines for the mail share of the entries.
        bytes: entries * 4 / 5 * 175,
        failures_per_10k: 100,
        attacker_ips: 5000,
        seed: 7,
        dovecot: false,
    };
    let mut w = BufWriter::new(File::create(&log).unwrap());
    loggen::generate(&spec, &mut w).unwrap();
    w.flush().unwrap();
    drop(w);
    // journal-remote rotates its output as journald does (here every ~210,000 entries): the
    // journal is a directory of files, read as one.
    let mut remote = Command::new(JOURNAL_REMOTE)
        .arg(format!("--output={}/bench.journal", journal.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufWriter::with_capacity(1 << 20, remote.stdin.take().unwrap());
    let (mut written, mut failures, mut usec) = (0u64, 0u64, BASE_USEC);
    let mut put = |out: &mut BufWriter<_>, fields: &[(&str, &str)]| {
        usec += 1000;
        write!(
            out,
            "__REALTIME_TIMESTAMP={usec}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n",
            usec - BASE_USEC
        )
        .unwrap();
        for (k, v) in fields {
            writeln!(out, "{k}={v}").unwrap();
        }
        out.write_all(b"\n").unwrap();
    };
    for line in BufReader::new(File::open(&log).unwrap()).lines() {
        if written >= entries {
            break;
        }
        let line = line.unwrap();
        // `Nov 22 08:01:04 mx PROGRAM[PID]: MESSAGE` (or `PROGRAM: MESSAGE`)
        let rest = &line[16..];
        let (host, rest) = rest.split_once(' ').unwrap();
        let (tag, message) = rest.split_once(": ").unwrap();
        let (program, pid) = match tag.split_once('[') {
            Some((p, pid)) => (p, pid.trim_end_matches(']')),
            None => (tag, "1"),
        };
        if message.contains("authentication failed") {
            failures += 1;
        }
        put(
            &mut out,
            &[
                ("_HOSTNAME", host),
                ("SYSLOG_FACILITY", "2"),
                ("SYSLOG_IDENTIFIER", program),
                ("_PID", pid),
                ("MESSAGE", message),
            ],
        );
        written += 1;
        if written % 5 == 0 && written < entries {
            let (facility, ident, message) = match written % 3 {
                0 => (
                    "10",
                    "sshd",
                    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7",
                ),
                1 => (
                    "3",
                    "systemd",
                    "Started session-42.scope - Session 42 of User alice.",
                ),
                _ => (
                    "9",
                    "CRON",
                    "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
                ),
            };
            put(
                &mut out,
                &[
                    ("_HOSTNAME", "mx"),
                    ("SYSLOG_FACILITY", facility),
                    ("SYSLOG_IDENTIFIER", ident),
                    ("_PID", "999"),
                    ("MESSAGE", message),
                ],
            );
            written += 1;
        }
    }
    out.flush().unwrap();
    drop(out);
    assert!(remote.wait().unwrap().success());
    assert_eq!(written, entries, "the generated log was too short");
    let _ = std::fs::remove_file(&log);
    std::fs::write(&stamp, failures.to_string()).unwrap();
    (journal, failures)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads a directory's files once so that every measured command finds them in the page cache;
/// returns their total size.
fn warm(dir: &Path) -> u64 {
    let mut size = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let mut f = File::open(e.unwrap().path()).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            size += n as u64;
        }
    }
    size
}

/// Data rows a command writes to stdout as CSV (header excluded).
fn count_rows(argv: &[&str]) -> u64 {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{argv:?}");
    (out.stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64)
        .saturating_sub(1)
}

/// Runs a command `runs` times (stdout to /dev/null): median wall time, largest peak RSS.
fn measure(runs: usize, argv: &[&str]) -> Measured {
    measure_with(runs, argv, false)
}
