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

use super::{CrashPoint, Progress, Recovered, Store, StoreError};

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// How long a statement waits for a lock another connection holds (a report reading while the
/// daemon commits) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The columns of `events` and `logins` written by the store, in order.
const INSERT_COLUMNS: &str = "ts, timestamp, server, service, ip, username, mechanism, reason, \
     client_hostname, reverse_dns, dns_status, country, asn, as_org";

/// An event staged for the next commit, with its enrichment.
struct Staged {
    event: AuthEvent,
    enrichment: Option<Enrichment>,
}

impl Staged {
    /// About what the row weighs, for keeping a commit to a few megabytes.
    fn weight(&self) -> usize {
        let e = &self.event;
        96 + e.server.len()
            + e.service.len()
            + e.username.as_ref().map_or(0, |u| u.len())
            + e.mechanism.len()
            + e.reason.len()
            + e.client_hostname.as_ref().map_or(0, |h| h.len())
            + self.enrichment.as_ref().map_or(0, |en| {
                en.reverse_dns.as_ref().map_or(0, String::len)
                    + en.as_org.as_ref().map_or(0, String::len)
            })
    }
}

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    state_dir: PathBuf,
    conn: Connection,
    logins_kept: bool,
    failures: Vec<Staged>,
    logins: Vec<Staged>,
    staged_bytes: usize,
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
            path: path.to_path_buf(),
            source: e,
        }));
    }
    let conn = Connection::open(path).map_err(sql_err(path, "cannot open"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql_err(path, "cannot set the busy timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql_err(path, "cannot switch to WAL mode"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql_err(path, "cannot set synchronous = FULL"))?;
    Ok(conn)
}

/// The schema migrations this program knows, with whether `conn` has each.
pub fn migration_states(
    conn: &mut Connection,
    path: &Path,
) -> Result<Vec<MigrationState>, StoreError> {
    let applied = applied_versions(conn, path)?;
    let runner = embedded::migrations::runner();
    let mut out: Vec<MigrationState> = runner
        .get_migrations()
        .iter()
        .map(|m| MigrationState {
            version: i64::from(m.version()),
            name: m.name().to_string(),
            applied: applied.contains(&i64::from(m.version())),
        })
        .collect();
    // Versions the database has and this program does not know (a newer program's).
    for v in applied {
        if !out.iter().any(|m| m.version == v) {
            out.push(MigrationState {
                version: v,
                name: "(unknown to this version)".into(),
                applied: true,
            });
        }
    }
    out.sort_by_key(|m| m.version);
    Ok(out)
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
    let known = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0);
    if let Some(&found) = applied_versions(conn, path)?.last()
        && found > known
    {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    let mut runner = embedded::migrations::runner();
    if let Some(v) = target {
        runner = runner.set_target(refinery::Target::Version(v as i32));
    }
    let report = runner.run(conn).map_err(|e| StoreError::Migrate {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .collect())
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
        Ok(SqliteStore {
            path: path.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            conn,
            logins_kept: logins,
            failures: Vec::new(),
            logins: Vec::new(),
            staged_bytes: 0,
            crash: CrashPoint::from_env(),
        })
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
                    "INSERT INTO file_positions (fingerprint, path, offset, unseen_secs, complete) VALUES (?1, ?2, ?3, ?4, ?5)",
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

    /// Inserts `rows` into `table` inside the transaction.
    fn insert(
        tx: &rusqlite::Transaction<'_>,
        path: &Path,
        table: &str,
        rows: &[Staged],
    ) -> Result<(), StoreError> {
        let err = |_: ()| sql_err(path, "cannot insert rows");
        let mut stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO {table} ({INSERT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ))
            .map_err(err(()))?;
        for s in rows {
            let (e, en) = (&s.event, s.enrichment.as_ref());
            stmt.execute(params![
                e.timestamp.time.timestamp(),
                e.timestamp.to_rfc3339(),
                e.server.as_str(),
                e.service.as_str(),
                e.ip.to_string(),
                e.username.as_deref().unwrap_or(""),
                e.mechanism.as_str(),
                e.reason.as_str(),
                e.client_hostname.as_deref().unwrap_or(""),
                en.and_then(|en| en.reverse_dns.as_deref()).unwrap_or(""),
                en.and_then(|en| en.dns_status).map_or("", |d| d.as_str()),
                en.and_then(|en| en.country.as_deref()).unwrap_or(""),
                en.and_then(|en| en.asn),
                en.and_then(|en| en.as_org.as_deref()).unwrap_or(""),
            ])
            .map_err(err(()))?;
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
            .prepare("SELECT fingerprint, path, offset, unseen_secs, complete FROM file_positions")
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

    fn has_rows(&self) -> bool {
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM events)", [], |r| r.get(0))
            .unwrap_or(false)
    }

    fn keeps_logins(&self) -> bool {
        self.logins_kept
    }

    fn stage_failure(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>) {
        let s = Staged {
            event: event.clone(),
            enrichment: enrichment.cloned(),
        };
        self.staged_bytes += s.weight();
        self.failures.push(s);
    }

    fn stage_login(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>) {
        if self.logins_kept {
            let s = Staged {
                event: event.clone(),
                enrichment: enrichment.cloned(),
            };
            self.staged_bytes += s.weight();
            self.logins.push(s);
        }
    }

    fn staged_bytes(&self) -> usize {
        self.staged_bytes
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
                "events",
                &self.failures[..self.failures.len() / 2],
            )?;
            CrashPoint::MidRows.here(crash);
        }
        Self::insert(&tx, path, "events", &self.failures)?;
        CrashPoint::BetweenRecords.here(crash);
        Self::insert(&tx, path, "logins", &self.logins)?;
        tx.commit().map_err(sql_err(path, "cannot commit"))?;
        self.failures.clear();
        self.logins.clear();
        self.staged_bytes = 0;
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
