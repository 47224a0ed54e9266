//! `scan` on a log of Postfix and Dovecot traffic with logins, against the `grep -c` that
//! finds the same lines, measured in the same run on the same file (issue 11's yardstick):
//!
//! ```text
//! grep -c -F -e 'authentication failed' -e 'auth failed' -e 'sasl_method=' -e '-login: Login:' FILE
//! ```
//!
//! The log (benches/support/loggen.rs with `dovecot`: 1% failed logins, half of them Dovecot
//! summaries in every form, Postfix and Dovecot logins, connections without attempts,
//! auth-process verdicts) is generated once into `target/bench-data/` and read once before
//! measuring, so these are CPU figures. `scan` reads and parses in two threads (see
//! `scan::scan_one`), grep in one: both wall and CPU time are given. Correctness first: `scan`
//! must find exactly the generated failures and logins, and grep exactly their sum.
//!
//! Run with `cargo bench --bench scan_mixed` (size: `MLS_BENCH_MB`, default 1000; runs per
//! command: `MLS_BENCH_RUNS`, default 5).

#[path = "support/loggen.rs"]
#[allow(dead_code)]
mod loggen;

#[path = "support/peak.rs"]
mod peak;

use peak::{Measured, measure_with};

use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_maillogsentinel");

/// The yardstick's patterns.
const GREP: [&str; 9] = [
    "-c",
    "-F",
    "-e",
    "authentication failed",
    "-e",
    "auth failed",
    "-e",
    "sasl_method=",
    "-e",
];

fn main() {
    let mb: u64 = env_or("MLS_BENCH_MB", 1000);
    let runs: usize = env_or("MLS_BENCH_RUNS", 5);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = loggen::Spec {
        bytes: mb * 1_000_000,
        failures_per_10k: 100,
        attacker_ips: 5000,
        seed: 42,
        dovecot: true,
    };
    let (log, g) = loggen::ensure_log(&dir, &spec);
    loggen::warm(&log);
    let size = std::fs::metadata(&log).unwrap().len() as f64;
    println!(
        "input: {} ({:.1} MB, {} lines, {} failed logins, {} logins)",
        log.display(),
        size / 1e6,
        g.lines,
        g.failures,
        g.logins
    );

    // Correctness first.
    let logins_csv = dir.join("scan-mixed-logins.csv");
    let _ = std::fs::remove_file(&logins_csv);
    let out = Command::new(BIN)
        .args(["scan", "--no-enrich", "-o", "-", "--logins"])
        .arg(&logins_csv)
        .arg(&log)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows = |b: &[u8]| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count() as u64 - 1;
    assert_eq!(rows(&out.stdout), g.failures, "scan's failures");
    assert_eq!(
        rows(&std::fs::read(&logins_csv).unwrap()),
        g.logins,
        "scan's logins"
    );
    let l = log.to_str().unwrap();
    let mut grep: Vec<&str> = vec!["grep"];
    grep.extend(GREP);
    grep.extend(["-login: Login:", l]);
    let counted = Command::new(grep[0]).args(&grep[1..]).output().unwrap();
    let counted: u64 = String::from_utf8(counted.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        counted,
        g.failures + g.logins,
        "grep -c disagrees with the generator"
    );

    // grep's output goes to a pipe (GNU grep stops at the first match when it is /dev/null).
    let grep_m = measure_with(runs, &grep, true);
    let scan = measure(
        runs,
        &[
            BIN,
            "scan",
            "--no-enrich",
            "-o",
            "/dev/null",
            "--logins",
            "/dev/null",
            l,
        ],
    );
    println!();
    println!(
        "| command | median wall time | MB/s | median CPU time | max RSS | ratio (wall, CPU) |"
    );
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, m: &Measured, ratio: &str| {
        println!(
            "| `{name}` | {:.3} s | {:.0} | {:.3} s | {:.1} MB | {ratio} |",
            m.median.as_secs_f64(),
            size / 1e6 / m.median.as_secs_f64(),
            m.median_cpu.as_secs_f64(),
            m.max_rss_kb as f64 / 1024.0
        );
    };
    row(
        "grep -c -F -e 'authentication failed' -e 'auth failed' -e 'sasl_method=' -e '-login: Login:' FILE",
        &grep_m,
        "baseline",
    );
    row(
        "scan --no-enrich -o /dev/null --logins /dev/null FILE",
        &scan,
        &format!(
            "{:.2}x the wall time, {:.2}x the CPU time of grep -c",
            scan.median.as_secs_f64() / grep_m.median.as_secs_f64(),
            scan.median_cpu.as_secs_f64() / grep_m.median_cpu.as_secs_f64()
        ),
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs a command `runs` times (stdout to /dev/null): median wall time, largest peak RSS.
fn measure(runs: usize, argv: &[&str]) -> Measured {
    measure_with(runs, argv, false)
}
