//! The compromise alerts' memory, measured in the daemon (release binary, enrichment off):
//! resident memory with N distinct addresses and N distinct usernames failing within the alert
//! window, beside the same daemon idle on a one-line log, in the same run:
//! - while catching the N failures up (peak, and RSS once caught up);
//! - after a restart, when the memory is rebuilt from the intrusion record.
//!
//! Timestamps are RFC 3339 a little before now, so that every failure is in the window.
//! Run with `cargo bench --bench alerts` (size: `MLS_BENCH_ALERT_KEYS`, default 100000).

#[path = "support/peak.rs"]
#[allow(dead_code)]
mod peak;

#[path = "support/proc.rs"]
mod proc;

use proc::{fresh_dir, stop};

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_maillogsentinel");

fn main() {
    let n: usize = std::env::var("MLS_BENCH_ALERT_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = fresh_dir("alerts-memory");

    // Baseline: the same daemon on a one-line log.
    let idle_log = dir.join("idle.log");
    std::fs::write(
        &idle_log,
        "Nov 22 08:01:05 mx postfix/qmgr[12]: 0A1B2C3D4E: removed\n",
    )
    .unwrap();
    let idle_dir = dir.join("idle");
    std::fs::create_dir_all(&idle_dir).unwrap();
    let child = start(&config(&idle_dir, &idle_log), &idle_dir);
    std::thread::sleep(Duration::from_secs(3));
    let (idle_rss, idle_hwm) = peak::rss_kib(child.id());
    stop(child);

    // N failures, address i and username i, the newest a minute ago.
    let log = dir.join("mail.log");
    {
        let now = chrono::Utc::now();
        let mut f = BufWriter::new(File::create(&log).unwrap());
        for i in 0..n {
            let t = now - chrono::Duration::seconds(60 + (n - i) as i64 / 10);
            let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            writeln!(
                f,
                "{} mx postfix/smtpd[1]: warning: unknown[{ip}]: SASL LOGIN authentication failed: x, sasl_username=user{i}@example.org",
                t.format("%Y-%m-%dT%H:%M:%S+00:00")
            )
            .unwrap();
        }
        f.flush().unwrap();
    }
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let cfg = config(&run_dir, &log);
    let t = Instant::now();
    let child = start(&cfg, &run_dir);
    wait_rows(&run_dir.join("out.csv"), n, Duration::from_secs(1800));
    let took = t.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let (run_rss, run_hwm) = peak::rss_kib(child.id());
    stop(child);

    // A restart: the memory is read back from the record.
    let t = Instant::now();
    let child = start(&cfg, &run_dir);
    let log_text = || std::fs::read_to_string(run_dir.join("daemon.log")).unwrap_or_default();
    while !log_text().contains("of failures remembered") && t.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rebuilt = t.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let (re_rss, re_hwm) = peak::rss_kib(child.id());
    stop(child);
    let said = log_text()
        .lines()
        .find(|l| l.contains("of failures remembered"))
        .unwrap_or("")
        .to_string();

    let mb = |k: u64| k as f64 / 1024.0;
    println!("alert window of {n} addresses and {n} usernames ({said})");
    println!("| measure | value | baseline in the same run / goal |");
    println!("|---|---|---|");
    println!(
        "| idle daemon (one-line log): RSS / peak | {:.1} MB / {:.1} MB | baseline |",
        mb(idle_rss),
        mb(idle_hwm)
    );
    println!(
        "| after catching up {n} failures ({:.1} s): RSS / peak | {:.1} MB / {:.1} MB | +{:.1} MB over idle; goal < 64 MB |",
        took.as_secs_f64(),
        mb(run_rss),
        mb(run_hwm),
        mb(run_rss.saturating_sub(idle_rss))
    );
    println!(
        "| after a restart, memory rebuilt from the record ({:.2} s): RSS / peak | {:.1} MB / {:.1} MB | +{:.1} MB over idle; goal < 64 MB |",
        rebuilt.as_secs_f64(),
        mb(re_rss),
        mb(re_hwm),
        mb(re_rss.saturating_sub(idle_rss))
    );
}

fn config(dir: &Path, log: &Path) -> PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{}\"]\nstate_dir = \"{d}/state\"\njournal = false\nbackfill = true\n[output]\ncsv = \"{d}/out.csv\"\n[enrich]\nreverse_dns = false\ncountry_db = \"\"\nasn_db = \"\"\n",
            log.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}

fn start(cfg: &Path, dir: &Path) -> std::process::Child {
    proc::start(BIN, cfg, dir, "info")
}

/// Waits until `out` holds `rows` data rows.
fn wait_rows(out: &Path, rows: usize, limit: Duration) {
    let t = Instant::now();
    loop {
        let text = std::fs::read(out).unwrap_or_default();
        let lines = text.iter().filter(|&&b| b == b'\n').count();
        if lines > rows {
            return;
        }
        assert!(
            t.elapsed() < limit,
            "{} of {rows} rows",
            lines.saturating_sub(1)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
