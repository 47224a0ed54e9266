//! Runs a command and watches its peak resident memory; reads a running process's CPU time
//! and memory from /proc.
//!
//! `wait4`'s `ru_maxrss` cannot be used for this: a child started with `posix_spawn`/`vfork`
//! shares (and is charged) its parent's memory until it calls exec, so a large benchmark
//! process shows up in every child's figure. `VmHWM` in `/proc/PID/status` belongs to the
//! process's own address space after exec; it is polled every 2 ms until the process exits,
//! so growth in its last 2 ms may be missed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// CPU time (user + system) of this process's children that have been waited for.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct it is given, which is a plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Wall time, exit success and peak RSS (KiB) of `argv`, stdout to /dev/null unless `pipe`.
#[allow(dead_code)]
pub fn run(argv: &[&str], pipe: bool) -> (Duration, bool, u64) {
    let (wall, _, ok, peak) = run_cpu(argv, pipe);
    (wall, ok, peak)
}

/// Wall time, CPU time (user + system, all its threads), exit success and peak RSS (KiB) of
/// `argv`, stdout to /dev/null unless `pipe`.
pub fn run_cpu(argv: &[&str], pipe: bool) -> (Duration, Duration, bool, u64) {
    let cpu_before = children_cpu();
    let start = Instant::now();
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(if pipe { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let drain = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        })
    });
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kb) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    let cpu = children_cpu() - cpu_before;
    if let Some(d) = drain {
        let _ = d.join();
    }
    (elapsed, cpu, status.success(), peak)
}

/// Median wall time and largest peak RSS of repeated runs.
#[allow(dead_code)]
pub struct Measured {
    /// Median wall time.
    pub median: Duration,
    /// Median CPU time (user + system, all threads).
    pub median_cpu: Duration,
    /// Largest peak RSS, KiB.
    pub max_rss_kb: u64,
}

/// Runs `argv` `runs` times (stdout drained through a pipe when `pipe`, else to /dev/null).
#[allow(dead_code)]
pub fn measure_with(runs: usize, argv: &[&str], pipe: bool) -> Measured {
    let mut times = Vec::with_capacity(runs);
    let mut cpus = Vec::with_capacity(runs);
    let mut max_rss_kb = 0;
    for _ in 0..runs {
        let (t, cpu, ok, rss) = run_cpu(argv, pipe);
        assert!(ok, "{argv:?} failed");
        times.push(t);
        cpus.push(cpu);
        max_rss_kb = max_rss_kb.max(rss);
    }
    times.sort();
    cpus.sort();
    Measured {
        median: times[times.len() / 2],
        median_cpu: cpus[cpus.len() / 2],
        max_rss_kb,
    }
}

/// utime+stime of a process, in clock ticks.
#[allow(dead_code)]
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// (VmRSS, VmHWM) of a process, in KiB.
#[allow(dead_code)]
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let get = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    };
    (get("VmRSS:"), get("VmHWM:"))
}
