//! The stores side by side, each beside the CSV store measured in the same run:
//! - backfill: the daemon's first start reading a generated log's history (failures and
//!   logins, no enrichment) into CSV, SQLite and a local PostgreSQL; wall time from start
//!   until every row is committed, rows per second, and the ratio to CSV; the CPU time of
//!   the daemon and of PostgreSQL's server processes serving it, and what that CPU time allows at best
//!   (spread over every core, nothing waiting) against the CSV's wall time;
//! - reports: `report --format json` for a 24 h window (10,800 rows) out of a history of
//!   5,000,000 stored events (the report bench's history, one row every 8 s), the whole
//!   process, median of 5: CSV (its index already built), SQLite, PostgreSQL, and PostgreSQL
//!   with the same events from 5 servers.
//!
//! Run with `cargo bench --bench store` (`MLS_BENCH_MB`, default 200; `MLS_BENCH_EVENTS`,
//! default 5,000,000; `MLS_BENCH_ROUNDS`, default 1, backfills of every store in turn;
//! `MLS_BENCH_PARTS=backfill` leaves out the reports; `MLS_BENCH_STORES=sqlite` or
//! `postgresql` backfills only that one beside the CSV; `MLS_BENCH_BIN` measures another
//! build of the daemon). PostgreSQL parts need the
//! postgresql package (a throwaway cluster is started under target/bench-data); without it
//! they say so and are skipped.

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

/// The daemon measured: this build's, or `MLS_BENCH_BIN` (another build, to compare two
/// versions in alternating runs of this bench).
fn bin() -> String {
    std::env::var("MLS_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_maillogsentinel").to_string())
}

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

/// Rows committed so far (failures, logins), asked cheaply enough to be asked every 20 ms
/// without slowing what is measured (no `COUNT(*)` scanning a growing table, no CSV read again
/// from its start): the newest row id in the SQL tables (one writer, no rolled-back rows, so
/// it is the count; checked with `COUNT(*)` once done), the CSV files' lines counted from where
/// the last look stopped.
struct Watch {
    csv: [(u64, u64); 2],
    /// One connection for all the looks (not one per look).
    pg: Option<postgres::Client>,
}

impl Watch {
    fn new(pg: Option<&PgCluster>) -> Self {
        Watch {
            csv: [(0, 0); 2],
            pg: pg.map(|pg| pg.client("backfill")),
        }
    }

    fn committed(&mut self, dir: &Path, target: &Target) -> (u64, u64) {
        match target {
            Target::Csv => {
                let mut count = |i: usize, p: PathBuf| {
                    use std::io::{Read, Seek, SeekFrom};
                    let (offset, lines) = &mut self.csv[i];
                    if let Ok(mut f) = std::fs::File::open(p) {
                        let mut buf = Vec::new();
                        if f.seek(SeekFrom::Start(*offset)).is_ok()
                            && f.read_to_end(&mut buf).is_ok()
                        {
                            *offset += buf.len() as u64;
                            *lines += bytecount::count(&buf, b'\n') as u64;
                        }
                    }
                    lines.saturating_sub(1)
                };
                (
                    count(0, dir.join("out.csv")),
                    count(1, dir.join("logins.csv")),
                )
            }
            Target::Sqlite => sqlite_rows(dir, "MAX(id)"),
            Target::Postgres(_) => postgres_rows(self.pg.as_mut().unwrap(), "MAX(id)"),
        }
    }

    /// The exact count, once done.
    fn exact(&mut self, dir: &Path, target: &Target) -> (u64, u64) {
        match target {
            Target::Csv => self.committed(dir, target),
            Target::Sqlite => sqlite_rows(dir, "COUNT(*)"),
            Target::Postgres(_) => postgres_rows(self.pg.as_mut().unwrap(), "COUNT(*)"),
        }
    }
}

/// `what` (an aggregate) of the SQLite store's events and logins.
fn sqlite_rows(dir: &Path, what: &str) -> (u64, u64) {
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        dir.join("events.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return (0, 0);
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let n = |t: &str| {
        conn.query_row(&format!("SELECT COALESCE({what}, 0) FROM {t}"), [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_or(0) as u64
    };
    (n("events"), n("logins"))
}

/// `what` (an aggregate) of the PostgreSQL store's events and logins.
fn postgres_rows(c: &mut postgres::Client, what: &str) -> (u64, u64) {
    let mut n = |t: &str| {
        c.query_one(&format!("SELECT COALESCE({what}, 0)::bigint FROM {t}"), &[])
            .map(|r| r.get::<_, i64>(0) as u64)
            .unwrap_or(0)
    };
    (n("events"), n("logins"))
}

/// CPU time (user and system) a process used so far, from `/proc/PID/stat` (in clock ticks,
/// 100 a second on Linux).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// One backfill's figures.
struct Backfilled {
    wall: Duration,
    /// The daemon's CPU time, all threads.
    cpu: Duration,
    /// The PostgreSQL server processes serving the daemon's connections.
    server_cpu: Option<Duration>,
}

/// The daemon's backfill of `log` into `target`: time until every row is committed.
fn backfill(log: &Path, want: (u64, u64), target: &Target, pg: Option<&PgCluster>) -> Backfilled {
    let dir = proc::fresh_dir(&format!("store-backfill-{}", target.name()));
    if let (Target::Postgres(_), Some(pg)) = (target, pg) {
        // A fresh database for each run.
        pg.client("postgres")
            .batch_execute("DROP DATABASE IF EXISTS backfill")
            .unwrap();
        pg.create_db("backfill");
    }
    let cfg = config(&dir, log, target);
    let mut watch = Watch::new(pg.filter(|_| matches!(target, Target::Postgres(_))));
    let start = Instant::now();
    let mut child = Command::new(bin())
        .args(["run", "-c", cfg.to_str().unwrap()])
        .env("MAILLOGSENTINEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{}: the daemon ended ({status}): {}",
                target.name(),
                std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
            );
        }
        let got = watch.committed(&dir, target);
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
    let cpu = cpu_of(child.id());
    // (Every connection the daemon holds to the database.)
    let server_cpu = watch.pg.as_mut().map(|c| {
        c.query(
            "SELECT pid FROM pg_stat_activity WHERE datname = 'backfill' AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| cpu_of(r.get::<_, i32>(0) as u32))
        .sum()
    });
    proc::stop(child);
    assert_eq!(
        watch.exact(&dir, target),
        want,
        "{}: rows committed",
        target.name()
    );
    Backfilled {
        wall: took,
        cpu,
        server_cpu,
    }
}

fn report(cfg: &Path, from: i64, to: i64) -> Duration {
    history::report_time(&bin(), cfg, from, to)
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
    let rounds: u32 = env_or("MLS_BENCH_ROUNDS", 1);
    let parts: String = env_or("MLS_BENCH_PARTS", "backfill,report".to_string());
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
        targets.push(Target::Postgres(pg.url("backfill")));
    }
    // (The CSV store always runs first: it is the baseline.)
    let stores: String = env_or("MLS_BENCH_STORES", "csv,sqlite,postgresql".to_string());
    targets.retain(|t| matches!(t, Target::Csv) || stores.contains(&t.name().to_ascii_lowercase()));
    println!(
        "backfill of a {mb} MB log ({} lines, {} failures, {} logins), no enrichment:\n",
        g.lines, g.failures, g.logins
    );
    // What the CPU time allows at best: all of it spread over every core, nothing waiting.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "| run | store | wall | rows/s | time vs CSV | daemon CPU | server CPU | CPU / {cores} cores vs CSV wall |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // Each run measures every store, the CSV first: the ratios are within one run.
    for run in 1..=rounds {
        let mut rows = Vec::new();
        for t in &targets {
            let took = backfill(&log, want, t, pg.as_ref());
            rows.push((t.name(), took));
        }
        let csv_rate = (g.failures + g.logins) as f64 / rows[0].1.wall.as_secs_f64();
        for (name, b) in &rows {
            let rate = (g.failures + g.logins) as f64 / b.wall.as_secs_f64();
            let cpu = b.cpu + b.server_cpu.unwrap_or_default();
            println!(
                "| {run} | {name} | {:.2} s | {:.0} | {:.2}x | {:.2} s | {} | {:.2}x |",
                b.wall.as_secs_f64(),
                rate,
                csv_rate / rate,
                b.cpu.as_secs_f64(),
                b.server_cpu
                    .map_or(String::new(), |c| format!("{:.2} s", c.as_secs_f64())),
                cpu.as_secs_f64() / cores as f64 / rows[0].1.wall.as_secs_f64()
            );
        }
    }
    if !parts.contains("report") {
        return;
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
    history::fill_sqlite(&sdir.join("events.db"), events, &bin(), &sdir);
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
            let ok = Command::new(bin())
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
