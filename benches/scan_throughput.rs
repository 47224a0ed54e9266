//! End-to-end `scan` throughput against baselines measured in the same run on the same file:
//! `grep -c 'authentication failed'` and `cat` for plain text, `zcat` for gzip.
//!
//! Run with `cargo bench --bench scan_throughput` (size: `MLS_BENCH_MB`, default 200; runs per
//! command: `MLS_BENCH_RUNS`, default 5). The log is generated once into
//! `target/bench-data/` and kept in the page cache by a first read, so every command reads from
//! memory: these are CPU figures. Medians are reported, with the ratio to the baseline.

#[path = "support/loggen.rs"]
#[allow(dead_code)]
mod loggen;

#[path = "support/peak.rs"]
mod peak;

use peak::{Measured, measure_with};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_maillogsentinel");

fn main() {
    let mb: u64 = env_or("MLS_BENCH_MB", 200);
    let runs: usize = env_or("MLS_BENCH_RUNS", 5);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = loggen::Spec {
        bytes: mb * 1_000_000,
        failures_per_10k: 100,
        attacker_ips: 5000,
        seed: 42,
        dovecot: false,
    };
    let (log, generated) = loggen::ensure_log(&dir, &spec);
    let gz = ensure_gz(&log);
    loggen::warm(&log);
    loggen::warm(&gz);
    let size = std::fs::metadata(&log).unwrap().len() as f64;
    let gz_size = std::fs::metadata(&gz).unwrap().len();
    println!(
        "input: {} ({:.1} MB, {} lines, {} failed logins); {} ({:.1} MB)",
        log.display(),
        size / 1e6,
        generated.lines,
        generated.failures,
        gz.display(),
        gz_size as f64 / 1e6
    );

    // Correctness first: a benchmark of wrong output is worthless.
    let rows = scan_rows(&log);
    assert_eq!(
        rows, generated.failures,
        "scan found {rows} rows, the generator wrote {}",
        generated.failures
    );
    let grep_count = grep_count(&log);
    assert_eq!(
        grep_count, generated.failures,
        "grep -c disagrees with the generator"
    );

    let l = log.to_str().unwrap();
    let g = gz.to_str().unwrap();
    // grep's output goes to a pipe: GNU grep stops at the first match when it sees its output
    // is /dev/null, which would measure nothing.
    let grep = measure_with(runs, &["grep", "-c", "authentication failed", l], true);
    let cat = measure(runs, &["cat", l]);
    let scan = measure(runs, &[BIN, "scan", "--no-enrich", "-o", "/dev/null", l]);
    let zcat = measure(runs, &["zcat", g]);
    let scan_gz = measure(runs, &[BIN, "scan", "--no-enrich", "-o", "/dev/null", g]);

    let mbs = |d: Duration| size / 1e6 / d.as_secs_f64();
    println!();
    println!("| command | median time | MB/s | lines/s | max RSS | ratio |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, m: &Measured, base: Option<(&str, &Measured)>| {
        let ratio = match base {
            Some((bname, b)) => format!(
                "{:.2}x the time of {bname}",
                m.median.as_secs_f64() / b.median.as_secs_f64()
            ),
            None => "baseline".into(),
        };
        println!(
            "| `{name}` | {:.3} s | {:.0} | {:.2} M | {:.1} MB | {ratio} |",
            m.median.as_secs_f64(),
            mbs(m.median),
            generated.lines as f64 / m.median.as_secs_f64() / 1e6,
            m.max_rss_kb as f64 / 1024.0,
        );
    };
    row("grep -c 'authentication failed' FILE", &grep, None);
    row("cat FILE > /dev/null", &cat, Some(("grep -c", &grep)));
    row(
        "scan --no-enrich -o /dev/null FILE",
        &scan,
        Some(("grep -c", &grep)),
    );
    row("zcat FILE.gz > /dev/null", &zcat, None);
    row(
        "scan --no-enrich -o /dev/null FILE.gz",
        &scan_gz,
        Some(("zcat", &zcat)),
    );
    println!();
    println!("(MB/s and lines/s are of the uncompressed log for every row.)");
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Compresses the log like logrotate does (`gzip`, default level).
fn ensure_gz(log: &Path) -> PathBuf {
    let gz = log.with_extension("log.gz");
    if !gz.exists() {
        eprintln!("compressing {} ...", log.display());
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "gzip -c '{}' > '{}.tmp' && mv '{}.tmp' '{}'",
                log.display(),
                gz.display(),
                gz.display(),
                gz.display()
            ))
            .status()
            .unwrap();
        assert!(status.success());
    }
    gz
}

fn scan_rows(log: &Path) -> u64 {
    let out = Command::new(BIN)
        .args(["scan", "--no-enrich", "-o", "-"])
        .arg(log)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64
        - 1
}

fn grep_count(log: &Path) -> u64 {
    let out = Command::new("grep")
        .args(["-c", "authentication failed"])
        .arg(log)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Runs a command `runs` times (stdout to /dev/null): median wall time, largest peak RSS.
fn measure(runs: usize, argv: &[&str]) -> Measured {
    measure_with(runs, argv, false)
}
