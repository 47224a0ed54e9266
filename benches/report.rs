//! Report build time for a window out of a long CSV history: a 10,000-row window out of
//! 5,000,000 rows (and out of 500,000, to show it does not depend on the history's size), and
//! a 1,000,000-row window. Each time is the whole `report --format json` process, median of 5,
//! with the index already built (its one-time build is reported too).
//!
//! Then the same 10,000-row window in each format a person reads (the short and the full
//! text, the HTML with its chart drawn and inlined), as ratios to the JSON in the same run.
//!
//! Run with `cargo bench --bench report` (`MLS_BENCH_ROWS`, default 5,000,000).

#[path = "support/history.rs"]
#[allow(dead_code)]
mod history;

use history::{START, STEP, write_csv};

use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_maillogsentinel");
fn config(dir: &Path, csv: &Path) -> std::path::PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nstate_dir = \"{}/state\"\n[output]\ncsv = \"{}\"\n",
            dir.display(),
            csv.display()
        ),
    )
    .unwrap();
    cfg
}

fn report(cfg: &Path, from: i64, to: i64) -> Duration {
    history::report_time(BIN, cfg, from, to)
}

fn median(f: impl FnMut() -> Duration) -> Duration {
    history::median5(f)
}

fn main() {
    let rows: u64 = std::env::var("MLS_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/report");
    let mut results = Vec::new();
    let mut formats = Vec::new();
    for history in [rows / 10, rows] {
        let dir = root.join(format!("h{history}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("intrusions.csv");
        write_csv(&csv, history);
        let size = std::fs::metadata(&csv).unwrap().len();
        let cfg = config(&dir, &csv);
        let end = START + history as i64 * STEP;
        // The first report builds the index (once for the file's life).
        let first = report(&cfg, end - 10_000 * STEP, end);
        let small = median(|| report(&cfg, end - 10_000 * STEP, end));
        let big = if history >= 1_000_000 {
            Some(median(|| report(&cfg, end - 1_000_000 * STEP, end)))
        } else {
            None
        };
        results.push((history, size, first, small, big));
        if history == rows {
            let (from, to) = (end - 10_000 * STEP, end);
            for (name, args) in [
                ("JSON (baseline)", &["--format", "json"][..]),
                ("text, short (the default)", &["--no-pager"][..]),
                ("text, --full", &["--no-pager", "--full"][..]),
                ("HTML, chart drawn and inlined", &["--format", "html"][..]),
            ] {
                let t = median(|| history::report_time_as(BIN, &cfg, from, to, args));
                formats.push((name, t));
            }
        }
    }
    println!(
        "| history | CSV size | first report (builds the index) | 10,000-row window | 1,000,000-row window |"
    );
    println!("|---|---|---|---|---|");
    for (history, size, first, small, big) in results {
        println!(
            "| {history} rows | {:.0} MB | {:.2} s | **{:.0} ms** | {} |",
            size as f64 / 1e6,
            first.as_secs_f64(),
            small.as_secs_f64() * 1e3,
            big.map_or("-".into(), |b| format!("{:.2} s", b.as_secs_f64()))
        );
    }
    println!("\n| 10,000-row window, {rows} rows of history | time | ratio to JSON |");
    println!("|---|---|---|");
    let base = formats[0].1.as_secs_f64();
    for (name, t) in formats {
        println!(
            "| {name} | {:.0} ms | {:.2} |",
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() / base
        );
    }
}
