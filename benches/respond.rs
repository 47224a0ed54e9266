//! The responder's figures, beside Debian's fail2ban measured in the same run:
//! - latency from a failure line appended to the log to its address in the nftables set
//!   (`nft monitor` timestamps each element as the kernel adds it): 1,000 attackers, one
//!   every 20 ms (each writes its `max` = 3 failures at once), p50/p99;
//! - 10,000 attackers appended at once: time until the last is in the set;
//! - 100,000 bans running: the daemon's resident memory, and its CPU while idle for 10 s.
//!
//! fail2ban runs the `postfix-sasl` jail (filter `postfix[mode=auth]`), `banaction =
//! nftables-multiport`, the pyinotify backend, `maxretry = 3`, on the same kind of log file.
//! Both run in a network namespace of their own, so the host's firewall is never touched.
//! Addresses come from 198.18.0.0/15 (set aside for benchmarks, RFC 2544).
//!
//! Run as root with `cargo bench --bench respond` (`MLS_BENCH_ATTACKERS` default 1000,
//! `MLS_BENCH_BURST` 10000, `MLS_BENCH_ACTIVE` 100000; `MLS_BENCH_F2B=0` leaves fail2ban out).

#[path = "support/peak.rs"]
#[allow(dead_code)]
mod peak;

#[path = "support/proc.rs"]
#[allow(dead_code)]
mod proc;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_maillogsentinel");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A network namespace, removed when dropped.
struct Ns(String);

impl Ns {
    fn new(name: &str) -> Ns {
        let n = format!("{name}{}", std::process::id());
        assert!(
            sh(&["ip", "netns", "add", &n]),
            "ip netns add (run as root)"
        );
        assert!(sh(&["ip", "-n", &n, "link", "set", "lo", "up"]));
        Ns(n)
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]).env("TZ", "UTC");
        c
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        sh(&["ip", "netns", "del", &self.0]);
    }
}

/// The `i`th attacker, in 198.18.0.0/15.
fn addr(i: usize) -> String {
    format!("198.{}.{}.{}", 18 + i / 65536, (i / 256) % 256, i % 256)
}

/// `max` failures of `ip`, stamped now (classic syslog, UTC).
fn failures(ip: &str, max: usize) -> String {
    let stamp = chrono::Utc::now().format("%b %e %H:%M:%S");
    let mut s = String::new();
    for _ in 0..max {
        s.push_str(&format!(
            "{stamp} mx postfix/smtpd[77]: warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n"
        ));
    }
    s
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// `nft monitor` in `ns`: each address as it is added to a set, with when it was seen.
fn monitor(ns: &Ns) -> (Child, mpsc::Receiver<(Instant, String)>) {
    let mut child = ns
        .cmd("nft")
        .args(["monitor", "elements"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            if !line.starts_with("add element") {
                continue;
            }
            let Some(open) = line.find('{') else { continue };
            let inner = line[open + 1..].trim_end_matches('}');
            for item in inner.split(',') {
                if let Some(a) = item.split_whitespace().next() {
                    let _ = tx.send((at, a.to_string()));
                }
            }
        }
    });
    // `nft monitor` subscribes before it prints anything; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    (child, rx)
}

/// Waits until every address of `want` was added (or `limit` passes); when each was.
fn collect(
    rx: &mpsc::Receiver<(Instant, String)>,
    want: usize,
    limit: Duration,
    seen: &mut HashMap<String, Instant>,
) {
    let end = Instant::now() + limit;
    while seen.len() < want {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok((at, a)) => {
                seen.entry(a).or_insert(at);
            }
            Err(_) => break,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Appends `n` attackers, one every 20 ms, and returns each one's latency (sorted) and how
/// many were never banned within 30 s of the last.
fn latency_run(
    log: &Path,
    rx: &mpsc::Receiver<(Instant, String)>,
    first: usize,
    n: usize,
) -> (Vec<Duration>, usize) {
    let mut sent = Vec::with_capacity(n);
    let mut seen = HashMap::new();
    for i in first..first + n {
        let ip = addr(i);
        let text = failures(&ip, 3);
        let t = Instant::now();
        append(log, &text);
        sent.push((ip, t));
        while let Ok((at, a)) = rx.try_recv() {
            seen.entry(a).or_insert(at);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    collect(rx, n, Duration::from_secs(30), &mut seen);
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|(ip, t)| seen.get(ip).map(|at| at.saturating_duration_since(*t)))
        .collect();
    lat.sort();
    let missed = n - lat.len();
    (lat, missed)
}

/// Appends `n` attackers at once; time until the last was banned, and how many were.
fn burst(
    log: &Path,
    rx: &mpsc::Receiver<(Instant, String)>,
    first: usize,
    n: usize,
    limit: Duration,
) -> (Duration, usize) {
    let mut text = String::with_capacity(n * 3 * 110);
    for i in first..first + n {
        text.push_str(&failures(&addr(i), 3));
    }
    let t = Instant::now();
    append(log, &text);
    let mut seen = HashMap::new();
    collect(rx, n, limit, &mut seen);
    let last = seen.values().max().map_or(limit, |at| at.duration_since(t));
    (last, seen.len())
}

fn maillogsentinel(ns: &Ns, attackers: usize, burst_n: usize, active: usize) {
    let dir = proc::fresh_dir("respond-mls");
    let log = dir.join("mail.log");
    append(&log, "");
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{log}\"]\nstate_dir = \"{d}/state\"\njournal = false\n\
             [output]\ncsv = \"{d}/out.csv\"\n\
             [enrich]\nreverse_dns = false\ncountry_db = \"\"\nasn_db = \"\"\n\
             [response]\nenabled = true\nports = [25]\nmax_bans = 200000\n\
             [[response.rule]]\nname = \"per-address\"\nkey = \"ip\"\nmax = 3\nwindow = \"10m\"\nban = \"1h\"\n",
            log = log.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    let mut daemon = ns
        .cmd(BIN)
        .args(["run", "-c", cfg.to_str().unwrap()])
        .env("MAILLOGSENTINEL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !std::fs::read_to_string(dir.join("daemon.log"))
        .unwrap_or_default()
        .contains(" running files=")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut mon, rx) = monitor(ns);
    let (lat, missed) = latency_run(&log, &rx, 0, attackers);
    report("maillogsentinel", &lat, missed);
    let (t, n) = burst(&log, &rx, attackers, burst_n, Duration::from_secs(60));
    println!(
        "maillogsentinel: {burst_n} attackers appended at once: {n} banned, the last after {:.3} s",
        t.as_secs_f64()
    );
    // Up to `active` bans running.
    let done = attackers + burst_n;
    if active > done {
        let t0 = Instant::now();
        let mut seen = HashMap::new();
        for chunk_start in (done..active).step_by(10_000) {
            let end = (chunk_start + 10_000).min(active);
            let mut text = String::new();
            for i in chunk_start..end {
                text.push_str(&failures(&addr(i), 3));
            }
            append(&log, &text);
        }
        collect(&rx, active - done, Duration::from_secs(300), &mut seen);
        println!(
            "maillogsentinel: {} more attackers banned in {:.1} s ({} bans running)",
            seen.len(),
            t0.elapsed().as_secs_f64(),
            done + seen.len()
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid = daemon.id();
    let (rss, hwm) = peak::rss_kib(pid);
    let ticks0 = peak::cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(10));
    let ticks = peak::cpu_ticks(pid) - ticks0;
    println!(
        "maillogsentinel with {active} bans running: RSS {:.1} MiB (peak {:.1} MiB), CPU while idle {:.2} % (10 s)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        ticks as f64 / 100.0 / 10.0 * 100.0
    );
    let _ = mon.kill();
    let _ = mon.wait();
    sh(&["kill", "-TERM", &pid.to_string()]);
    let _ = daemon.wait();
}

fn fail2ban(ns: &Ns, attackers: usize) {
    let dir = proc::fresh_dir("respond-f2b");
    let log = dir.join("mail.log");
    append(&log, "");
    let conf = dir.join("conf");
    assert!(sh(&["cp", "-r", "/etc/fail2ban", conf.to_str().unwrap()]));
    for e in std::fs::read_dir(conf.join("jail.d")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::write(
        conf.join("fail2ban.local"),
        format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {d}/f2b.log\nsocket = {d}/f2b.sock\npidfile = {d}/f2b.pid\ndbfile = :memory:\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("jail.local"),
        format!(
            "[DEFAULT]\nbanaction = nftables-multiport\nbackend = pyinotify\n\
             [postfix-sasl]\nenabled = true\nport = smtp\nlogpath = {}\nmaxretry = 3\nfindtime = 10m\nbantime = 1h\n",
            log.display()
        ),
    )
    .unwrap();
    let mut server = ns
        .cmd("fail2ban-server")
        .args(["-f", "-x", "-c", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !std::fs::read_to_string(dir.join("f2b.log"))
        .unwrap_or_default()
        .contains("Jail 'postfix-sasl' started")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "fail2ban did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut mon, rx) = monitor(ns);
    let (lat, missed) = latency_run(&log, &rx, 0, attackers);
    report("fail2ban", &lat, missed);
    let pid = server.id();
    let (rss, _) = peak::rss_kib(pid);
    println!(
        "fail2ban with {} bans running: RSS {:.1} MiB",
        lat.len(),
        rss as f64 / 1024.0
    );
    let _ = mon.kill();
    let _ = mon.wait();
    sh(&["kill", "-TERM", &pid.to_string()]);
    let _ = server.wait();
}

/// What one `nft -f -` transaction costs: 200 of one element each (p50/p99), and one of
/// 10,000 elements: the program start the responder saves by sending its bans over netlink
/// (the figure beside which its own latency reads).
fn nft_cost(ns: &Ns) {
    let run = |script: &str| {
        let t = Instant::now();
        let mut c = ns
            .cmd("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success());
        t.elapsed()
    };
    run("add table inet costbench\nadd set inet costbench s { type ipv4_addr; flags timeout; }\n");
    let mut one: Vec<Duration> = (0..200)
        .map(|i| {
            run(&format!(
                "add element inet costbench s {{ {} timeout 3600s }}\n",
                addr(i)
            ))
        })
        .collect();
    one.sort();
    let many: Vec<String> = (1000..11_000)
        .map(|i| format!("{} timeout 3600s", addr(i)))
        .collect();
    let t = run(&format!(
        "add element inet costbench s {{ {} }}\n",
        many.join(", ")
    ));
    run("delete table inet costbench\n");
    println!(
        "nft -f - (one process per transaction): 1 element p50 {:.2} ms, p99 {:.2} ms; 10,000 elements in one {:.1} ms",
        percentile(&one, 0.5).as_secs_f64() * 1000.0,
        percentile(&one, 0.99).as_secs_f64() * 1000.0,
        t.as_secs_f64() * 1000.0
    );
}

fn report(who: &str, lat: &[Duration], missed: usize) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{who}: {} bans, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
        lat.len(),
        ms(percentile(lat, 0.5)),
        ms(percentile(lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
        if missed > 0 {
            format!(" ({missed} never banned within 30 s)")
        } else {
            String::new()
        }
    );
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        println!("respond bench: skipped (needs root for network namespaces and nftables)");
        return;
    }
    let attackers = env_or("MLS_BENCH_ATTACKERS", 1000usize);
    let burst_n = env_or("MLS_BENCH_BURST", 10_000usize);
    let active = env_or("MLS_BENCH_ACTIVE", 100_000usize);
    {
        let ns = Ns::new("mlsbench");
        nft_cost(&ns);
        maillogsentinel(&ns, attackers, burst_n, active);
    }
    if env_or("MLS_BENCH_F2B", 1u8) == 1 {
        if sh(&["fail2ban-server", "--version"]) {
            let ns = Ns::new("f2bbench");
            fail2ban(&ns, attackers);
        } else {
            println!(
                "fail2ban: skipped (not installed: apt-get install fail2ban python3-pyinotify)"
            );
        }
    }
}
