//! The stores side by side, each beside the CSV store measured in the same run:
//! - backfill: the daemon's first start reading a generated log's history (failures and
//!   logins, no enrichment) into CSV, SQLite and a local PostgreSQL; wall time from start
//!   until every row is committed, rows per second, and the ratio to CSV;
//! - reports: `report --format json` for a 24 h window (10,800 rows) out of a history of
//!   5,000,000 stored events (the report bench's history, one row every 8 s), the whole
//!   process, median of 5: CSV (its index already built), SQLite, PostgreSQL, and PostgreSQL
//!   with the same events from 5 servers.
//!
//! Run with `cargo bench --bench store` (`MLS_BENCH_MB`, default 200; `MLS_BENCH_EVENTS`,
//! default 5,000,000). PostgreSQL parts need the postgresql package (a throwaway cluster is
//! started under target/bench-data); without it they say so and are skipped.

#[path = "support/proc.rs"]
#[allow(dead_code)]
mod proc;

#[path = "support/loggen.rs"]
#[allow(dead_code)]
mod loggen;

#[path = "support/history.rs"]
mod history;

#[path = "../tests/it/pg_server.rs"]
#[allow(dead_code)]
mod pg_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use history::{START, STEP};
use pg_server::PgCluster;

const BIN: &str = env!("CARGO_BIN_EXE_maillogsentinel");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where a run keeps its records.
#[derive(Clone)]
enum Target {
    Csv,
    Sqlite,
    Postgres(String),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Csv => "CSV",
            Target::Sqlite => "SQLite",
            Target::Postgres(_) => "PostgreSQL",
        }
    }

    fn output(&self, dir: &Path) -> String {
        match self {
            Target::Csv => String::new(),
            Target::Sqlite => format!(
                "store = \"sqlite\"\nsqlite = \"{}/events.db\"\n",
                dir.display()
            ),
            Target::Postgres(url) => {
                format!("store = \"postgres\"\npostgres = \"{url}\"\ninstance = \"bench\"\n")
            }
        }
    }
}

fn config(dir: &Path, log: &Path, target: &Target) -> PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{}\"]\nstate_dir = \"{d}/state\"\njournal = false\nbackfill = true\n[daemon]\nstats_interval = \"0s\"\n[output]\ncsv = \"{d}/out.csv\"\n{}[enrich]\nreverse_dns = false\ncountry_db = \"\"\nasn_db = \"\"\n",
            log.display(),
            target.output(dir),
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    cfg
}

/// Rows committed so far (failures, logins).
fn committed(dir: &Path, target: &Target, pg: Option<&PgCluster>) -> (u64, u64) {
    match target {
        Target::Csv => {
            let count = |p: PathBuf| {
                std::fs::read(p)
                    .map(|b| bytecount::count(&b, b'\n').saturating_sub(1) as u64)
                    .unwrap_or(0)
            };
            (count(dir.join("out.csv")), count(dir.join("logins.csv")))
        }
        Target::Sqlite => {
            let Ok(conn) = rusqlite::Connection::open_with_flags(
                dir.join("events.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            ) else {
                return (0, 0);
            };
            let _ = conn.busy_timeout(Duration::from_secs(5));
            let n = |t: &str| {
                conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap_or(0) as u64
            };
            (n("events"), n("logins"))
        }
        Target::Postgres(_) => {
            let mut c = pg.unwrap().client("backfill");
            let mut n = |t: &str| {
                c.query_one(&format!("SELECT COUNT(*) FROM {t}"), &[])
                    .map(|r| r.get::<_, i64>(0) as u64)
                    .unwrap_or(0)
            };
            (n("events"), n("logins"))
        }
    }
}

/// The daemon's backfill of `log` into `target`: seconds until every row is committed.
fn backfill(log: &Path, want: (u64, u64), target: &Target, pg: Option<&PgCluster>) -> Duration {
    let dir = proc::fresh_dir(&format!("store-backfill-{}", target.name()));
    let cfg = config(&dir, log, target);
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(["run", "-c", cfg.to_str().unwrap()])
        .env("MAILLOGSENTINEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{}: the daemon ended ({status}): {}",
                target.name(),
                std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
            );
        }
        let got = committed(&dir, target, pg);
        if got >= want {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "{}: {got:?} of {want:?}",
            target.name()
        );
    }
    let took = start.elapsed();
    proc::stop(child);
    took
}

fn report(cfg: &Path, from: i64, to: i64) -> Duration {
    history::report_time(BIN, cfg, from, to)
}

fn median(f: impl FnMut() -> Duration) -> Duration {
    history::median5(f)
}

/// A config reading nothing, reporting from `target`.
fn report_config(dir: &Path, csv: &Path, target: &Target) -> PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nstate_dir = \"{}/state\"\n[output]\ncsv = \"{}\"\n{}",
            dir.display(),
            csv.display(),
            target.output(dir)
        ),
    )
    .unwrap();
    cfg
}

fn main() {
    let mb: u64 = env_or("MLS_BENCH_MB", 200);
    let events: u64 = env_or("MLS_BENCH_EVENTS", 5_000_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&root).unwrap();
    let pg = PgCluster::start();
    if pg.is_none() {
        eprintln!("PostgreSQL parts skipped: no PostgreSQL installed");
    }

    // Backfill.
    let (log, g) = loggen::ensure_log(
        &root,
        &loggen::Spec {
            bytes: mb * 1_000_000,
            failures_per_10k: 1500,
            attacker_ips: 50_000,
            seed: 7,
            dovecot: true,
        },
    );
    loggen::warm(&log);
    let want = (g.failures, g.logins);
    let mut targets = vec![Target::Csv, Target::Sqlite];
    if let Some(pg) = &pg {
        targets.push(Target::Postgres(pg.create_db("backfill")));
    }
    let mut rows = Vec::new();
    for t in &targets {
        let took = backfill(&log, want, t, pg.as_ref());
        rows.push((t.name(), took));
    }
    let csv_rate = (g.failures + g.logins) as f64 / rows[0].1.as_secs_f64();
    println!(
        "backfill of a {mb} MB log ({} lines, {} failures, {} logins), no enrichment:\n",
        g.lines, g.failures, g.logins
    );
    println!("| store | wall | rows/s | time vs CSV |");
    println!("|---|---|---|---|");
    for (name, took) in &rows {
        let rate = (g.failures + g.logins) as f64 / took.as_secs_f64();
        println!(
            "| {name} | {:.2} s | {:.0} | {:.2}x |",
            took.as_secs_f64(),
            rate,
            csv_rate / rate
        );
    }

    // Reports over a long history.
    let dir = proc::fresh_dir("store-report");
    let csv = dir.join("intrusions.csv");
    history::write_csv(&csv, events);
    let end = START + events as i64 * STEP;
    let (from, to) = (end - 86_400, end);
    let mut results = Vec::new();
    let csv_cfg = report_config(&dir.join("csv"), &csv, &Target::Csv);
    report(&csv_cfg, from, to); // builds the index, once
    results.push(("CSV".to_string(), median(|| report(&csv_cfg, from, to))));
    let sdir = dir.join("sqlite");
    std::fs::create_dir_all(&sdir).unwrap();
    let started = Instant::now();
    history::fill_sqlite(&sdir.join("events.db"), events, BIN, &sdir);
    eprintln!(
        "SQLite history written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let scfg = report_config(&sdir, &csv, &Target::Sqlite);
    results.push(("SQLite".to_string(), median(|| report(&scfg, from, to))));
    if let Some(pg) = &pg {
        for servers in [1, 5] {
            let name = format!("history{servers}");
            let url = pg.create_db(&name);
            let pdir = dir.join(&name);
            std::fs::create_dir_all(&pdir).unwrap();
            let pcfg = report_config(&pdir, &csv, &Target::Postgres(url));
            // The schema, by the program itself.
            let ok = Command::new(BIN)
                .args(["db", "migrate", "-c", pcfg.to_str().unwrap()])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok);
            let started = Instant::now();
            history::fill_postgres(&mut pg.client(&name), events, servers);
            eprintln!(
                "PostgreSQL history ({servers} servers) written in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            results.push((
                format!(
                    "PostgreSQL, {servers} server{}",
                    if servers > 1 { "s" } else { "" }
                ),
                median(|| report(&pcfg, from, to)),
            ));
        }
    }
    println!(
        "\n`report --format json` for a 24 h window ({} rows) out of {events} stored events, median of 5:\n",
        86_400 / STEP
    );
    println!("| store | report | vs CSV |");
    println!("|---|---|---|");
    let base = results[0].1;
    for (name, d) in &results {
        println!(
            "| {name} | {:.0} ms | {:.2}x |",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() / base.as_secs_f64()
        );
    }
}
