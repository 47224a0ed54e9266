//! The daemon's journal actor: follows one journal on a thread of its own (libsystemd's
//! handle may not move between threads, and its waits block), sending a batch per run of
//! entries read, each ending at the cursor of its last entry.
//!
//! New entries are looked for every [`POLL`] even without a change notification: journald
//! tells readers about appends at most every 250 ms, too late for a row within 50 ms of the
//! attempt, while reading on from the last position in the mapped files costs next to nothing.
//! A journal that cannot be opened or read (missing, not readable yet, a file corrupted under
//! the reader) is logged once and tried again with backoff, from the last position sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{JournalError, JournalReader, JournalSettings, JournalStart, Seeked};
use crate::pipeline::{Batch, EventBudget, Events, Heartbeat, Position, ToSink};
use crate::stats::Counters;

/// How often the journal is read when no notification came.
pub const POLL: Duration = Duration::from_millis(20);

/// Entries read per batch at most (a backlog is read in runs this long).
pub const ENTRIES_PER_BATCH: usize = 4096;

/// How long a position past entries that are none of ours (other services) may go unsent: such
/// runs hold no rows, so reading them again after a restart costs nothing, while sending each
/// one would make a busy host's journal rewrite the checkpoint every few seconds.
pub const OTHERS_POSITION_EVERY: Duration = Duration::from_secs(60);

/// The journal actor.
pub struct Follower {
    settings: JournalSettings,
    start: JournalStart,
    tx: mpsc::Sender<ToSink>,
    cancel: CancellationToken,
    counters: Arc<Counters>,
    heartbeat: Heartbeat,
    budget: EventBudget,
}

impl Follower {
    /// An actor reading the journal `settings` name from `start`, sending to `tx` until
    /// `cancel`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: JournalSettings,
        start: JournalStart,
        tx: mpsc::Sender<ToSink>,
        cancel: CancellationToken,
        counters: Arc<Counters>,
        heartbeat: Heartbeat,
        budget: EventBudget,
    ) -> Self {
        Follower {
            settings,
            start,
            tx,
            cancel,
            counters,
            heartbeat,
            budget,
        }
    }

    /// Runs until cancelled (or the sink is gone).
    pub fn run(mut self) {
        let source = self.settings.source_id();
        let mut failing: Option<String> = None;
        let mut delay = Duration::from_secs(1);
        let mut last_sent = Instant::now();
        while !self.cancel.is_cancelled() {
            let mut reader = match self.open() {
                Ok(r) => r,
                Err(e) => {
                    self.failed(&mut failing, &e);
                    if !self.pause(delay) {
                        return;
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            loop {
                self.heartbeat.beat();
                if self.cancel.is_cancelled() {
                    return;
                }
                let read = match reader.read(ENTRIES_PER_BATCH) {
                    Ok(r) => r,
                    Err(e) => {
                        self.failed(&mut failing, &e);
                        delay = (delay * 2).min(Duration::from_secs(30));
                        break;
                    }
                };
                if let Some(name) = failing.take() {
                    tracing::info!(journal = %self.settings.describe(), "resolved: {name}");
                    delay = Duration::from_secs(1);
                }
                self.counters.add_read(&read.stats);
                if let Some(end) = read.end {
                    self.start = JournalStart::After(end.clone());
                    // Sent when it read entries of ours; past other services' entries only
                    // now and then (see OTHERS_POSITION_EVERY).
                    if read.stats.lines > 0 || last_sent.elapsed() >= OTHERS_POSITION_EVERY {
                        last_sent = Instant::now();
                        let batch = Batch {
                            position: Position::Journal {
                                source: source.clone(),
                                pos: end,
                            },
                            events: read.events,
                            enrichment: Vec::new(),
                            budget: None,
                        };
                        if !self.send(batch) {
                            return;
                        }
                    }
                }
                if read.at_end
                    && let Err(e) = reader.wait(POLL)
                {
                    self.failed(&mut failing, &e);
                    delay = (delay * 2).min(Duration::from_secs(30));
                    break;
                }
            }
            if !self.pause(delay) {
                return;
            }
        }
    }

    /// Opens the journal and seeks where reading goes on. A first start at the tail records
    /// the newest entry as read (so that a restart does not read that history after all).
    fn open(&mut self) -> Result<JournalReader, JournalError> {
        let mut reader = JournalReader::open(&self.settings)?;
        let seeked = reader.seek(&self.start)?;
        if seeked == Seeked::Empty {
            tracing::info!(journal = %self.settings.describe(), "no journal entry to read yet: reading every one that comes");
            self.start = JournalStart::Head;
        }
        if let Seeked::AtNewest(pos) = seeked {
            tracing::info!(journal = %self.settings.describe(), "first start without backfill: reading only new journal entries");
            self.start = JournalStart::After(pos.clone());
            let batch = Batch {
                position: Position::Journal {
                    source: self.settings.source_id(),
                    pos,
                },
                events: Events::default(),
                enrichment: Vec::new(),
                budget: None,
            };
            self.send(batch);
        }
        Ok(reader)
    }

    /// Logs a failure once until it changes.
    fn failed(&self, failing: &mut Option<String>, e: &JournalError) {
        let text = e.to_string();
        if failing.as_deref() != Some(text.as_str()) {
            tracing::error!(
                "{text}; trying again (every 30 s at most) from the last entry read, nothing is lost meanwhile"
            );
            *failing = Some(text);
        }
    }

    /// Waits `delay` (beating), or until cancelled: `false` when cancelled.
    fn pause(&self, delay: Duration) -> bool {
        let step = Duration::from_millis(200);
        let mut waited = Duration::ZERO;
        while waited < delay {
            self.heartbeat.beat();
            if self.cancel.is_cancelled() {
                return false;
            }
            std::thread::sleep(step);
            waited += step;
        }
        !self.cancel.is_cancelled()
    }

    /// Sends a batch with its share of the event budget; `false` when the sink is gone.
    fn send(&self, mut batch: Batch) -> bool {
        self.heartbeat.waiting();
        batch.budget = self.budget.take_blocking(batch.events.rows());
        let ok = self.tx.blocking_send(ToSink::Batch(batch)).is_ok();
        self.heartbeat.beat();
        ok
    }
}
