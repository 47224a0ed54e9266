//! The two sides of the latency benchmarks: [`paced`] sends one failure of user `u{i}` every
//! millisecond, [`follow_rows`] follows the CSV and notes when each one's row arrives.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Follows the CSV and notes when the row of each `u{i}` arrives.
pub fn follow_rows(out: &Path, lines: usize, limit: Duration) -> Vec<Option<Instant>> {
    let mut arrived = vec![None; lines];
    let mut csv = File::open(out).unwrap();
    let (mut pending, mut buf, mut seen) = (Vec::new(), vec![0u8; 1 << 16], 0);
    let deadline = Instant::now() + limit;
    while seen < lines && Instant::now() < deadline {
        let n = csv.read(&mut buf).unwrap();
        if n == 0 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let now = Instant::now();
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let row: Vec<u8> = pending.drain(..=i).collect();
            let user = String::from_utf8_lossy(&row)
                .split(',')
                .nth(4)
                .and_then(|u| u.strip_prefix('u').map(str::to_string))
                .and_then(|u| u.parse::<usize>().ok());
            if let Some(u) = user
                && u < lines
                && arrived[u].is_none()
            {
                arrived[u] = Some(now);
                seen += 1;
            }
        }
    }
    arrived
}

/// Calls `send(i)` for `i` in `0..lines`, one every millisecond from now, and returns when each
/// call was made.
pub fn paced(lines: usize, mut send: impl FnMut(usize)) -> Vec<Instant> {
    let start = Instant::now();
    let mut sent = Vec::with_capacity(lines);
    for i in 0..lines {
        let due = start + Duration::from_millis(i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sent.push(Instant::now());
        send(i);
    }
    sent
}
