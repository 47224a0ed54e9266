//! The durable record behind one interface: the intrusion and logins records and the source
//! positions they account for, in a CSV file (the default), an SQLite database or (for a fleet)
//! PostgreSQL. One store at a time, so exactly-once stays one commit: for CSV, the checkpoint
//! then the append (see [`crate::checkpoint`]); for SQL, the rows and the positions in one
//! transaction, in the database itself.
//!
//! The daemon's committer ([`crate::sink::committer`]) owns what every store shares (which
//! files and journals are where, batching, retries, the alerts' hand-off); a store owns what is
//! its own: how rows are staged and written, and how a restart finds out what landed
//! ([`Store::recover`]). Reports read through [`crate::report`], which asks the store for
//! aggregates, not rows, so that SQL does the counting in the database.

pub mod csv;
pub mod import;
pub mod postgres;
pub mod purge;
pub mod sqlite;
mod sqlite_checkpoint;
mod sqlite_insert;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checkpoint::{FilePosition, JournalPosition, Positions};
use crate::enrich::Enrichment;
use crate::parse::AuthEvent;
use crate::source::fingerprint::Fingerprint;
use crate::source::journal::JournalPos;

/// Which store keeps the record (`[output] store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// CSV files (the default).
    #[default]
    Csv,
    /// An SQLite database file.
    Sqlite,
    /// A PostgreSQL database (one server's or a fleet's).
    Postgres,
}

impl StoreKind {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Csv => "csv",
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// Where every source stands, as one commit records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every file known: its offset before the batch and after it (the CSV store's recovery
    /// needs both; a database, whose commit is atomic, keeps the "after").
    pub files: Vec<FilePosition>,
    /// Every journal read.
    pub journals: Vec<JournalPosition>,
}

/// Where a restart resumes, once the store has repaired what a crash left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Offsets to resume at, by fingerprint.
    pub positions: Positions,
    /// Names last read, per fingerprint.
    pub paths: BTreeMap<Fingerprint, PathBuf>,
    /// How long each file had not been seen on disk, per fingerprint.
    pub unseen: BTreeMap<Fingerprint, Duration>,
    /// Where to resume each journal (see [`crate::checkpoint::Recovery::journals`]).
    pub journals: BTreeMap<String, Option<JournalPos>>,
    /// What was decided, for the log.
    pub note: String,
    /// Something had to be repaired (logged as a warning).
    pub repaired: bool,
}

/// Why a store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A CSV record failed.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// The CSV store's checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The database failed.
    #[error("{what}: {source}")]
    Sqlite {
        /// The database and what was being done.
        what: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// PostgreSQL failed (or could not be reached).
    #[error("{what}: {message}")]
    Postgres {
        /// The database and what was being done.
        what: String,
        /// What PostgreSQL (or the connection) said.
        message: String,
        /// The kind of failure: `unreachable` (no connection, the server going away), else
        /// the SQLSTATE code.
        kind: String,
    },
    /// The database's schema could not be brought up to date.
    #[error("{path}: cannot apply the schema migrations: {message}")]
    Migrate {
        /// The database.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The database was made by a newer version of this program.
    #[error(
        "{path}: the schema is at version {found}, newer than this program's {known}: upgrade maillogsentinel (or point it at another database)"
    )]
    TooNew {
        /// The database.
        path: PathBuf,
        /// The schema version found.
        found: i64,
        /// The newest this program knows.
        known: i64,
    },
    /// What was asked does not apply to this store.
    #[error("{0}")]
    Unsupported(String),
}

impl StoreError {
    /// A short name for the kind of failure, so that a failure being retried is logged once
    /// per kind (not once per retry).
    pub fn state(&self) -> String {
        match self {
            StoreError::Sink(crate::sink::SinkError::Io { source, .. }) => {
                format!("io:{:?}", source.kind())
            }
            StoreError::Checkpoint(crate::checkpoint::CheckpointError::Io { source, .. }) => {
                format!("io:{:?}", source.kind())
            }
            StoreError::Postgres { kind, .. } => format!("postgres:{kind}"),
            StoreError::Sqlite { source, .. } => match source.sqlite_error_code() {
                Some(code) => format!("sqlite:{code:?}"),
                None => "sqlite".into(),
            },
            e => format!("{:?}", std::mem::discriminant(e)),
        }
    }
}

/// The durable record. Rows are staged as they arrive, then committed together with the
/// positions they account for: after a crash at any moment, [`Store::recover`] gives positions
/// that say exactly which lines' rows are in the record.
pub trait Store: Send {
    /// What and where the record is, for logs (`CSV /var/lib/...`).
    fn describe(&self) -> String;

    /// Repairs what a crash left and says where to resume; `None` on a first start (nothing
    /// was ever committed).
    fn recover(&mut self) -> Result<Option<Recovered>, StoreError>;

    /// Whether the record already holds rows (a first start does not read the logs' history
    /// into a record that does, unless told to).
    fn has_rows(&mut self) -> bool;

    /// Whether successful logins are kept (`[output] logins`).
    fn keeps_logins(&self) -> bool;

    /// Stages a failed login's row.
    fn stage_failure(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>);

    /// Stages a successful login's row (nothing when logins are not kept).
    fn stage_login(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>);

    /// Bytes (or their equivalent) staged and not committed: commits are kept to a few MB.
    fn staged_bytes(&self) -> usize;

    /// Commits the staged rows and `progress` as one unit. On error nothing is committed as
    /// far as a restart can tell, and the rows stay staged for a retry.
    fn commit(&mut self, progress: &Progress) -> Result<(), StoreError>;

    /// Saves `progress` alone (nothing is staged): where reading got in lines without rows.
    fn save_progress(&mut self, progress: &Progress) -> Result<(), StoreError>;

    /// Writes the intrusion record to `path` from now on (the CSV store; others refuse).
    fn switch_output(&mut self, path: &Path, progress: &Progress) -> Result<(), StoreError>;

    /// The directory beside which the daemon's other state files are (backend failures,
    /// verdicts).
    fn state_dir(&self) -> &Path;

    /// Deletes one batch (at most [`EXPIRE_BATCH`] rows of each record) of the rows older
    /// than `before` (seconds since the epoch), in a transaction of its own; returns how many
    /// (0: none is left).
    fn expire(&mut self, before: i64) -> Result<u64, StoreError>;

    /// Deletes every row `who` picks from both records (a database in batches of
    /// [`EXPIRE_BATCH`], each its own transaction; CSV files rewritten without them, their
    /// checkpoint following), and says how many: (failures, logins).
    fn purge(&mut self, who: &purge::Purge) -> Result<(u64, u64), StoreError>;

    /// How far an earlier `import` of the file with this first-line fingerprint got (bytes).
    fn imported(&mut self, fingerprint: Fingerprint) -> Result<Option<u64>, StoreError>;

    /// Commits the staged failures and how far the import of `path` got, as one unit (the
    /// source positions are left as they are: a daemon may be running).
    fn commit_import(
        &mut self,
        fingerprint: Fingerprint,
        path: &Path,
        offset: u64,
    ) -> Result<(), StoreError>;
}

/// Moments of a commit at which the durability tests make the process die, to prove that a
/// restart recovers from each. Chosen with `MAILLOGSENTINEL_TEST_CRASH=after-checkpoint`,
/// `mid-rows`, `between-records`, `after-rows` or `hang-after-rows`; never set in production.
/// Each store places them at its own equivalent steps (for a database: the positions written,
/// half the rows inserted, the intrusion rows inserted, committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The checkpoint is saved (the positions are written), no row is written.
    AfterCheckpoint,
    /// Half of the rows are written.
    MidRows,
    /// The intrusion record's rows are written and synced, the logins record's not.
    BetweenRecords,
    /// The rows are written and synced (committed); nothing after.
    AfterRows,
    /// After the rows, the sink thread stops responding (but the process lives on).
    HangAfterRows,
}

impl CrashPoint {
    /// The crash point the environment asks for, if any.
    pub fn from_env() -> Option<CrashPoint> {
        match std::env::var("MAILLOGSENTINEL_TEST_CRASH").ok()?.as_str() {
            "after-checkpoint" => Some(CrashPoint::AfterCheckpoint),
            "mid-rows" => Some(CrashPoint::MidRows),
            "between-records" => Some(CrashPoint::BetweenRecords),
            "after-rows" => Some(CrashPoint::AfterRows),
            "hang-after-rows" => Some(CrashPoint::HangAfterRows),
            _ => None,
        }
    }

    /// Dies on the spot (like `kill -9` or a power cut) when `self` is the chosen crash point.
    pub fn here(self, chosen: Option<CrashPoint>) {
        if chosen == Some(self) {
            eprintln!("simulated crash at {self:?}");
            std::process::abort();
        }
    }
}

/// A row a database store holds until its next commit: the event as it came (its texts are
/// compact strings, so cloning most of them allocates nothing) and its enrichment.
pub(crate) struct StagedRow {
    /// The event.
    pub event: AuthEvent,
    /// Its enrichment.
    pub enrichment: Option<Enrichment>,
}

/// The rows a database store holds until its next commit.
#[derive(Default)]
pub(crate) struct Staged {
    /// For `events`.
    pub failures: Vec<StagedRow>,
    /// For `logins`.
    pub logins: Vec<StagedRow>,
    /// About what they weigh (commits are kept to a few megabytes).
    pub bytes: usize,
}

impl Staged {
    /// Holds an event for `events` (or `logins` when `login`).
    pub fn push(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>, login: bool) {
        let e = event;
        self.bytes += 96
            + e.server.len()
            + e.service.len()
            + e.username.as_ref().map_or(0, |u| u.len())
            + e.mechanism.len()
            + e.reason.len()
            + e.client_hostname.as_ref().map_or(0, |h| h.len())
            + enrichment.map_or(0, |en| {
                en.reverse_dns.as_ref().map_or(0, String::len)
                    + en.as_org.as_ref().map_or(0, String::len)
            });
        let row = StagedRow {
            event: event.clone(),
            enrichment: enrichment.cloned(),
        };
        if login {
            self.logins.push(row);
        } else {
            self.failures.push(row);
        }
    }

    /// Forgets them (committed).
    pub fn clear(&mut self) {
        self.failures.clear();
        self.logins.clear();
        self.bytes = 0;
    }
}

/// Rows of each record deleted at most by one [`Store::expire`].
pub const EXPIRE_BATCH: usize = 10_000;

/// The statement that deletes one batch of `table`'s rows where `cond` holds (both databases
/// take it: a batch is a transaction of its own, never a lock held over millions of rows).
pub(crate) fn batch_delete(table: &str, cond: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {cond} LIMIT {EXPIRE_BATCH})"
    )
}

/// Runs `runner`'s migrations on `conn` (up to `target`, the newest when `None`), whose
/// database has the versions `applied` and is called `name` in errors: a database a newer
/// program made is refused, not written. Returns the versions applied now.
pub(crate) fn run_migrations<C: refinery::Migrate>(
    runner: refinery::Runner,
    conn: &mut C,
    applied: &[i64],
    name: &Path,
    target: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    let known = runner
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0);
    if let Some(&found) = applied.last()
        && found > known
    {
        return Err(StoreError::TooNew {
            path: name.to_path_buf(),
            found,
            known,
        });
    }
    let runner = match target {
        Some(v) => runner.set_target(refinery::Target::Version(v as i32)),
        None => runner,
    };
    let report = runner.run(conn).map_err(|e| StoreError::Migrate {
        path: name.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .collect())
}

/// Opens the store the configuration names (creating it, and bringing a database's schema up
/// to date).
pub fn open(config: &crate::config::Config) -> Result<Box<dyn Store>, StoreError> {
    Ok(match config.store {
        StoreKind::Csv => Box::new(csv::CsvStore::open(
            &config.state_dir,
            &config.csv,
            config.logins.as_deref(),
        )?),
        StoreKind::Sqlite => Box::new(sqlite::SqliteStore::open(
            &config.sqlite,
            &config.state_dir,
            config.logins.is_some(),
        )?),
        StoreKind::Postgres => {
            let settings = config.postgres.as_ref().ok_or_else(|| {
                StoreError::Unsupported(
                    "store = \"postgres\" needs [output] postgres = \"postgres://USER@HOST/DATABASE\"".into(),
                )
            })?;
            Box::new(postgres::PostgresStore::open(
                settings,
                &config.state_dir,
                config.logins.is_some(),
                &config.server,
            )?)
        }
    })
}
