//! A long stored history for the report benches: one failure every [`STEP`] seconds from
//! [`START`], written as a CSV record, into SQLite and into PostgreSQL, the same rows in each.

use std::io::Write;
use std::path::Path;

/// One row every this many seconds: 10,800 rows a day.
pub const STEP: i64 = 8;
/// The first row's time.
pub const START: i64 = 1_750_000_000;

const COUNTRIES: [&str; 7] = ["FR", "DE", "US", "BR", "CN", "RU", "IN"];

/// Writes `rows` rows as an intrusion CSV.
pub fn write_csv(path: &Path, rows: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    f.write_all(b"timestamp,server,service,ip,username,mechanism,reason,client_hostname,reverse_dns,dns_status,country,asn,as_org\r\n").unwrap();
    for i in 0..rows {
        let ts = chrono::DateTime::from_timestamp(START + i as i64 * STEP, 0)
            .unwrap()
            .to_rfc3339();
        let ip = format!(
            "{}.{}.{}.{}",
            1 + i % 200,
            (i / 7) % 256,
            (i / 1753) % 256,
            1 + i % 251
        );
        writeln!(
            f,
            "{ts},mx,postfix/submission/smtpd,{ip},user{}@example.org,LOGIN,(reason unavailable),,host-{}.example.net,ok,{},{},Example AS {}\r",
            i % 5000,
            i % 9000,
            COUNTRIES[(i % 7) as usize],
            64500 + i % 300,
            i % 300
        )
        .unwrap();
    }
    f.flush().unwrap();
}

fn country_case() -> String {
    let arms: String = COUNTRIES
        .iter()
        .enumerate()
        .map(|(n, c)| format!(" WHEN {n} THEN '{c}'"))
        .collect();
    format!("CASE i % 7{arms} END")
}

/// Creates the SQLite store at `db` with the program's own schema (`bin db migrate`, a config
/// in `dir`), then inserts `rows` rows.
pub fn fill_sqlite(db: &Path, rows: u64, bin: &str, dir: &Path) {
    let cfg = dir.join("migrate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nstate_dir = \"{}\"\n[output]\nstore = \"sqlite\"\nsqlite = \"{}\"\n",
            dir.display(),
            db.display()
        ),
    )
    .unwrap();
    let ok = std::process::Command::new(bin)
        .args(["db", "migrate", "-c", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "db migrate");
    let conn = rusqlite::Connection::open(db).unwrap();
    let country = country_case();
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {rows} - 1)
         INSERT INTO events (timestamp, logged, server, service, ip, ip_key, username, mechanism,
                             reason, client_hostname, reverse_dns, dns_status, country, asn, as_org)
         SELECT {START} + i * {STEP},
                strftime('%Y-%m-%dT%H:%M:%S+00:00', {START} + i * {STEP}, 'unixepoch'),
                'mx', 'postfix/submission/smtpd',
                (1 + i % 200) || '.' || ((i / 7) % 256) || '.' || ((i / 1753) % 256) || '.' || (1 + i % 251),
                unhex(printf('04%02x%02x%02x%02x', 1 + i % 200, (i / 7) % 256, (i / 1753) % 256, 1 + i % 251)),
                'user' || (i % 5000) || '@example.org', 'LOGIN', '(reason unavailable)', '',
                'host-' || (i % 9000) || '.example.net', 'ok', {country},
                64500 + i % 300, 'Example AS ' || (i % 300)
         FROM n;
         COMMIT;"
    ))
    .unwrap();
}

/// Inserts `rows` rows into a PostgreSQL store whose schema is in place, spread over
/// `servers` servers (`mx0`, `mx1`, ...).
pub fn fill_postgres(client: &mut postgres::Client, rows: u64, servers: u64) {
    let country = country_case();
    client
        .batch_execute(&format!(
            "INSERT INTO events (timestamp, logged, server, service, ip, username, mechanism,
                                 reason, client_hostname, reverse_dns, dns_status, country, asn, as_org)
             SELECT to_timestamp({START} + i * {STEP}),
                    to_char(to_timestamp({START} + i * {STEP}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"'),
                    CASE WHEN {servers} > 1 THEN 'mx' || (i % {servers}) ELSE 'mx' END,
                    'postfix/submission/smtpd',
                    ((1 + i % 200) || '.' || ((i / 7) % 256) || '.' || ((i / 1753) % 256) || '.' || (1 + i % 251))::inet,
                    'user' || (i % 5000) || '@example.org', 'LOGIN', '(reason unavailable)', '',
                    'host-' || (i % 9000) || '.example.net', 'ok', {country},
                    64500 + i % 300, 'Example AS ' || (i % 300)
             FROM generate_series(0::bigint, {rows} - 1) AS i;
             ANALYZE events;"
        ))
        .unwrap();
}

/// How long `bin report --format json` takes for the window `[from, to)` with `cfg` (the whole
/// process, its output read through a pipe).
pub fn report_time(bin: &str, cfg: &Path, from: i64, to: i64) -> std::time::Duration {
    report_time_as(bin, cfg, from, to, &["--format", "json"])
}

/// Like [`report_time`], with `args` choosing the format (`--format html`, `--full`...).
pub fn report_time_as(
    bin: &str,
    cfg: &Path,
    from: i64,
    to: i64,
    args: &[&str],
) -> std::time::Duration {
    let time = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
    let start = std::time::Instant::now();
    let out = std::process::Command::new(bin)
        .args([
            "report",
            "-c",
            cfg.to_str().unwrap(),
            "--from",
            &time(from),
            "--to",
            &time(to),
        ])
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "report on {}: {}",
        cfg.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// The median of five measures.
pub fn median5(mut f: impl FnMut() -> std::time::Duration) -> std::time::Duration {
    let mut v: Vec<std::time::Duration> = (0..5).map(|_| f()).collect();
    v.sort();
    v[2]
}
