//! The SQLite store: the records and the positions in one database file, committed in one
//! transaction, so a restart finds either the batch and the positions after it, or neither.
//!
//! The database is in WAL mode (reports read while the daemon writes) with `synchronous =
//! FULL` (a commit is on disk when it returns, as the CSV's fsync is: the alerts and the
//! responder act on committed rows only). Its schema is versioned by migrations
//! (`migrations/sqlite/`, applied with refinery at every open and by `maillogsentinel db
//! migrate`); a database made by a newer version is refused, not written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::checkpoint::Pos;
use crate::enrich::Enrichment;
use crate::parse::AuthEvent;
use crate::pipeline::JournalPos;
use crate::source::fingerprint::Fingerprint;

use super::sqlite_checkpoint::{Checkpointer, FALLBACK_PAGES, KEEP_BYTES};
use super::sqlite_insert::{Insert, Rows};
use super::{CrashPoint, Progress, Recovered, Store, StoreError};
use crate::report::sql::{Cell, Db, Dialect, Param};

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// How long a statement waits for a lock another connection holds (a report reading while the
/// daemon commits) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows inserted by one statement (15 parameters each: 960, far below SQLite's limit of
/// 32,766). Measured on a backfill: see docs/benchmarks.md.
const ROWS_PER_INSERT: usize = 64;

/// [`ip_key`] into `out`, returning its length.
pub(super) fn ip_key_into(ip: std::net::IpAddr, out: &mut [u8; 17]) -> usize {
    match ip {
        std::net::IpAddr::V4(a) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&a.octets());
            5
        }
        std::net::IpAddr::V6(a) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&a.octets());
            17
        }
    }
}

/// An address as bytes that sort as PostgreSQL's `inet` does, and as Rust's `IpAddr`: IPv4
/// before IPv6, each in numeric order (the family byte first, then the address).
pub fn ip_key(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(a) => [&[4u8][..], &a.octets()].concat(),
        std::net::IpAddr::V6(a) => [&[6u8][..], &a.octets()].concat(),
    }
}

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    state_dir: PathBuf,
    /// The full-size INSERT of each record, prepared once. Declared before `conn`: fields are
    /// dropped in order, and a statement must be finalized before its connection closes.
    full: BTreeMap<&'static str, Insert>,
    /// Copies the log into the database (`None`: this connection does, SQLite's default).
    /// Declared before `conn` too: the store's connection, closed last, makes the final
    /// checkpoint and removes the log.
    checkpointer: Option<Checkpointer>,
    conn: Connection,
    logins_kept: bool,
    /// Rows staged for `events`.
    failures: Rows,
    /// Rows staged for `logins`.
    logins: Rows,
    crash: Option<CrashPoint>,
}

/// A schema migration's state, for `maillogsentinel db status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// Its version.
    pub version: i64,
    /// Its name.
    pub name: String,
    /// Whether the database has it.
    pub applied: bool,
}

/// Wraps an SQLite error with the database and what was being done.
fn sql_err(path: &Path, what: &str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let what = format!("{}: {what}", path.display());
    move |source| StoreError::Sqlite { what, source }
}

/// Opens (creating it with mode 0640: it names the accounts attacked) the database at `path`,
/// with the settings every connection of this program uses.
pub fn connect(path: &Path) -> Result<Connection, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(StoreError::Sqlite {
            what: format!(
                "{}: the directory {} does not exist (create it, or set output.sqlite)",
                path.display(),
                dir.display()
            ),
            source: rusqlite::Error::InvalidPath(path.to_path_buf()),
        });
    }
    // Created here, not by SQLite (which would use 0644); its -wal and -shm files take the
    // database file's mode.
    if let Err(e) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::sink::csv::FILE_MODE)
        .open(path)
    {
        return Err(StoreError::Sink(crate::sink::SinkError::Io {
            op: "open",
            path: path.to_path_buf(),
            source: e,
        }));
    }
    no_memory_statistics();
    let conn = Connection::open(path).map_err(sql_err(path, "cannot open"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql_err(path, "cannot set the busy timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql_err(path, "cannot switch to WAL mode"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql_err(path, "cannot set synchronous = FULL"))?;
    // Index pages stay in memory between commits (SQLite's default is 2 MB: a backfill then
    // spends its time reading index pages back through the kernel), and reads go through a
    // mapping instead of copies. The mapping is file-backed memory the kernel can drop.
    conn.pragma_update(None, "cache_size", -32_768)
        .map_err(sql_err(path, "cannot set the cache size"))?;
    conn.pragma_update(None, "mmap_size", 268_435_456)
        .map_err(sql_err(path, "cannot set the mapping size"))?;
    Ok(conn)
}

/// Turns off SQLite's memory statistics, once, before this program's first connection (every
/// connection this program opens, the store's and the reports', comes after it): with them on
/// (SQLite's default), every allocation SQLite makes takes a process-wide mutex to count it,
/// a few times per bound value of every row. Nothing here reads those statistics. Too late
/// (SQLite already started by another connection), the call changes nothing, harmlessly.
fn no_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Safety: `sqlite3_config` is called with an option and the one int it expects; it
        // only fails (SQLITE_MISUSE, ignored) when SQLite has already been initialised.
        #[allow(unsafe_code)]
        unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            );
        }
    });
}

/// The schema migrations this program knows, with whether `conn` has each.
pub fn migration_states(
    conn: &mut Connection,
    path: &Path,
) -> Result<Vec<MigrationState>, StoreError> {
    let applied = applied_versions(conn, path)?;
    Ok(states(
        &applied,
        embedded::migrations::runner().get_migrations(),
    ))
}

/// The migrations `known` to this program, with whether they are among the `applied`
/// versions; versions applied and unknown (a newer program's) are listed too.
pub fn states(applied: &[i64], known: &[refinery::Migration]) -> Vec<MigrationState> {
    let mut out: Vec<MigrationState> = known
        .iter()
        .map(|m| MigrationState {
            version: i64::from(m.version()),
            name: m.name().to_string(),
            applied: applied.contains(&i64::from(m.version())),
        })
        .collect();
    // Versions the database has and this program does not know (a newer program's).
    for &v in applied {
        if !out.iter().any(|m| m.version == v) {
            out.push(MigrationState {
                version: v,
                name: "(unknown to this version)".into(),
                applied: true,
            });
        }
    }
    out.sort_by_key(|m| m.version);
    out
}

/// The migration versions applied to the database (none for a new one).
fn applied_versions(conn: &Connection, path: &Path) -> Result<Vec<i64>, StoreError> {
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history')",
            [],
            |r| r.get(0),
        )
        .map_err(sql_err(path, "cannot read the schema"))?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare("SELECT version FROM refinery_schema_history ORDER BY version")
        .map_err(sql_err(path, "cannot read the schema history"))?;
    let versions = stmt
        .query_map([], |r| r.get::<_, i64>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_err(path, "cannot read the schema history"))?;
    Ok(versions)
}

/// Brings the schema up to date (up to `target`, the newest when `None`), refusing a database
/// a newer program made. Returns the versions applied now.
pub fn migrate(
    conn: &mut Connection,
    path: &Path,
    target: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    let applied = applied_versions(conn, path)?;
    super::run_migrations(embedded::migrations::runner(), conn, &applied, path, target)
}

/// How many rows each table the schema has holds (for `db status`), in the schema's order.
pub fn counts(conn: &Connection, path: &Path) -> Result<Vec<(String, i64)>, StoreError> {
    let mut out = Vec::new();
    for table in ["events", "logins"] {
        let exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                [table],
                |r| r.get(0),
            )
            .map_err(sql_err(path, "cannot read the schema"))?;
        if exists {
            let n = conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .map_err(sql_err(path, "cannot count rows"))?;
            out.push((table.to_string(), n));
        }
    }
    Ok(out)
}

/// The SQLite spelling of what the databases spell differently (see
/// [`crate::report::sql::Dialect`]).
pub const DIALECT: Dialect = Dialect {
    epoch: "{t}timestamp",
    window: "{t}timestamp >= {a} AND {t}timestamp < {b}",
    collate: "",
    ip_text: "ip",
    ip_order: "MIN(ip_key)",
    ip_param: "{p}",
    v6_prefix: "substr(ip_key, 2, 8)",
    is_v6: "substr(ip_key, 1, 1) = x'06'",
    asn_text: "COALESCE(CAST(asn AS TEXT), '')",
};

/// A read-only connection for reports.
pub struct SqliteDb {
    path: PathBuf,
    conn: Connection,
    server: Option<String>,
}

impl SqliteDb {
    /// Opens the database at `path` for reading (never creating it: a report on a database
    /// that does not exist is an error naming it).
    pub fn open(path: &Path) -> Result<SqliteDb, crate::report::ReportError> {
        let err = |e: rusqlite::Error| crate::report::ReportError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        no_memory_statistics();
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        Ok(SqliteDb {
            path: path.to_path_buf(),
            conn,
            server: None,
        })
    }

    /// Reports read only `server`'s rows (`None`: every server's).
    pub fn only_server(mut self, server: Option<&str>) -> Self {
        self.server = server.map(str::to_string);
        self
    }
}

/// `$1`, `$2`... as SQLite's numbered parameters `?1`, `?2`... (SQLite reads `$1` as a named
/// parameter, numbered in order of appearance).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

impl Db for SqliteDb {
    fn name(&self) -> &Path {
        &self.path
    }

    fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    fn dialect(&self) -> &Dialect {
        &DIALECT
    }

    fn each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        on_row: &mut dyn FnMut(Vec<Cell>),
    ) -> Result<(), String> {
        use rusqlite::types::ValueRef;
        let mut run = || -> rusqlite::Result<()> {
            let mut stmt = self.conn.prepare_cached(&numbered(sql))?;
            for (i, p) in params.iter().enumerate() {
                match p {
                    Param::Int(n) => stmt.raw_bind_parameter(i + 1, n)?,
                    Param::Text(t) => stmt.raw_bind_parameter(i + 1, t)?,
                }
            }
            let width = stmt.column_count();
            let mut rows = stmt.raw_query();
            while let Some(r) = rows.next()? {
                let cells = (0..width)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            ValueRef::Null => Cell::Null,
                            ValueRef::Integer(n) => Cell::Int(n),
                            ValueRef::Real(f) => Cell::Int(f as i64),
                            ValueRef::Text(t) => {
                                Cell::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<Cell>>>()?;
                on_row(cells);
            }
            Ok(())
        };
        run().map_err(|e| e.to_string())
    }
}

impl SqliteStore {
    /// The store in the database at `path` (created and migrated as needed); the daemon's
    /// other state files stay in `state_dir`. `logins` says whether successful logins are kept.
    pub fn open(path: &Path, state_dir: &Path, logins: bool) -> Result<Self, StoreError> {
        let mut conn = connect(path)?;
        let applied = migrate(&mut conn, path, None)?;
        if !applied.is_empty() {
            tracing::info!(database = %path.display(), versions = ?applied, "schema migrations applied");
        }
        let checkpointer = Checkpointer::start(path);
        if checkpointer.is_some() {
            conn.pragma_update(None, "wal_autocheckpoint", FALLBACK_PAGES)
                .map_err(sql_err(path, "cannot set wal_autocheckpoint"))?;
        }
        conn.pragma_update(None, "journal_size_limit", KEEP_BYTES)
            .map_err(sql_err(path, "cannot set journal_size_limit"))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            full: BTreeMap::new(),
            conn,
            logins_kept: logins,
            failures: Rows::default(),
            logins: Rows::default(),
            crash: CrashPoint::from_env(),
            checkpointer,
        })
    }

    /// After a commit: the staged rows are in, and the log may be due for a checkpoint.
    fn committed(&mut self) {
        let bytes = self.staged_bytes();
        if let Some(c) = &mut self.checkpointer {
            c.committed(bytes);
        }
        self.failures.clear();
        self.logins.clear();
    }

    /// Replaces the positions in the transaction `tx` with `progress`'s "after" positions.
    fn write_positions(
        tx: &rusqlite::Transaction<'_>,
        path: &Path,
        progress: &Progress,
    ) -> Result<(), StoreError> {
        let err = |what: &'static str| sql_err(path, what);
        tx.execute("DELETE FROM file_positions", [])
            .map_err(err("cannot write the positions"))?;
        tx.execute("DELETE FROM journal_positions", [])
            .map_err(err("cannot write the positions"))?;
        {
            let mut files = tx
                .prepare_cached(
                    "INSERT INTO file_positions (fingerprint, path, position, unseen_secs, complete) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err("cannot write the positions"))?;
            for f in &progress.files {
                files
                    .execute(params![
                        f.fingerprint.0 as i64,
                        f.path.to_string_lossy(),
                        f.offset as i64,
                        f.unseen_secs as i64,
                        f.complete
                    ])
                    .map_err(err("cannot write the positions"))?;
            }
            let mut journals = tx
                .prepare_cached(
                    "INSERT INTO journal_positions (source, cursor, realtime_usec) VALUES (?1, ?2, ?3)",
                )
                .map_err(err("cannot write the positions"))?;
            for j in &progress.journals {
                journals
                    .execute(params![
                        j.source,
                        j.after.cursor,
                        j.after.realtime_usec as i64
                    ])
                    .map_err(err("cannot write the positions"))?;
            }
        }
        tx.execute(
            "INSERT INTO progress (id, saved_at) VALUES (1, unixepoch()) ON CONFLICT (id) DO UPDATE SET saved_at = excluded.saved_at",
            [],
        )
        .map_err(err("cannot write the positions"))?;
        Ok(())
    }

    /// Inserts `rows` into `table` inside the transaction, through `full`'s statement of
    /// [`ROWS_PER_INSERT`] rows for `table` (prepared at its first use, kept).
    fn insert(
        tx: &rusqlite::Transaction<'_>,
        path: &Path,
        full: &mut BTreeMap<&'static str, Insert>,
        table: &'static str,
        rows: &Rows,
        range: std::ops::Range<usize>,
    ) -> Result<(), StoreError> {
        let err = || sql_err(path, "cannot insert rows");
        // Rows go in [`ROWS_PER_INSERT`] at a time (one statement, one step: SQLite's per-
        // statement work is paid once per group), the rest one statement for what is left;
        // their texts bound in place (see [`super::sqlite_insert`]).
        let full_end = range.start + (range.len() / ROWS_PER_INSERT) * ROWS_PER_INSERT;
        if full_end > range.start {
            let stmt = match full.entry(table) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    // Safety: kept in the store's `full`, dropped before its connection (the
                    // fields' order).
                    #[allow(unsafe_code)]
                    let prepared = unsafe { Insert::prepare(tx, table, ROWS_PER_INSERT, true) };
                    e.insert(prepared.map_err(err())?)
                }
            };
            for start in (range.start..full_end).step_by(ROWS_PER_INSERT) {
                stmt.run(tx, rows, start..start + ROWS_PER_INSERT)
                    .map_err(err())?;
            }
        }
        let rest = full_end..range.end;
        if !rest.is_empty() {
            // Safety: dropped at the end of this statement, within the transaction's borrow.
            #[allow(unsafe_code)]
            let stmt = unsafe { Insert::prepare(tx, table, rest.len(), false) };
            stmt.and_then(|mut stmt| stmt.run(tx, rows, rest))
                .map_err(err())?;
        }
        Ok(())
    }

    /// The database's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }

    fn recover(&mut self) -> Result<Option<Recovered>, StoreError> {
        let path = &self.path;
        let err = |_: ()| sql_err(path, "cannot read the positions");
        let saved: Option<i64> = self
            .conn
            .query_row("SELECT saved_at FROM progress WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err(()))?;
        if saved.is_none() {
            return Ok(None);
        }
        let mut rec = Recovered {
            note: format!("positions as last committed in {}", path.display()),
            ..Recovered::default()
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT fingerprint, path, position, unseen_secs, complete FROM file_positions",
            )
            .map_err(err(()))?;
        let files = stmt
            .query_map([], |r| {
                Ok((
                    Fingerprint(r.get::<_, i64>(0)? as u64),
                    PathBuf::from(r.get::<_, String>(1)?),
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, bool>(4)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err(()))?;
        for (fp, p, offset, unseen, complete) in files {
            rec.positions.insert(fp, Pos { offset, complete });
            rec.paths.insert(fp, p);
            rec.unseen.insert(fp, Duration::from_secs(unseen));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT source, cursor, realtime_usec FROM journal_positions")
            .map_err(err(()))?;
        let journals: BTreeMap<String, Option<JournalPos>> = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Some(JournalPos {
                        cursor: r.get(1)?,
                        realtime_usec: r.get::<_, i64>(2)? as u64,
                    }),
                ))
            })
            .and_then(|rows| rows.collect::<Result<_, _>>())
            .map_err(err(()))?;
        rec.journals = journals;
        Ok(Some(rec))
    }

    fn has_rows(&mut self) -> bool {
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM events)", [], |r| r.get(0))
            .unwrap_or(false)
    }

    fn keeps_logins(&self) -> bool {
        self.logins_kept
    }

    fn stage_failure(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>) {
        self.failures.push(event, enrichment);
    }

    fn stage_login(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>) {
        if self.logins_kept {
            self.logins.push(event, enrichment);
        }
    }

    fn staged_bytes(&self) -> usize {
        self.failures.bytes() + self.logins.bytes()
    }

    /// One transaction: the positions after the batch, the intrusion rows, the login rows.
    fn commit(&mut self, progress: &Progress) -> Result<(), StoreError> {
        let path = &self.path;
        let crash = self.crash;
        let tx = self
            .conn
            .transaction()
            .map_err(sql_err(path, "cannot begin a transaction"))?;
        Self::write_positions(&tx, path, progress)?;
        CrashPoint::AfterCheckpoint.here(crash);
        if crash == Some(CrashPoint::MidRows) {
            Self::insert(
                &tx,
                path,
                &mut self.full,
                "events",
                &self.failures,
                0..self.failures.len() / 2,
            )?;
            CrashPoint::MidRows.here(crash);
        }
        let all = 0..self.failures.len();
        Self::insert(&tx, path, &mut self.full, "events", &self.failures, all)?;
        CrashPoint::BetweenRecords.here(crash);
        let all = 0..self.logins.len();
        Self::insert(&tx, path, &mut self.full, "logins", &self.logins, all)?;
        tx.commit().map_err(sql_err(path, "cannot commit"))?;
        self.committed();
        Ok(())
    }

    fn save_progress(&mut self, progress: &Progress) -> Result<(), StoreError> {
        let path = &self.path;
        let tx = self
            .conn
            .transaction()
            .map_err(sql_err(path, "cannot begin a transaction"))?;
        Self::write_positions(&tx, path, progress)?;
        tx.commit().map_err(sql_err(path, "cannot commit"))
    }

    fn expire(&mut self, before: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        for table in ["events", "logins"] {
            let n = self
                .conn
                .execute(&super::batch_delete(table, "timestamp < ?1"), [before])
                .map_err(sql_err(&self.path, "cannot delete old rows"))?;
            total += n as u64;
        }
        Ok(total)
    }

    fn purge(&mut self, who: &super::purge::Purge) -> Result<(u64, u64), StoreError> {
        use rusqlite::types::Value;
        let mut conds = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        if let Some(ip) = who.ip {
            conds.push("ip_key = ?");
            params.push(Value::Blob(ip_key(ip)));
        }
        if let Some(u) = &who.username {
            // NOCASE folds ASCII only, as the CSV store compares.
            conds.push("username = ? COLLATE NOCASE");
            params.push(Value::Text(u.clone()));
        }
        if let Some(before) = who.before {
            conds.push("timestamp < ?");
            params.push(Value::Integer(before));
        }
        if conds.is_empty() {
            return Err(StoreError::Unsupported(
                "purge needs an address or a username".into(),
            ));
        }
        let mut counts = [0u64; 2];
        for (n, table) in counts.iter_mut().zip(["events", "logins"]) {
            let sql = super::batch_delete(table, &conds.join(" AND "));
            loop {
                let deleted = self
                    .conn
                    .execute(&sql, rusqlite::params_from_iter(params.iter()))
                    .map_err(sql_err(&self.path, "cannot delete the rows to purge"))?;
                *n += deleted as u64;
                if deleted == 0 {
                    break;
                }
            }
        }
        Ok((counts[0], counts[1]))
    }

    fn imported(&mut self, fingerprint: Fingerprint) -> Result<Option<u64>, StoreError> {
        self.conn
            .query_row(
                "SELECT position FROM imports WHERE fingerprint = ?1",
                [fingerprint.0 as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|n| n as u64))
            .map_err(sql_err(&self.path, "cannot read the imports"))
    }

    fn commit_import(
        &mut self,
        fingerprint: Fingerprint,
        path: &Path,
        offset: u64,
    ) -> Result<(), StoreError> {
        let db = &self.path;
        let tx = self
            .conn
            .transaction()
            .map_err(sql_err(db, "cannot begin a transaction"))?;
        let all = 0..self.failures.len();
        Self::insert(&tx, db, &mut self.full, "events", &self.failures, all)?;
        tx.execute(
            "INSERT INTO imports (fingerprint, path, position, imported_at) VALUES (?1, ?2, ?3, unixepoch()) \
             ON CONFLICT (fingerprint) DO UPDATE SET path = excluded.path, position = excluded.position, imported_at = excluded.imported_at",
            params![fingerprint.0 as i64, path.to_string_lossy(), offset as i64],
        )
        .map_err(sql_err(db, "cannot record the import"))?;
        tx.commit().map_err(sql_err(db, "cannot commit"))?;
        self.committed();
        Ok(())
    }

    fn switch_output(&mut self, path: &Path, _progress: &Progress) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(format!(
            "output.csv ({}) is not written with store = \"sqlite\"; the records stay in {}",
            path.display(),
            self.path.display()
        )))
    }

    fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{FilePosition, JournalPosition};
    use crate::enrich::DnsStatus;
    use crate::parse::{Timestamp, YearContext};

    fn event(text: &str, ip: &str) -> AuthEvent {
        let years = YearContext::at_naive(
            chrono::NaiveDateTime::parse_from_str("2026-11-22 12:00:00", "%Y-%m-%d %H:%M:%S")
                .unwrap(),
        );
        let (timestamp, _): (Timestamp, _) =
            crate::parse::timestamp::parse_prefix(b"2026-11-22T08:01:02.5+01:00 x", &years)
                .unwrap();
        AuthEvent {
            timestamp,
            server: "mx".into(),
            service: "postfix/smtpd".into(),
            ip: ip.parse().unwrap(),
            username: Some(text.into()),
            mechanism: "LOGIN".into(),
            reason: text.into(),
            client_hostname: Some(text.into()),
        }
    }

    fn progress(offset: u64) -> Progress {
        Progress {
            files: vec![FilePosition {
                fingerprint: Fingerprint(u64::MAX - 1),
                path: "/var/log/mail.log".into(),
                offset_before: 0,
                offset,
                unseen_secs: 7,
                complete: false,
            }],
            journals: vec![JournalPosition {
                source: "system".into(),
                before: None,
                after: JournalPos {
                    cursor: "s=1;i=2".into(),
                    realtime_usec: 1_795_330_800_000_000,
                },
            }],
        }
    }

    #[test]
    fn rows_and_positions_commit_together_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let mut store = SqliteStore::open(&path, dir.path(), true).unwrap();
        assert_eq!(
            store.recover().unwrap(),
            None,
            "a new database is a first start"
        );
        assert!(!store.has_rows());
        store.stage_failure(&event("alice", "192.0.2.1"), None);
        store.stage_login(&event("bob", "2001:db8::1"), None);
        assert!(store.staged_bytes() > 0);
        store.commit(&progress(100)).unwrap();
        assert_eq!(store.staged_bytes(), 0);
        assert!(store.has_rows());
        drop(store);
        // Opened again (the migrations are not applied twice).
        let mut store = SqliteStore::open(&path, dir.path(), true).unwrap();
        let rec = store.recover().unwrap().expect("positions recorded");
        let fp = Fingerprint(u64::MAX - 1);
        assert_eq!(
            rec.positions[&fp],
            Pos {
                offset: 100,
                complete: false
            }
        );
        assert_eq!(rec.paths[&fp], PathBuf::from("/var/log/mail.log"));
        assert_eq!(rec.unseen[&fp], Duration::from_secs(7));
        assert_eq!(rec.journals["system"].as_ref().unwrap().cursor, "s=1;i=2");
        // Staged and not committed: nothing of it after a restart.
        store.stage_failure(&event("carol", "192.0.2.2"), None);
        drop(store);
        let conn = connect(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let mode = std::fs::metadata(&path).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o640);
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        drop(SqliteStore::open(&path, dir.path(), true).unwrap());
        let conn = connect(&path).unwrap();
        conn.execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (999, 'future', '2030-01-01', '0')",
            [],
        )
        .unwrap();
        drop(conn);
        let e = SqliteStore::open(&path, dir.path(), true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("version 999") && e.contains("upgrade"), "{e}");
        let mut conn = connect(&path).unwrap();
        let states = migration_states(&mut conn, &path).unwrap();
        assert!(
            states.iter().any(|m| m.version == 999 && m.applied),
            "{states:?}"
        );
    }

    #[test]
    fn rows_read_back_are_the_csv_record_s() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let mut store = SqliteStore::open(&path, dir.path(), false).unwrap();
        let mut want = crate::sink::RowFormatter::default();
        // 135 rows: two full statements of [`ROWS_PER_INSERT`] and the rest.
        for (i, text) in [
            "alice",
            "=cmd|' /C calc'!A0",
            "a,\"b\"\r\nc",
            "",
            "caf\u{e9}",
        ]
        .iter()
        .cycle()
        .take(2 * ROWS_PER_INSERT + 7)
        .enumerate()
        {
            let e = event(
                text,
                if i % 2 == 0 {
                    "192.0.2.9"
                } else {
                    "2001:db8::9"
                },
            );
            let enrichment = Enrichment {
                reverse_dns: Some(text.to_string()),
                dns_status: Some(DnsStatus::Mismatch),
                country: Some("FR".into()),
                asn: (i % 2 == 0).then_some(4_294_967_295),
                as_org: Some(format!("-{text}")),
            };
            store.stage_failure(&e, Some(&enrichment));
            want.push(&e, Some(&enrichment));
        }
        store.commit(&Progress::default()).unwrap();
        let mut db = SqliteDb::open(&path).unwrap();
        let mut got = Vec::new();
        let w = crate::report::Window {
            from: 0,
            to: i64::MAX,
        };
        crate::report::sql::rows_csv(&mut db, w, &mut |row| got.extend_from_slice(row)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want.bytes())
        );
    }

    #[test]
    fn the_log_is_copied_into_the_database_by_a_thread_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let mut store = SqliteStore::open(&path, dir.path(), false).unwrap();
        let pages: i64 = store
            .conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            pages, FALLBACK_PAGES,
            "the store's own connection checkpoints late"
        );
        // About 5 MB of rows in one commit (300 bytes in each of three texts): past the
        // thread's pace (4 MB), below the fallback's (2,000 pages, 8 MB), so only the thread
        // copies them into the database file.
        let long = "x".repeat(300);
        for _ in 0..5000 {
            store.stage_failure(&event(&long, "192.0.2.1"), None);
        }
        store.commit(&Progress::default()).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while size() < 4_500_000 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            size() >= 4_500_000,
            "the database file holds the rows: {}",
            size()
        );
        // Stopped with the store.
        drop(store);
    }

    #[test]
    fn a_failed_insert_leaves_the_rows_staged_and_the_retry_inserts_them_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let mut store = SqliteStore::open(&path, dir.path(), false).unwrap();
        let count = || -> i64 {
            connect(&path)
                .unwrap()
                .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
                .unwrap()
        };
        let stage = |store: &mut SqliteStore, n: usize| {
            for i in 0..n {
                let name = if i == 100 {
                    "boom".to_string()
                } else {
                    format!("u{i}")
                };
                store.stage_failure(&event(&name, "192.0.2.7"), None);
            }
        };
        // 135 rows: two full statements (the kept one) and the rest; the 101st refused.
        stage(&mut store, 135);
        let other = connect(&path).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.username = 'boom' \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END",
            )
            .unwrap();
        let staged = store.staged_bytes();
        let e = store.commit(&progress(10)).unwrap_err().to_string();
        assert!(e.contains("refused"), "{e}");
        assert_eq!(count(), 0, "nothing of the failed transaction");
        assert_eq!(store.staged_bytes(), staged, "the rows stay staged");
        // The schema changes under the kept statement (SQLite prepares it again).
        other.execute_batch("DROP TRIGGER refuse").unwrap();
        store.commit(&progress(20)).unwrap();
        assert_eq!(count(), 135);
        // The kept statement once more, with other rows.
        stage(&mut store, 135);
        store.commit(&progress(30)).unwrap();
        assert_eq!(count(), 270);
        let users: Vec<String> = other
            .prepare("SELECT username FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let want: Vec<String> = (0..2)
            .flat_map(|_| {
                (0..135).map(|i| {
                    if i == 100 {
                        "boom".into()
                    } else {
                        format!("u{i}")
                    }
                })
            })
            .collect();
        assert_eq!(users, want);
    }

    #[test]
    fn old_rows_are_expired_a_batch_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let mut store = SqliteStore::open(&path, dir.path(), true).unwrap();
        let e = event("old", "192.0.2.1");
        for _ in 0..crate::store::EXPIRE_BATCH + 50 {
            store.stage_failure(&e, None);
        }
        store.stage_login(&e, None);
        store.commit(&Progress::default()).unwrap();
        let before = e.timestamp.time.timestamp();
        assert_eq!(
            store.expire(before).unwrap(),
            0,
            "nothing older than the row"
        );
        let after = before + 1;
        assert_eq!(
            store.expire(after).unwrap(),
            crate::store::EXPIRE_BATCH as u64 + 1
        );
        assert_eq!(store.expire(after).unwrap(), 50);
        assert_eq!(store.expire(after).unwrap(), 0);
    }

    #[test]
    fn address_keys_sort_as_addresses() {
        let mut ips: Vec<std::net::IpAddr> = [
            "9.0.0.1",
            "10.0.0.2",
            "::1",
            "2001:db8::1",
            "192.0.2.1",
            "::ffff:1.2.3.4",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let mut by_key = ips.clone();
        by_key.sort_by_key(|ip| ip_key(*ip));
        ips.sort();
        assert_eq!(by_key, ips);
    }
}
