//! Copies the SQLite store's write-ahead log into the database on a thread of its own.
//!
//! In WAL mode a commit appends pages to the `-wal` file; a checkpoint copies them into the
//! database file (and fsyncs it) so that the log can start over. SQLite's default runs the
//! checkpoint in the committing connection, inside the commit that crosses 1,000 pages: in a
//! backfill, a tenth of the committer's time, during which nothing else is committed and
//! reading waits for the event budget (docs/benchmarks.md, "SQLite binds the rows in place").
//! Here a connection of its own does it, told after every 4 MB of rows committed, while the
//! committer goes on. A checkpoint of this kind (`PASSIVE`) never blocks the writer, and
//! copies the pages committed before it started: while commits keep coming (a backfill) it
//! is run again every [`AGAIN`] until it has copied everything, so that the log can start
//! over once writing pauses. The store's own connection keeps checkpointing itself past
//! [`FALLBACK_PAGES`]: while commits come without pause (a backfill), that is what lets the
//! log start over (it then copies only what this thread has not), and it keeps the log
//! bounded when this thread falls behind or cannot start. A log that started over is cut
//! back to [`KEEP_BYTES`].

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Rows committed (bytes, as staged) between two checkpoints: SQLite's own pace (1,000 pages
/// of 4 KiB).
const EVERY_BYTES: usize = 4 * 1024 * 1024;

/// Pages in the log past which the store's own connection checkpoints anyway (8 MB: a
/// backfill's log then stays between 4 and 9 MB; at 10,000 pages it grew to 40 MB, no
/// faster).
pub(super) const FALLBACK_PAGES: i64 = 2_000;

/// What the log file is cut back to when it starts over (`journal_size_limit`): SQLite's
/// own checkpoint size.
pub(super) const KEEP_BYTES: i64 = 4 * 1024 * 1024;

/// How soon a checkpoint that could not copy everything (rows were committed meanwhile) is
/// run again.
const AGAIN: Duration = Duration::from_millis(100);

/// The checkpointing thread, stopped (after its checkpoint in progress) when dropped.
pub(super) struct Checkpointer {
    tell: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Bytes of rows committed since it was last told.
    since: usize,
}

impl Checkpointer {
    /// Starts the thread with a connection of its own to `path`; `None` (said in the log)
    /// when that fails: the store's connection then checkpoints as SQLite does by default.
    pub fn start(path: &Path) -> Option<Checkpointer> {
        let conn = match super::sqlite::connect(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "{e}: the store's own connection copies its log into the database instead"
                );
                return None;
            }
        };
        let (tell, told) = std::sync::mpsc::sync_channel(1);
        let name = path.display().to_string();
        let thread = match std::thread::Builder::new()
            .name("sqlite checkpoint".into())
            .spawn(move || run(conn, told, &name))
        {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(
                    database = %path.display(),
                    "cannot start the thread that copies the log into the database ({e}): the store's own connection does it instead"
                );
                return None;
            }
        };
        Some(Checkpointer {
            tell: Some(tell),
            thread: Some(thread),
            since: 0,
        })
    }

    /// Counts `bytes` of rows committed, and tells the thread when a checkpoint is due.
    pub fn committed(&mut self, bytes: usize) {
        self.since += bytes;
        if self.since < EVERY_BYTES {
            return;
        }
        self.since = 0;
        if let Some(tell) = &self.tell {
            match tell.try_send(()) {
                // (Full: one is due already.)
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => self.tell = None,
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.tell = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: a checkpoint each time it is told, and again every [`AGAIN`] until one has
/// copied the whole log; until the store is gone. A failure is logged once per kind and
/// tried again when told next (meanwhile the store's own connection copies the log past
/// [`FALLBACK_PAGES`]).
fn run(conn: rusqlite::Connection, told: Receiver<()>, name: &str) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut failing: Option<String> = None;
    let mut behind = false;
    loop {
        let next = if behind {
            told.recv_timeout(AGAIN)
        } else {
            told.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        if next == Err(RecvTimeoutError::Disconnected) {
            return;
        }
        // (busy, frames in the log, frames copied)
        let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match r {
            Ok((log, copied)) => {
                failing = None;
                behind = copied < log;
            }
            Err(e) => {
                let e = e.to_string();
                if failing.as_deref() != Some(e.as_str()) {
                    tracing::warn!(database = %name, "cannot copy the log into the database: {e}; trying again after the next 4 MB of rows");
                    failing = Some(e);
                }
                // Not every 100 ms for as long as the store is open: at the next rows.
                behind = false;
            }
        }
    }
}
