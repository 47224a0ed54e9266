//! The daemon's figures, each beside a baseline measured in the same run:
//! - latency from a line appended to the log to its row readable in the CSV (10,000 lines,
//!   one every millisecond; median and p99), no enrichment (the stage runs, with reverse DNS
//!   and GeoIP off);
//! - sustained throughput while the live file grows at full speed, against `scan` on the
//!   same bytes;
//! - CPU used while idle, and resident memory (RSS), beside a lone live file and beside a
//!   Debian-like rotated history (`mail.log.1`, `mail.log.2.gz` ...): the daemon's own reads of
//!   the siblings must not wake it;
//! - catching up a backlog dense with failures from distinct addresses, reverse DNS on (a
//!   loopback DNS server) and off: peak RSS and RSS once caught up, against the idle figure.
//!
//! Run with `cargo bench --bench daemon` (sizes: `MLS_BENCH_LINES` default 10000,
//! `MLS_BENCH_MB` default 200, `MLS_BENCH_CATCHUP` failures default 1000000).

#[path = "support/peak.rs"]
#[allow(dead_code)]
mod peak;

use peak::{cpu_ticks, rss_kib};

#[path = "support/rows.rs"]
mod rows;

#[path = "support/proc.rs"]
mod proc;

use proc::{fresh_dir, stop};

#[path = "support/loggen.rs"]
#[allow(dead_code)]
mod loggen;

#[path = "../tests/it/dns_server.rs"]
#[allow(dead_code)]
mod dns_server;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_maillogsentinel");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &Path, log: &Path) -> PathBuf {
    config_with(dir, log, "reverse_dns = false\n")
}

/// A config with `enrich` lines of its own (GeoIP off).
fn config_with(dir: &Path, log: &Path, enrich: &str) -> PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{}\"]\nstate_dir = \"{d}/state\"\n[output]\ncsv = \"{d}/out.csv\"\n[enrich]\n{enrich}country_db = \"\"\nasn_db = \"\"\n",
            log.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}

/// Waits until the CSV at `out` holds `rows` data rows (or `limit` passes); returns the time.
fn wait_rows(out: &Path, rows: u64, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut csv = File::open(out).unwrap();
    let mut lines = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    while lines < rows + 1 && t.elapsed() < limit {
        let n = csv.read(&mut buf).unwrap();
        if n == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    assert!(
        lines > rows,
        "{} of {rows} rows within {limit:?}",
        lines.saturating_sub(1)
    );
    t.elapsed()
}

/// A failure from the `i`th address of 10.0.0.0/8 (every one distinct).
fn attack_from(i: usize) -> String {
    let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i as u32);
    format!(
        "Nov 22 08:01:04 mx postfix/smtpd[77]: warning: unknown[{ip}]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=u{i}\n"
    )
}

/// Idle CPU (percent over `secs`) of a daemon following `log` beside a Debian-like rotated
/// history, once it has read it all.
fn idle_beside_rotations(secs: u64) -> (f64, u64) {
    let dir = fresh_dir("daemon-idle-rotated");
    let log = dir.join("mail.log");
    let mut rows = 0;
    for (name, n) in [
        ("mail.log.4.gz", 200),
        ("mail.log.3.gz", 200),
        ("mail.log.2.gz", 200),
        ("mail.log.1", 200),
        ("mail.log", 200),
    ] {
        let text: String = (rows..rows + n).map(attack).collect();
        rows += n;
        let path = dir.join(name);
        if name.ends_with(".gz") {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(text.as_bytes()).unwrap();
            std::fs::write(&path, enc.finish().unwrap()).unwrap();
        } else {
            std::fs::write(&path, text).unwrap();
        }
    }
    let cfg = config(&dir, &log);
    let child = start(&cfg, &dir);
    let pid = child.id();
    wait_rows(&dir.join("out.csv"), rows as u64, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(secs));
    let ticks = cpu_ticks(pid) - t0;
    stop(child);
    (ticks as f64 / 100.0 / secs as f64 * 100.0, ticks)
}

/// Catching up `n` failures from distinct addresses already in the log at start (backfill):
/// (seconds, peak RSS KiB, RSS KiB 5 s after the last row).
fn catch_up(n: usize, dns: Option<&dns_server::DnsServer>) -> (f64, u64, u64) {
    let dir = fresh_dir(if dns.is_some() {
        "daemon-catchup-dns"
    } else {
        "daemon-catchup"
    });
    let log = dir.join("mail.log");
    {
        let mut f = std::io::BufWriter::new(File::create(&log).unwrap());
        for i in 0..n {
            f.write_all(attack_from(i).as_bytes()).unwrap();
        }
        f.flush().unwrap();
    }
    let enrich = match dns {
        Some(d) => format!("dns_servers = [\"{}\"]\n", d.addr),
        None => "reverse_dns = false\n".to_string(),
    };
    let cfg = config_with(&dir, &log, &enrich);
    let t = Instant::now();
    let child = start(&cfg, &dir);
    let pid = child.id();
    let took = t.elapsed() + wait_rows(&dir.join("out.csv"), n as u64, Duration::from_secs(1800));
    std::thread::sleep(Duration::from_secs(5));
    let (rss_after, hwm) = rss_kib(pid);
    stop(child);
    (took.as_secs_f64(), hwm, rss_after)
}

/// Starts the daemon and waits until its CSV exists (it is ready to record).
fn start(cfg: &Path, dir: &Path) -> Child {
    proc::start(BIN, cfg, dir, "warn")
}

/// CPU seconds (user + system) of the children waited for so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn attack(i: usize) -> String {
    format!(
        "Nov 22 08:01:04 mx postfix/submission/smtpd[77]: warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=u{i}\n"
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let lines: usize = env_or("MLS_BENCH_LINES", 10_000);
    let mb: u64 = env_or("MLS_BENCH_MB", 200);

    // 1. Latency.
    let dir = fresh_dir("daemon-latency");
    let log = dir.join("mail.log");
    std::fs::write(
        &log,
        "Nov 22 08:00:00 mx postfix/master[1]: daemon started\n",
    )
    .unwrap();
    let cfg = config(&dir, &log);
    let child = start(&cfg, &dir);
    let pid = child.id();
    let out = dir.join("out.csv");
    std::thread::sleep(Duration::from_millis(300));
    let writer_log = log.clone();
    let writer = std::thread::spawn(move || {
        let mut f = OpenOptions::new().append(true).open(&writer_log).unwrap();
        rows::paced(lines, |i| {
            f.write_all(attack(i).as_bytes()).unwrap();
        })
    });
    // The reader follows the CSV and notes when each row arrives.
    let arrived = rows::follow_rows(&out, lines, Duration::from_secs(120));
    let sent = writer.join().unwrap();
    let seen = arrived.iter().filter(|a| a.is_some()).count();
    assert_eq!(seen, lines, "every row arrived");
    let mut lat: Vec<Duration> = sent
        .iter()
        .zip(&arrived)
        .map(|(s, a)| a.unwrap().duration_since(*s))
        .collect();
    lat.sort();
    let (median, p99, max) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        *lat.last().unwrap(),
    );

    // 2. Idle CPU and memory.
    std::thread::sleep(Duration::from_secs(1));
    let idle_secs = 10;
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle_ticks = cpu_ticks(pid) - t0;
    let (rss_idle, hwm_latency) = rss_kib(pid);
    stop(child);

    // 2b. Idle beside a rotated history.
    let (idle_rotated_pct, idle_rotated_ticks) = idle_beside_rotations(idle_secs);

    // 2c. Catching up a backlog of failures from distinct addresses, reverse DNS off and on.
    let catchup: usize = env_or("MLS_BENCH_CATCHUP", 1_000_000);
    let (catch_secs, catch_hwm, catch_after) = catch_up(catchup, None);
    let dns = dns_server::DnsServer::start(dns_server::Zone::default());
    let (catch_dns_secs, catch_dns_hwm, catch_dns_after) = catch_up(catchup, Some(&dns));
    drop(dns);

    // 3. Sustained throughput: the live file grows at full speed.
    let dir = fresh_dir("daemon-throughput");
    let log = dir.join("mail.log");
    let spec = loggen::Spec {
        bytes: mb * 1_000_000,
        failures_per_10k: 100,
        attacker_ips: 5000,
        seed: 42,
        dovecot: false,
    };
    let source = dir.join("source.log");
    let generated = {
        let mut f = std::io::BufWriter::new(File::create(&source).unwrap());
        let g = loggen::generate(&spec, &mut f).unwrap();
        f.flush().unwrap();
        g
    };
    let size = std::fs::metadata(&source).unwrap().len();
    // Baseline: scan on the same bytes (from the page cache).
    let mut warm = Vec::new();
    File::open(&source).unwrap().read_to_end(&mut warm).unwrap();
    let scan_cpu_before = children_cpu();
    let t = Instant::now();
    let ok = Command::new(BIN)
        .args(["scan", "--no-enrich", "-o", "/dev/null"])
        .arg(&source)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let scan_time = t.elapsed();
    let scan_cpu = children_cpu() - scan_cpu_before;

    std::fs::write(
        &log,
        &warm[..warm.iter().position(|&b| b == b'\n').unwrap() + 1],
    )
    .unwrap();
    let cfg = config(&dir, &log);
    let child = start(&cfg, &dir);
    let pid = child.id();
    let out = dir.join("out.csv");
    let daemon_cpu_before = cpu_ticks(pid);
    let t = Instant::now();
    {
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        let body = &warm[warm.iter().position(|&b| b == b'\n').unwrap() + 1..];
        for chunk in body.chunks(256 * 1024) {
            f.write_all(chunk).unwrap();
        }
    }
    let append_time = t.elapsed();
    // Done when every failure is a row (the generator counted them).
    let want_rows = generated.failures;
    let mut csv = File::open(&out).unwrap();
    let mut rows = 0u64;
    let mut scanned = 0u64;
    loop {
        csv.seek(SeekFrom::Start(scanned)).unwrap();
        let mut tail = Vec::new();
        csv.read_to_end(&mut tail).unwrap();
        scanned += tail.len() as u64;
        rows += tail.iter().filter(|&&b| b == b'\n').count() as u64;
        if rows > want_rows {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let follow_time = t.elapsed();
    let daemon_cpu = (cpu_ticks(pid) - daemon_cpu_before) as f64 / 100.0;
    let (_, hwm_load) = rss_kib(pid);
    stop(child);

    let mbs = |d: Duration| size as f64 / 1e6 / d.as_secs_f64();
    println!(
        "daemon benchmark ({lines} lines for latency, {:.0} MB for throughput)",
        size as f64 / 1e6
    );
    println!();
    println!("| measure | value | baseline in the same run |");
    println!("|---|---|---|");
    println!(
        "| latency append -> row, median | {:.2} ms | |",
        median.as_secs_f64() * 1e3
    );
    println!(
        "| latency append -> row, p99 | {:.2} ms | goal < 50 ms |",
        p99.as_secs_f64() * 1e3
    );
    println!(
        "| latency append -> row, max | {:.2} ms | |",
        max.as_secs_f64() * 1e3
    );
    println!(
        "| following a file growing at full speed: wall time until the last row | {:.3} s ({:.0} MB/s) | the writer alone took {:.3} s: the daemon finished {:.0} ms after it |",
        follow_time.as_secs_f64(),
        mbs(follow_time),
        append_time.as_secs_f64(),
        (follow_time.as_secs_f64() - append_time.as_secs_f64()) * 1e3
    );
    println!(
        "| daemon CPU time for those {:.0} MB | {:.2} s ({:.0} MB per CPU-second) | `scan` of the same file: {:.2} s CPU, {:.3} s wall ({:.0} MB/s); ratio {:.2}x (goal <= 2x) |",
        size as f64 / 1e6,
        daemon_cpu,
        size as f64 / 1e6 / daemon_cpu.max(0.01),
        scan_cpu,
        scan_time.as_secs_f64(),
        mbs(scan_time),
        daemon_cpu / scan_cpu.max(0.001)
    );
    let ticks_per_sec = 100.0;
    println!(
        "| CPU while idle | {:.2}% ({} ticks in {idle_secs} s) | goal ~0% |",
        idle_ticks as f64 / ticks_per_sec / idle_secs as f64 * 100.0,
        idle_ticks
    );
    println!(
        "| CPU while idle beside mail.log.1 .. mail.log.4.gz | {:.2}% ({} ticks in {idle_secs} s) | a lone file: {:.2}%; goal < 0.5% |",
        idle_rotated_pct,
        idle_rotated_ticks,
        idle_ticks as f64 / ticks_per_sec / idle_secs as f64 * 100.0
    );
    println!(
        "| RSS idle after the latency run | {:.1} MB | goal < 20 MB |",
        rss_idle as f64 / 1024.0
    );
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "| catching up {catchup} failures from distinct addresses, reverse DNS off: peak RSS / RSS after | {:.1} MB / {:.1} MB ({:.1} s) | idle: {:.1} MB; goal peak < 64 MB |",
        mib(catch_hwm),
        mib(catch_after),
        catch_secs,
        mib(rss_idle)
    );
    println!(
        "| the same, reverse DNS on (loopback server, every address NXDOMAIN): peak RSS / RSS after | {:.1} MB / {:.1} MB ({:.1} s) | idle: {:.1} MB; goal peak < 64 MB |",
        mib(catch_dns_hwm),
        mib(catch_dns_after),
        catch_dns_secs,
        mib(rss_idle)
    );
    println!(
        "| peak RSS, latency run | {:.1} MB | |",
        hwm_latency as f64 / 1024.0
    );
    println!(
        "| peak RSS, throughput run | {:.1} MB | |",
        hwm_load as f64 / 1024.0
    );
    println!(
        "({} rows expected in the throughput run, {} generated lines)",
        want_rows, generated.lines
    );
}
