//! What flows between the daemon's stages: the source sends [`ToSink`] messages through a
//! bounded channel to the sink's committer, which writes rows and checkpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::parse::AuthEvent;
use crate::source::fingerprint::Fingerprint;

/// Messages in flight between stages: batches of blocks, not single lines.
pub const CHANNEL_CAPACITY: usize = 64;

/// Failures (rows) in flight between the source and the sink's commit, whatever the number of
/// batches: the bound that keeps memory flat when a backlog dense with failures is read (a
/// 1 MiB block can hold 7,000 of them, and batches wait in two channels and the enrichment
/// stage). A batch takes its share before it is sent and gives it back when it is dropped
/// (committed). One batch larger than the whole budget takes all of it.
pub const MAX_EVENTS_IN_FLIGHT: usize = 8192;

/// The budget of failures in flight (see [`MAX_EVENTS_IN_FLIGHT`]), shared by the sources.
#[derive(Debug, Clone)]
pub struct EventBudget {
    permits: Arc<tokio::sync::Semaphore>,
    size: usize,
}

impl Default for EventBudget {
    fn default() -> Self {
        EventBudget::new(MAX_EVENTS_IN_FLIGHT)
    }
}

impl EventBudget {
    /// A budget of `events`.
    pub fn new(events: usize) -> Self {
        let size = events.clamp(1, u32::MAX as usize);
        EventBudget {
            permits: Arc::new(tokio::sync::Semaphore::new(size)),
            size,
        }
    }

    /// Waits (blocking the calling thread, a source's) until `events` may be in flight, and
    /// returns the share to carry with them; `None` when there are none.
    pub fn take_blocking(&self, events: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if events == 0 {
            return None;
        }
        // A batch larger than the whole budget takes all of it.
        let n = events.min(self.size) as u32;
        futures::executor::block_on(self.permits.clone().acquire_many_owned(n)).ok()
    }

    /// Events that may still be sent before a source waits.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// A message to the sink.
#[derive(Debug)]
pub enum ToSink {
    /// Rows from a contiguous range of one source, and the position just past it.
    Batch(Batch),
    /// These files were seen on disk (keeps their checkpoint entries alive).
    Seen(Vec<(Fingerprint, PathBuf)>),
    /// This file was read to its end and closed for good (rotated away and quiet, or a
    /// compressed rotation read whole).
    Complete(Fingerprint),
    /// Commit everything sent before this, then answer (reload uses it before restarting a
    /// reader, so that the new reader starts from committed positions).
    Barrier(oneshot::Sender<()>),
    /// Write to another CSV from now on (reload).
    SwitchOutput(PathBuf, oneshot::Sender<Result<(), String>>),
}

/// A position in the journal: the cursor of the last entry accounted for, and its timestamp
/// (to resume from when the cursor's entry is gone). (Here, with the other positions, so that
/// the stages' nouns depend on no stage.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JournalPos {
    /// libsystemd's cursor of the entry.
    pub cursor: String,
    /// The entry's `__REALTIME_TIMESTAMP`, microseconds since the epoch.
    pub realtime_usec: u64,
}

/// Where a batch ends in its source: opaque to every stage but the source that made it and
/// the committer that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A log file's byte offset.
    File {
        /// The file's identity.
        fingerprint: Fingerprint,
        /// The name it was read under.
        path: PathBuf,
        /// Offset just past the last line of the range.
        end: u64,
    },
    /// A journal's last entry read.
    Journal {
        /// Which journal (see [`crate::source::journal::JournalSettings::source_id`]).
        source: String,
        /// The entry.
        pos: JournalPos,
    },
}

/// What a range of a source held, sorted by where it goes.
#[derive(Debug, Default)]
pub struct Events {
    /// Failed logins, in log order: rows of the intrusion record.
    pub failures: Vec<AuthEvent>,
    /// Successful logins, in log order: rows of the logins record.
    pub logins: Vec<AuthEvent>,
    /// For each login, how many failures came before it in the range: the log's order of the
    /// two, which the consumers need (a failure after a login counts, one before it is
    /// forgiven) and timestamps cannot give (a second holds many lines).
    pub logins_after: Vec<u32>,
    /// Failures of the server's own authentication side, or of a relay (for reports).
    pub backend: Vec<crate::parse::BackendFailure>,
    /// Dovecot's verdicts on attempts (for reports).
    pub verdicts: Vec<crate::parse::AuthVerdict>,
}

impl Events {
    /// Rows (failures and logins): what the [`EventBudget`] counts.
    pub fn rows(&self) -> usize {
        self.failures.len() + self.logins.len()
    }

    /// Every row's event, failures first, then logins: the order of [`Batch::enrichment`].
    pub fn rows_iter(&self) -> impl Iterator<Item = &AuthEvent> {
        self.failures.iter().chain(&self.logins)
    }
}

/// One committed event, as the consumers (alerts, responder) take them (in log order).
#[derive(Debug, Clone)]
pub enum Committed {
    /// A failed login, with its enrichment.
    Failure(AuthEvent, Option<crate::enrich::Enrichment>),
    /// A successful login, with its enrichment.
    Login(AuthEvent, Option<crate::enrich::Enrichment>),
}

/// A consumer of committed events (alerts, the responder): a name for the log, and how to
/// hand it one commit's events, waiting while it is behind (`false`: it is gone).
pub struct Consumer {
    /// Its name.
    pub name: &'static str,
    /// Hands it events.
    pub send: Box<dyn FnMut(Vec<Committed>) -> bool + Send>,
}

impl Consumer {
    /// A consumer fed through a bounded channel.
    pub fn channel<T: Send + 'static>(
        name: &'static str,
        tx: std::sync::mpsc::SyncSender<T>,
        wrap: fn(Vec<Committed>) -> T,
    ) -> Self {
        Consumer {
            name,
            send: Box::new(move |events| tx.send(wrap(events)).is_ok()),
        }
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .finish()
    }
}

/// Rows from one contiguous range of one source (a file's bytes, a journal's entries).
#[derive(Debug)]
pub struct Batch {
    /// Where the range ends.
    pub position: Position,
    /// What the range held.
    pub events: Events,
    /// What the enrichment stage found for each row, in [`Events::rows_iter`] order; empty
    /// when enrichment is off.
    pub enrichment: Vec<crate::enrich::Enrichment>,
    /// This batch's share of the [`EventBudget`], given back when the batch is dropped.
    pub budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Proof of life for the watchdog: an actor beats in its loop; the watchdog pings systemd only
/// while every actor beat recently.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    last: Arc<AtomicU64>,
    epoch: Instant,
}

/// Marks an actor as waiting on another stage (alive, just blocked by backpressure).
const WAITING: u64 = u64::MAX;

impl Heartbeat {
    /// A heartbeat counted from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        let hb = Heartbeat {
            last: Arc::new(AtomicU64::new(0)),
            epoch,
        };
        hb.beat();
        hb
    }

    /// Records that the actor is alive now.
    pub fn beat(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Records that the actor is blocked on a downstream stage (which has its own heartbeat).
    pub fn waiting(&self) {
        self.last.store(WAITING, Ordering::Relaxed);
    }

    /// Whether the actor beat within `max_ms` milliseconds (or is waiting downstream).
    pub fn alive_within(&self, max_ms: u64) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        last == WAITING || (self.epoch.elapsed().as_millis() as u64).saturating_sub(last) <= max_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_taken_and_given_back_and_a_huge_batch_takes_all_of_it() {
        let budget = EventBudget::new(4);
        let a = budget.take_blocking(3).unwrap();
        assert_eq!(budget.available(), 1);
        drop(a);
        assert_eq!(budget.available(), 4);
        // Larger than the whole budget: it does not wait for ever, it takes everything.
        let all = budget.take_blocking(10).unwrap();
        assert_eq!(budget.available(), 0);
        drop(all);
        assert!(budget.take_blocking(0).is_none());
    }
}
