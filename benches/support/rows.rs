//! Follows a CSV being written and notes when the row of each user `u{i}` arrives: the reader
//! side of the latency benchmarks.

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
