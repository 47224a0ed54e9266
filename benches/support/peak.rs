//! Runs a command and watches its peak resident memory.
//!
//! `wait4`'s `ru_maxrss` cannot be used for this: a child started with `posix_spawn`/`vfork`
//! shares (and is charged) its parent's memory until it calls exec, so a large benchmark
//! process shows up in every child's figure. `VmHWM` in `/proc/PID/status` belongs to the
//! process's own address space after exec; it is polled every 2 ms until the process exits,
//! so growth in its last 2 ms may be missed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Wall time, exit success and peak RSS (KiB) of `argv`, stdout to /dev/null unless `pipe`.
pub fn run(argv: &[&str], pipe: bool) -> (Duration, bool, u64) {
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
    if let Some(d) = drain {
        let _ = d.join();
    }
    (elapsed, status.success(), peak)
}
