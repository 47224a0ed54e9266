//! Reports: who attacked in a window of time, read from the intrusion CSV, rendered for a
//! terminal, as JSON, or as an email with an HTML part, a chart and the rows attached.
//!
//! Only the window's rows are read ([`index`]), the previous window of the same length too (for
//! the side-by-side change and the "new addresses"), in one pass each ([`summary`]).

pub mod chart;
pub mod index;
pub mod mail;
pub mod render;
pub mod reporter;
pub mod sql;
pub mod state;
pub mod summary;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, Utc};
use flate2::{Compression, write::GzEncoder};

use index::Index;
use summary::{Aggregator, Row, Summary};

/// Where the records a report reads are: the store the configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Records {
    /// CSV files.
    Csv {
        /// The intrusion record.
        failures: PathBuf,
        /// The logins record, when one is kept.
        logins: Option<PathBuf>,
    },
    /// An SQLite database.
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Whether logins are kept in it.
        logins: bool,
    },
    /// A PostgreSQL database.
    Postgres {
        /// How to reach it.
        settings: crate::store::postgres::PgSettings,
        /// Whether logins are kept in it.
        logins: bool,
    },
}

impl Records {
    /// The records the configuration names.
    pub fn of(config: &crate::config::Config) -> Records {
        match config.store {
            crate::store::StoreKind::Csv => Records::Csv {
                failures: config.csv.clone(),
                logins: config.logins.clone(),
            },
            crate::store::StoreKind::Sqlite => Records::Sqlite {
                path: config.sqlite.clone(),
                logins: config.logins.is_some(),
            },
            crate::store::StoreKind::Postgres => Records::Postgres {
                settings: config.postgres.clone().unwrap_or_else(|| {
                    crate::store::postgres::PgSettings {
                        url: String::new(),
                        password_file: None,
                        instance: String::new(),
                    }
                }),
                logins: config.logins.is_some(),
            },
        }
    }
}

/// Attachments larger than this are gzipped.
pub const GZIP_OVER: usize = 1024 * 1024;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The CSV or the index could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A time given on the command line could not be understood.
    #[error("{0}")]
    Time(String),
}

/// A window of time `[from, to)`, seconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, included.
    pub from: i64,
    /// End, excluded.
    pub to: i64,
}

impl Window {
    /// The window of the same length just before this one.
    pub fn previous(&self) -> Window {
        Window {
            from: self.from - (self.to - self.from),
            to: self.from,
        }
    }
}

/// Parses a time: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DD` (local time).
pub fn parse_time(s: &str) -> Result<i64, ReportError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return local(n, s);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return local(d.and_hms_opt(0, 0, 0).expect("midnight"), s);
    }
    Err(ReportError::Time(format!(
        "cannot read the time {s:?}: write 2026-11-22, \"2026-11-22 08:00\" or 2026-11-22T08:00:00+01:00"
    )))
}

fn local(n: NaiveDateTime, s: &str) -> Result<i64, ReportError> {
    crate::parse::timestamp::earliest_local(n)
        .map(|t| t.timestamp())
        .ok_or_else(|| ReportError::Time(format!("{s:?} does not exist in the local time zone")))
}

/// Now, in seconds.
pub fn now() -> i64 {
    Utc::now().timestamp()
}

/// A report's content: the summary and, when asked for, the window's rows as a CSV.
pub struct Report {
    /// The figures.
    pub summary: Summary,
    /// The window's rows with the header (gzip when over [`GZIP_OVER`]), when collected.
    pub rows_csv: Option<Attachment>,
}

/// The rows attached to a report mail.
pub struct Attachment {
    /// File name (`.csv` or `.csv.gz`).
    pub name: String,
    /// Content.
    pub bytes: Vec<u8>,
    /// Rows in it.
    pub rows: u64,
}

/// Which servers' rows a report reads (a fleet's database holds several).
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// Only this server's rows (`report --server`); `None`: every server's.
    pub server: Option<&'a str>,
    /// This host's `[sources] server`: the state directory's records that name no server
    /// (auth-backend failures, Dovecot's verdicts) are this host's, so a report on another
    /// server leaves them out.
    pub this_host: &'a str,
}

impl Scope<'_> {
    /// Whether a row of `server` (as the record holds it) is in the report.
    fn covers(&self, server: &str) -> bool {
        self.server.is_none_or(|s| summary::unguard(server) == s)
    }

    /// Whether this host's state records without a server column belong in the report.
    fn covers_this_host(&self) -> bool {
        self.server.is_none_or(|s| s == self.this_host)
    }
}

/// Builds the report for `window` from the records (and the daemon's state files in
/// `state_dir`), of the servers `scope` says; `with_rows` collects the window's rows for an
/// attachment.
pub fn build(
    records: &Records,
    state_dir: &Path,
    window: Window,
    with_rows: bool,
    scope: Scope<'_>,
) -> Result<Report, ReportError> {
    let mut report = match records {
        Records::Csv { failures, logins } => build_csv(
            failures,
            logins.as_deref(),
            state_dir,
            window,
            with_rows,
            scope,
        ),
        Records::Sqlite { path, logins } => {
            let mut db = crate::store::sqlite::SqliteDb::open(path)?.only_server(scope.server);
            let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            build_sql(
                &mut db, "SQLite", bytes, *logins, state_dir, window, with_rows, scope,
            )
        }
        Records::Postgres { settings, logins } => {
            let mut db = crate::store::postgres::PgDb::open(settings)?.only_server(scope.server);
            let bytes = db.size();
            build_sql(
                &mut db,
                "PostgreSQL",
                bytes,
                *logins,
                state_dir,
                window,
                with_rows,
                scope,
            )
        }
    }?;
    report.summary.server = scope.server.map(str::to_string);
    report.summary.verdict = render::verdict(&report.summary, scope.this_host);
    Ok(report)
}

/// Builds the report from a database (`record` names it, `bytes` is its size).
#[allow(clippy::too_many_arguments)]
fn build_sql(
    db: &mut dyn sql::Db,
    record: &str,
    bytes: u64,
    logins: bool,
    state_dir: &Path,
    window: Window,
    with_rows: bool,
    scope: Scope<'_>,
) -> Result<Report, ReportError> {
    let mut summary = sql::summary(db, window, bytes)?;
    summary.record = record.into();
    let rows_csv = if with_rows {
        let mut rows = RowsOut::new();
        sql::rows_csv(db, window, &mut |raw| rows.push(raw))?;
        Some(rows.finish(window))
    } else {
        None
    };
    state_sections(state_dir, window, scope, &mut summary);
    if logins {
        summary.new_origins = sql::new_origins(db, window)?;
    }
    Ok(Report { summary, rows_csv })
}

/// The sections read from the daemon's state files, whatever the store.
fn state_sections(state_dir: &Path, window: Window, scope: Scope<'_>, summary: &mut Summary) {
    summary.logins_after_failures = logins_after_failures(state_dir, window, scope);
    // The daemon creates the alerts record at its first start.
    summary.logins_watched = crate::state::path(state_dir, crate::state::ALERTS_CSV).exists();
    if scope.covers_this_host() {
        let (n, reasons) = backend_failures(state_dir, window);
        summary.backend_failures = n;
        summary.backend_watched = true;
        summary.backend_reasons = reasons;
        verdicts(state_dir, window, summary);
        summary.bans = bans(state_dir, window);
    }
}

/// The responder's bans in the window, from its record (`None` when it never ran).
fn bans(state_dir: &Path, w: Window) -> Option<summary::BanCounts> {
    use crate::respond::record::{Action, Record};
    let record = Record::new(state_dir);
    if !record.path().exists() {
        return None;
    }
    let mut counts = summary::BanCounts::default();
    match record.read() {
        Ok((rows, _)) => {
            for r in rows
                .iter()
                .filter(|r| r.action == Action::Ban && r.time >= w.from && r.time < w.to)
            {
                if r.mode == crate::respond::Mode::Log {
                    counts.logged += 1;
                } else if r.outcome == "ok" {
                    counts.applied += 1;
                } else {
                    counts.failed += 1;
                }
            }
        }
        Err(e) => {
            // Not "0 bans": not known.
            tracing::warn!("{e}");
            return None;
        }
    }
    Some(counts)
}

/// Builds the report for `window` from `csv`, using (and extending) the index in `state_dir`.
fn build_csv(
    csv: &Path,
    logins: Option<&Path>,
    state_dir: &Path,
    window: Window,
    with_rows: bool,
    scope: Scope<'_>,
) -> Result<Report, ReportError> {
    let read_err = |path: &Path, e: &dyn std::fmt::Display| ReportError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let csv_bytes = std::fs::metadata(csv).map(|m| m.len()).unwrap_or(0);
    let index_path = state_dir.join("report-index.json");
    let mut index = Index::load(&index_path, csv);
    if csv_bytes > 0 {
        index.extend().map_err(|e| read_err(csv, &e))?;
        if state_dir.is_dir() {
            // An index that cannot be saved only costs time next run.
            if let Err(e) = index.save(&index_path) {
                tracing::warn!("cannot save the report index: {e}");
            }
        }
    }
    let mut current = Aggregator::default();
    let mut rows = with_rows.then(RowsOut::new);
    scan_window(csv, &index, window, scope, &mut |row, raw| {
        current.add(row);
        if let Some(r) = rows.as_mut() {
            r.push(raw);
        }
    })
    .map_err(|e| read_err(csv, &e))?;
    let mut previous = Aggregator::light();
    scan_window(csv, &index, window.previous(), scope, &mut |row, _| {
        previous.add(row)
    })
    .map_err(|e| read_err(csv, &e))?;
    let mut summary = current.finish(window.from, window.to, &previous, csv_bytes);
    // The top tables beside the previous period: a second look at it, counting only their keys.
    let mut watch = summary::Watch::of(&summary);
    if !watch.is_empty() {
        scan_window(csv, &index, window.previous(), scope, &mut |row, _| {
            watch.add(row)
        })
        .map_err(|e| read_err(csv, &e))?;
        watch.fill(&mut summary);
    }
    state_sections(state_dir, window, scope, &mut summary);
    if let Some(logins) = logins {
        summary.new_origins =
            new_origins(logins, state_dir, window, scope).map_err(|e| read_err(logins, &e))?;
    }
    let rows_csv = rows.map(|r| r.finish(window));
    Ok(Report { summary, rows_csv })
}

/// Calls `on_row` for each failure in the records with a timestamp in `[from, to)`.
pub fn for_each_row(
    records: &Records,
    state_dir: &Path,
    from: i64,
    to: i64,
    on_row: &mut dyn FnMut(&Row<'_>),
) -> Result<(), ReportError> {
    match records {
        Records::Csv { failures, .. } => for_each_csv_row(failures, state_dir, from, to, on_row),
        Records::Sqlite { path, .. } => {
            if !path.exists() {
                return Ok(());
            }
            let mut db = crate::store::sqlite::SqliteDb::open(path)?;
            sql::for_each_row(&mut db, "events", Window { from, to }, on_row)
        }
        Records::Postgres { settings, .. } => {
            let mut db = crate::store::postgres::PgDb::open(settings)?;
            sql::for_each_row(&mut db, "events", Window { from, to }, on_row)
        }
    }
}

/// Calls `on_row` for each row of `csv` with a timestamp in `[from, to)`, reading through (and
/// extending) the time index in `state_dir`: only the chunks that can hold such rows are read.
fn for_each_csv_row(
    csv: &Path,
    state_dir: &Path,
    from: i64,
    to: i64,
    on_row: &mut dyn FnMut(&Row<'_>),
) -> Result<(), ReportError> {
    let read_err = |e: &dyn std::fmt::Display| ReportError::Read {
        path: csv.to_path_buf(),
        message: e.to_string(),
    };
    let csv_bytes = std::fs::metadata(csv).map(|m| m.len()).unwrap_or(0);
    if csv_bytes == 0 {
        return Ok(());
    }
    let index_path = state_dir.join("report-index.json");
    let mut index = Index::load(&index_path, csv);
    index.extend().map_err(|e| read_err(&e))?;
    if state_dir.is_dir()
        && let Err(e) = index.save(&index_path)
    {
        tracing::warn!("cannot save the report index: {e}");
    }
    scan_window(
        csv,
        &index,
        Window { from, to },
        Scope::default(),
        &mut |row, _| on_row(row),
    )
    .map_err(|e| read_err(&e))
}

/// Dovecot's verdicts the daemon recorded in the window: how many attempts were on existing
/// usernames, how many on unknown ones, and the existing usernames attacked.
fn verdicts(state_dir: &Path, w: Window, summary: &mut Summary) {
    let path = crate::state::path(state_dir, crate::state::VERDICT_LOG);
    let mut known: std::collections::HashMap<String, u64> = Default::default();
    state_rows_in(&path, w, &mut |r| {
        if r.get(3) == Some(b"known") {
            summary.known_user_attempts += 1;
            let user = String::from_utf8_lossy(r.get(2).unwrap_or_default());
            *known
                .entry(summary::unguard(&user).to_string())
                .or_default() += 1;
        } else {
            summary.unknown_user_attempts += 1;
        }
    });
    let mut v = sorted_counts(known);
    v.truncate(20);
    summary.known_usernames = v;
}

/// Calls `on_row` for each record of a headerless state CSV (the daemon's backend and verdict
/// logs) whose first field is a time in the window.
fn state_rows_in(path: &Path, w: Window, on_row: &mut dyn FnMut(&csv::ByteRecord)) {
    let Ok(mut reader) = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
    else {
        return;
    };
    for r in reader.byte_records().flatten() {
        if r.get(0)
            .and_then(index::parse_ts)
            .is_some_and(|ts| ts >= w.from && ts < w.to)
        {
            on_row(&r);
        }
    }
}

/// Counts by key, most first (ties by key).
fn sorted_counts(map: std::collections::HashMap<String, u64>) -> Vec<summary::Count> {
    let mut v: Vec<summary::Count> = map
        .into_iter()
        .map(|(key, count)| summary::Count {
            key,
            count,
            previous: None,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v
}

/// The daemon's alerts (`state_dir/alerts.csv`) in the window, oldest first.
fn logins_after_failures(
    state_dir: &Path,
    w: Window,
    scope: Scope<'_>,
) -> Vec<summary::LoginAfterFailures> {
    let path = crate::state::path(state_dir, crate::state::ALERTS_CSV);
    let Ok(mut reader) = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(&path)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in reader.records().flatten() {
        let Some(ts) = r.get(0).and_then(|t| index::parse_ts(t.as_bytes())) else {
            continue;
        };
        if ts < w.from || ts >= w.to || !scope.covers(r.get(1).unwrap_or_default()) {
            continue;
        }
        let get = |i: usize| summary::unguard(r.get(i).unwrap_or_default()).to_string();
        let num = |i: usize| r.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
        out.push(summary::LoginAfterFailures {
            time: get(0),
            ip: get(3),
            username: get(4),
            signals: get(6),
            address_failures: num(7),
            username_addresses: num(8),
            country: get(11),
            asn: get(12).parse().ok(),
            as_org: get(13),
        });
    }
    out.sort_by(|a, b| a.time.cmp(&b.time));
    out
}

/// How far back a username's usual countries and ASes are looked for.
pub const ORIGIN_HISTORY_SECS: i64 = 30 * 24 * 3600;

/// Logins in the window from a country or AS not seen for their username in the 30 days
/// before (read through the logins record's own time index, `state_dir/logins-index.json`).
fn new_origins(
    logins: &Path,
    state_dir: &Path,
    w: Window,
    scope: Scope<'_>,
) -> Result<Vec<summary::NewOrigin>, String> {
    let bytes = std::fs::metadata(logins).map(|m| m.len()).unwrap_or(0);
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let index_path = state_dir.join("logins-index.json");
    let mut index = Index::load(&index_path, logins);
    index.extend().map_err(|e| e.to_string())?;
    if state_dir.is_dir()
        && let Err(e) = index.save(&index_path)
    {
        tracing::warn!("cannot save the logins index: {e}");
    }
    let before = Window {
        from: w.from - ORIGIN_HISTORY_SECS,
        to: w.from,
    };
    let scan = |window: Window, on_row: &mut dyn FnMut(&Row<'_>)| {
        scan_window(logins, &index, window, scope, &mut |row, _| on_row(row)).map_err(|e| {
            ReportError::Read {
                path: logins.to_path_buf(),
                message: e.to_string(),
            }
        })
    };
    new_origins_from(&mut |on_row| scan(before, on_row), &mut |on_row| {
        scan(w, on_row)
    })
    .map_err(|e| e.to_string())
}

/// A reader of one window's login rows: feeds each to the callback.
type LoginScan<'a> = dyn FnMut(&mut dyn FnMut(&Row<'_>)) -> Result<(), ReportError> + 'a;

/// The new origins, given the logins of the 30 days before the window (`before`) and of the
/// window (`window`), each oldest first.
fn new_origins_from(
    before: &mut LoginScan<'_>,
    window: &mut LoginScan<'_>,
) -> Result<Vec<summary::NewOrigin>, ReportError> {
    use std::collections::{HashMap, HashSet};
    // Each username's countries and ASNs before the window.
    let mut known: HashMap<String, (HashSet<String>, HashSet<String>)> = HashMap::new();
    before(&mut |row| {
        let e = known
            .entry(summary::unguard(row.username).to_string())
            .or_default();
        e.0.insert(row.country.to_string());
        e.1.insert(row.asn.to_string());
    })?;
    let mut out = Vec::new();
    window(&mut |row| {
        let user = summary::unguard(row.username);
        let Some((countries, asns)) = known.get_mut(user) else {
            return;
        };
        let new_country = !row.country.is_empty() && !countries.contains(row.country);
        let new_asn = !row.asn.is_empty() && !asns.contains(row.asn);
        if new_country || new_asn {
            out.push(summary::NewOrigin {
                time: chrono::DateTime::from_timestamp(row.ts, 0)
                    .map(|t| t.with_timezone(&Local).to_rfc3339())
                    .unwrap_or_default(),
                username: user.to_string(),
                ip: row.ip.to_string(),
                country: row.country.to_string(),
                asn: row.asn.parse().ok(),
                as_org: summary::unguard(row.as_org).to_string(),
                new: match (new_country, new_asn) {
                    (true, true) => "country+AS",
                    (true, false) => "country",
                    _ => "AS",
                }
                .into(),
            });
        }
        // Seen now: a second login from there in the window is not new again.
        countries.insert(row.country.to_string());
        asns.insert(row.asn.to_string());
    })?;
    Ok(out)
}

/// Counts the auth-backend failures (and relay login failures) the daemon recorded in the
/// window, by reason.
fn backend_failures(state_dir: &Path, w: Window) -> (u64, Vec<summary::Count>) {
    let path = crate::state::path(state_dir, crate::state::BACKEND_LOG);
    let mut reasons: std::collections::HashMap<String, u64> = Default::default();
    let mut n = 0;
    state_rows_in(&path, w, &mut |r| {
        n += 1;
        *reasons
            .entry(String::from_utf8_lossy(r.get(3).unwrap_or_default()).into_owned())
            .or_default() += 1;
    });
    (n, sorted_counts(reasons))
}

/// Collects raw rows for the attachment: plain up to [`GZIP_OVER`], then gzip.
struct RowsOut {
    plain: Vec<u8>,
    gz: Option<GzEncoder<Vec<u8>>>,
    rows: u64,
}

impl RowsOut {
    fn new() -> Self {
        let mut plain = crate::sink::COLUMNS.join(",").into_bytes();
        plain.extend_from_slice(b"\r\n");
        RowsOut {
            plain,
            gz: None,
            rows: 0,
        }
    }

    fn push(&mut self, raw: &[u8]) {
        self.rows += 1;
        match &mut self.gz {
            Some(gz) => gz.write_all(raw).expect("writing to memory"),
            None => {
                self.plain.extend_from_slice(raw);
                if self.plain.len() > GZIP_OVER {
                    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
                    gz.write_all(&self.plain).expect("writing to memory");
                    self.plain = Vec::new();
                    self.gz = Some(gz);
                }
            }
        }
    }

    fn finish(self, w: Window) -> Attachment {
        let day = |t: i64| {
            DateTime::from_timestamp(t, 0)
                .map(|d| d.with_timezone(&Local).format("%Y%m%d-%H%M").to_string())
                .unwrap_or_default()
        };
        let base = format!("intrusions-{}-{}", day(w.from), day(w.to));
        match self.gz {
            Some(gz) => Attachment {
                name: format!("{base}.csv.gz"),
                bytes: gz.finish().expect("in memory"),
                rows: self.rows,
            },
            None => Attachment {
                name: format!("{base}.csv"),
                bytes: self.plain,
                rows: self.rows,
            },
        }
    }
}

/// Feeds the rows of `window` to `agg` (and their raw bytes to `rows`), reading only the
/// chunks the index says may hold them.
fn scan_window(
    csv: &Path,
    index: &Index,
    window: Window,
    scope: Scope<'_>,
    on_row: &mut dyn FnMut(&Row<'_>, &[u8]),
) -> std::io::Result<()> {
    let mut file = match std::fs::File::open(csv) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    let mut record = csv::ByteRecord::new();
    for chunk in index.chunks_for(window.from, window.to) {
        buf.clear();
        file.seek(SeekFrom::Start(chunk.offset))?;
        (&mut file).take(chunk.len).read_to_end(&mut buf)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&buf[..]);
        loop {
            let start = reader.position().byte() as usize;
            if !reader.read_byte_record(&mut record).unwrap_or(false) {
                break;
            }
            let Some((start, end)) =
                index::row_span(&buf, start, reader.position().byte() as usize)
            else {
                break;
            };
            let Some(ts) = record.get(0).and_then(index::parse_ts) else {
                continue;
            };
            if ts < window.from || ts >= window.to {
                continue;
            }
            if scope.server.is_some()
                && !scope.covers(&String::from_utf8_lossy(record.get(1).unwrap_or_default()))
            {
                continue;
            }
            // Rows are UTF-8 (the sink writes them so); anything else is read lossily.
            let owned: Vec<std::borrow::Cow<'_, str>> = (0..13)
                .map(|i| String::from_utf8_lossy(record.get(i).unwrap_or_default()))
                .collect();
            let row = Row {
                ts,
                server: &owned[1],
                service: &owned[2],
                ip: &owned[3],
                username: &owned[4],
                mechanism: &owned[5],
                client_hostname: &owned[7],
                reverse_dns: &owned[8],
                dns_status: &owned[9],
                country: &owned[10],
                asn: &owned[11],
                as_org: &owned[12],
            };
            on_row(&row, &buf[start..end]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_is_gzipped_over_one_megabyte() {
        let w = Window { from: 0, to: 3600 };
        let mut small = RowsOut::new();
        small.push(b"row\r\n");
        let a = small.finish(w);
        assert!(a.name.ends_with(".csv") && a.bytes.ends_with(b"row\r\n") && a.rows == 1);

        let mut big = RowsOut::new();
        let row = [b'x'; 98]
            .iter()
            .copied()
            .chain(*b"\r\n")
            .collect::<Vec<u8>>();
        for _ in 0..20_000 {
            big.push(&row);
        }
        let a = big.finish(w);
        assert!(a.name.ends_with(".csv.gz"), "{}", a.name);
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&a.bytes[..])
            .read_to_end(&mut text)
            .unwrap();
        assert!(text.starts_with(b"timestamp,server,"));
        assert_eq!(
            text.len(),
            crate::sink::COLUMNS.join(",").len() + 2 + 20_000 * 100
        );
        assert_eq!(a.rows, 20_000);
    }

    #[test]
    fn times_on_the_command_line() {
        assert_eq!(
            parse_time("2026-11-22T08:00:00+01:00").unwrap(),
            1_795_330_800
        );
        assert!(parse_time("2026-11-22").is_ok());
        assert!(parse_time("2026-11-22 08:00").is_ok());
        let e = parse_time("yesterday").unwrap_err().to_string();
        assert!(e.contains("2026-11-22"), "{e}");
        let w = Window { from: 100, to: 160 };
        assert_eq!(w.previous(), Window { from: 40, to: 100 });
    }
}
