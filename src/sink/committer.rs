//! The daemon's sink actor: takes batches from the source, stages their rows in the store (the
//! intrusion record, and the logins record when one is kept) and commits them with the source
//! positions they account for, exactly once (each store's protocol is its own: see
//! [`crate::store`]).
//!
//! It runs on a thread of its own: writes and fsyncs are blocking by nature. Batches waiting
//! in the channel are merged into one commit, so under load the cost of the fsyncs is shared by
//! many rows, and when idle a row reaches the disk as soon as it arrives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{FORGET_AFTER_SECS, FilePosition, JournalPosition, Pos, Positions};
use crate::pipeline::{Committed, Consumer, Heartbeat, JournalPos, Position, ToSink};
use crate::source::fingerprint::Fingerprint;
use crate::stats::Counters;
use crate::store::{CrashPoint, Progress, Store, StoreError};

/// At most this many bytes of rows are merged into one commit.
const MAX_COMMIT_BYTES: usize = 4 * 1024 * 1024;
/// At most this many messages are merged into one commit.
const MAX_COMMIT_MESSAGES: usize = 256;

/// Positions committed so far, shared with whoever starts a new reader (reload).
pub type SharedPositions = Arc<Mutex<Positions>>;

/// Journal positions committed so far, by source, shared like [`SharedPositions`].
pub type SharedJournals = Arc<Mutex<BTreeMap<String, JournalPos>>>;

/// A journal's position as of the last commit, and including batches not committed yet.
#[derive(Debug, Clone)]
struct JournalState {
    committed: Option<JournalPos>,
    current: JournalPos,
}

#[derive(Debug, Clone)]
struct FileState {
    path: PathBuf,
    /// Offset as of the last commit (or recovery).
    committed: u64,
    /// Offset including batches not committed yet.
    current: u64,
    /// How long the file had not been seen when the daemon started (from the checkpoint).
    unseen_before: Duration,
    /// When it was last seen by this daemon (`None`: not yet).
    seen_at: Option<Instant>,
    complete: bool,
}

impl FileState {
    /// For how long (of running time, across restarts) the file has not been seen on disk.
    fn unseen(&self, started: Instant) -> Duration {
        match self.seen_at {
            Some(t) => t.elapsed(),
            None => self.unseen_before + started.elapsed(),
        }
    }
}

/// Why the committer stopped: the store failed (while the daemon was stopping, or for good).
pub type CommitError = StoreError;

/// The sink actor.
pub struct Committer {
    store: Box<dyn Store>,
    /// The consumers (alerts, responder), handed each commit's failures and logins once they
    /// are durable.
    consumers: Vec<Consumer>,
    /// Events for the consumers, waiting for their commit.
    pending_events: Vec<Committed>,
    files: BTreeMap<Fingerprint, FileState>,
    journals: BTreeMap<String, JournalState>,
    shared: SharedPositions,
    shared_journals: SharedJournals,
    counters: Arc<Counters>,
    heartbeat: Heartbeat,
    checkpoint_interval: Duration,
    /// Progress not saved yet (row-less batches, seen files).
    dirty: bool,
    /// Progress to save with this commit, not at the next interval: a source's first
    /// position (where a first start without backfill begins).
    save_now: bool,
    last_save: Instant,
    /// Rows of the intrusion record staged but not committed.
    pending_rows: u64,
    /// Rows of the logins record staged but not committed.
    pending_logins: u64,
    /// The staged rows by kind (service, mechanism, outcome), counted once committed.
    pending_kinds: BTreeMap<crate::stats::Kind, u64>,
    /// Their share of the sources' event budget, held until they are committed.
    budget: Vec<tokio::sync::OwnedSemaphorePermit>,
    /// Where to simulate a crash (tests only; see [`CrashPoint`]).
    crash: Option<CrashPoint>,
    /// When this committer started (files not seen since count from here).
    started: Instant,
    /// The daemon is stopping: a write that fails is not retried for ever.
    stop: CancellationToken,
    /// The write failure being retried, logged once when it starts (and when it changes).
    failing: Option<String>,
    /// Rows older than this are deleted, hourly (`[output] retention`).
    retention: Option<Duration>,
    /// When rows were last expired (`None`: not yet).
    last_expire: Option<Instant>,
    /// Old rows are left to delete (a run stops after [`EXPIRE_SLICE`], to commit meanwhile).
    expire_backlog: bool,
}

/// How long one run of the retention deletes before the committer goes back to its rows.
const EXPIRE_SLICE: Duration = Duration::from_secs(2);

/// How often old rows are deleted when a retention is set.
const EXPIRE_EVERY: Duration = Duration::from_secs(3600);

/// A row's kind for the counters by service and mechanism.
fn kind(e: &crate::parse::AuthEvent, outcome: &'static str) -> crate::stats::Kind {
    (
        crate::stats::label_value(&e.service, false),
        crate::stats::label_value(&e.mechanism, true),
        outcome,
    )
}

/// Appends CSV records (no header) to a state file, creating it.
fn append_records<const N: usize>(
    path: &Path,
    rows: impl Iterator<Item = [String; N]>,
) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(f);
    for row in rows {
        w.write_record(&row).map_err(std::io::Error::other)?;
    }
    w.flush()
}

impl Committer {
    /// A committer writing into `store`, resuming from a recovery's positions (files and
    /// journals), names and unseen times. Cancelling `stop` (the daemon is stopping) ends the
    /// retries of a failing write.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Box<dyn Store>,
        positions: &Positions,
        journals: &BTreeMap<String, JournalPos>,
        paths: &BTreeMap<Fingerprint, PathBuf>,
        unseen: &BTreeMap<Fingerprint, Duration>,
        counters: Arc<Counters>,
        heartbeat: Heartbeat,
        checkpoint_interval: Duration,
        stop: CancellationToken,
    ) -> Self {
        let files = positions
            .iter()
            .map(|(fp, p)| {
                let path = paths.get(fp).cloned().unwrap_or_default();
                (
                    *fp,
                    FileState {
                        path,
                        committed: p.offset,
                        current: p.offset,
                        unseen_before: unseen.get(fp).copied().unwrap_or_default(),
                        seen_at: None,
                        complete: p.complete,
                    },
                )
            })
            .collect();
        let journal_states = journals
            .iter()
            .map(|(source, pos)| {
                (
                    source.clone(),
                    JournalState {
                        committed: Some(pos.clone()),
                        current: pos.clone(),
                    },
                )
            })
            .collect();
        Committer {
            store,
            consumers: Vec::new(),
            pending_events: Vec::new(),
            files,
            journals: journal_states,
            shared: Arc::new(Mutex::new(positions.clone())),
            shared_journals: Arc::new(Mutex::new(journals.clone())),
            counters,
            heartbeat,
            checkpoint_interval,
            dirty: true,
            save_now: false,
            last_save: Instant::now(),
            pending_rows: 0,
            pending_logins: 0,
            pending_kinds: BTreeMap::new(),
            budget: Vec::new(),
            crash: CrashPoint::from_env(),
            started: Instant::now(),
            stop,
            failing: None,
            retention: None,
            last_expire: None,
            expire_backlog: false,
        }
    }

    /// Deletes rows older than `keep` from the store, once caught up and hourly after.
    pub fn with_retention(mut self, keep: Option<Duration>) -> Self {
        self.retention = keep;
        self
    }

    /// Deletes the rows older than the retention when it is time (a failure is logged and
    /// tried again at the next hour: nothing is lost by deleting late).
    fn expire_if_due(&mut self, idle: bool) {
        let Some(keep) = self.retention else { return };
        let due = self.expire_backlog
            || match self.last_expire {
                Some(t) => t.elapsed() >= EXPIRE_EVERY,
                None => idle || self.started.elapsed() >= Duration::from_secs(300),
            };
        if !due {
            return;
        }
        if !self.expire_backlog {
            self.last_expire = Some(Instant::now());
        }
        let before = chrono::Utc::now().timestamp() - keep.as_secs() as i64;
        let started = Instant::now();
        let mut total = 0;
        // Batch after batch, the watchdog fed between them, for a slice of time at most.
        self.expire_backlog = loop {
            self.heartbeat.beat();
            match self.store.expire(before) {
                Ok(0) => break false,
                Ok(n) => total += n,
                Err(e) => {
                    tracing::warn!(
                        "retention: cannot delete old rows ({e}); trying again in an hour"
                    );
                    break false;
                }
            }
            if started.elapsed() >= EXPIRE_SLICE {
                break true;
            }
        };
        self.heartbeat.beat();
        if total > 0 {
            tracing::info!(
                rows = total,
                "retention: {total} rows older than {} deleted{}",
                humantime::format_duration(keep),
                if self.expire_backlog {
                    " (more to come)"
                } else {
                    ""
                }
            );
        }
    }

    /// Hands each commit's failures and logins to `consumer` once they are durable.
    pub fn with_consumer(mut self, consumer: Consumer) -> Self {
        self.consumers.push(consumer);
        self
    }

    /// The committed positions, for readers started later.
    pub fn shared_positions(&self) -> SharedPositions {
        self.shared.clone()
    }

    /// The committed journal positions, for journal readers started later.
    pub fn shared_journals(&self) -> SharedJournals {
        self.shared_journals.clone()
    }

    /// Runs until every sender is gone, then commits what is left and saves the checkpoint.
    /// `runtime` is used to wait on the channel with a timeout (for heartbeats and timed saves).
    pub fn run(
        mut self,
        mut rx: mpsc::Receiver<ToSink>,
        runtime: tokio::runtime::Handle,
    ) -> Result<(), CommitError> {
        let tick = self.checkpoint_interval.min(Duration::from_secs(1));
        loop {
            self.heartbeat.beat();
            let first = runtime.block_on(async { tokio::time::timeout(tick, rx.recv()).await });
            match first {
                Ok(None) => break,
                Ok(Some(msg)) => {
                    let mut replies = Vec::new();
                    self.take(msg, &mut replies)?;
                    let mut n = 1;
                    while n < MAX_COMMIT_MESSAGES && self.pending_bytes() < MAX_COMMIT_BYTES {
                        match rx.try_recv() {
                            Ok(msg) => {
                                self.take(msg, &mut replies)?;
                                n += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_with_retry(&runtime)?;
                    let save_now = std::mem::take(&mut self.save_now);
                    if !replies.is_empty() || save_now {
                        // A barrier (reload) hands the committed positions to new readers: make
                        // them include row-less progress too, or those lines are read again. A
                        // source's first position is saved at once too (see `save_now`).
                        if let Err(e) = self.save_progress() {
                            self.failed(&e);
                        }
                    }
                    for r in replies {
                        let _ = r.send(());
                    }
                }
                // Idle (caught up): old rows are deleted now, and hourly after.
                Err(_timeout) => self.expire_if_due(true),
            }
            // (A daemon that is never idle still deletes them, five minutes after its start.)
            self.expire_if_due(false);
            if self.dirty && self.last_save.elapsed() >= self.checkpoint_interval {
                // Row-less progress: a failure is only logged (once) and tried again at the
                // next tick; re-reading such lines after a crash records nothing twice.
                match self.save_progress() {
                    Ok(()) => self.recovered(),
                    Err(e) => {
                        self.failed(&e);
                        // Tried again at the next interval, not at every message.
                        self.last_save = Instant::now();
                    }
                }
            }
        }
        self.commit_with_retry(&runtime)?;
        self.save_progress()?;
        Ok(())
    }

    fn take(
        &mut self,
        msg: ToSink,
        replies: &mut Vec<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), CommitError> {
        match msg {
            ToSink::Batch(b) => {
                let events = &b.events;
                if !events.backend.is_empty() {
                    self.log_backend(&events.backend);
                }
                if !events.verdicts.is_empty() {
                    self.log_verdicts(&events.verdicts);
                }
                for (i, f) in events.failures.iter().enumerate() {
                    self.store.stage_failure(f, b.enrichment.get(i));
                    *self.pending_kinds.entry(kind(f, "failure")).or_default() += 1;
                }
                self.pending_rows += events.failures.len() as u64;
                let mut rowless = events.failures.is_empty();
                if self.store.keeps_logins() {
                    let offset = events.failures.len();
                    for (i, f) in events.logins.iter().enumerate() {
                        self.store.stage_login(f, b.enrichment.get(offset + i));
                        *self.pending_kinds.entry(kind(f, "login")).or_default() += 1;
                    }
                    self.pending_logins += events.logins.len() as u64;
                    rowless &= events.logins.is_empty();
                }
                if !self.consumers.is_empty() {
                    // Enrichment is in failures-then-logins order (empty when it is off).
                    let mut enrichment = b.enrichment.into_iter();
                    let failures: Vec<Committed> = b
                        .events
                        .failures
                        .into_iter()
                        .map(|f| Committed::Failure(f, enrichment.next()))
                        .collect();
                    let logins: Vec<(u32, Committed)> = b
                        .events
                        .logins
                        .into_iter()
                        .enumerate()
                        .map(|(i, l)| {
                            let after = b.events.logins_after.get(i).copied().unwrap_or(u32::MAX);
                            (after, Committed::Login(l, enrichment.next()))
                        })
                        .collect();
                    // Back in log order: each login after the failures logged before it.
                    let mut logins = logins.into_iter().peekable();
                    for (i, f) in failures.into_iter().enumerate() {
                        while let Some((_, l)) = logins.next_if(|(after, _)| *after as usize <= i) {
                            self.pending_events.push(l);
                        }
                        self.pending_events.push(f);
                    }
                    self.pending_events.extend(logins.map(|(_, l)| l));
                }
                // The rows' share of the event budget is given back once they are committed.
                self.budget.extend(b.budget);
                match b.position {
                    Position::File {
                        fingerprint,
                        path,
                        end,
                    } => {
                        let now = Instant::now();
                        // A file first met in a batch without rows (a history skipped at a
                        // first start, say) counts as committed up to it: a recovery that
                        // goes back to "before" must not read that range again (it holds no
                        // row anyway).
                        let start = if rowless { end } else { 0 };
                        // ... and it is saved at once: until then, a crash would make the next
                        // start a first start again, skipping what came meanwhile.
                        self.save_now |= rowless && !self.files.contains_key(&fingerprint);
                        let e = self.files.entry(fingerprint).or_insert_with(|| FileState {
                            path: path.clone(),
                            committed: start,
                            current: 0,
                            unseen_before: Duration::ZERO,
                            seen_at: Some(now),
                            complete: false,
                        });
                        e.current = end;
                        e.path = path;
                        e.seen_at = Some(now);
                    }
                    Position::Journal { source, pos } => {
                        // As for files: a journal first met without rows (the tail skipped to
                        // at a first start) counts as committed up to there, saved at once.
                        self.save_now |= rowless && !self.journals.contains_key(&source);
                        let e = self.journals.entry(source).or_insert_with(|| JournalState {
                            committed: rowless.then(|| pos.clone()),
                            current: pos.clone(),
                        });
                        e.current = pos;
                    }
                }
                self.dirty = true;
            }
            ToSink::Seen(list) => {
                // Only keeps entries alive: nothing to save for it (an idle daemon writes no
                // checkpoint).
                let now = Instant::now();
                for (fp, path) in list {
                    if let Some(e) = self.files.get_mut(&fp) {
                        e.seen_at = Some(now);
                        e.path = path;
                    }
                }
            }
            ToSink::Complete(fp) => {
                if let Some(e) = self.files.get_mut(&fp) {
                    e.complete = true;
                    self.dirty = true;
                }
            }
            ToSink::Barrier(reply) => replies.push(reply),
            ToSink::SwitchOutput(path, reply) => {
                // Everything before the switch goes to the old output; when that cannot be
                // written now, the switch is refused (the rows stay pending, retried as usual).
                let r = self.commit().and_then(|()| self.switch_output(&path));
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
        }
        Ok(())
    }

    /// Keeps the auth-backend failures for reports (`state_dir/auth-backend-failures.csv`: time,
    /// program, client address or relay, reason, and `server` or `relay`; files written before
    /// relays were recorded lack the last column). Not part of the exactly-once record: after a
    /// crash a few may be listed twice.
    fn log_backend(&self, failures: &[crate::parse::BackendFailure]) {
        let path = self.state_file(crate::state::BACKEND_LOG);
        let rows = failures.iter().map(|b| {
            [
                b.timestamp.to_rfc3339(),
                b.service.clone(),
                b.kind.peer().into_owned(),
                b.reason.clone(),
                b.kind.as_str().to_owned(),
            ]
        });
        if let Err(e) = append_records(&path, rows) {
            tracing::warn!(path = %path.display(), "cannot record auth-backend failures: {e}");
        }
    }

    /// A file of the state directory.
    fn state_file(&self, name: &str) -> PathBuf {
        crate::state::path(self.store.state_dir(), name)
    }

    /// Keeps Dovecot's verdicts for reports (`state_dir/auth-verdicts.csv`: time, address,
    /// username, `known` or `unknown`). Like the backend log, not part of the exactly-once
    /// record: after a crash a few may be listed twice.
    fn log_verdicts(&self, verdicts: &[crate::parse::AuthVerdict]) {
        let path = self.state_file(crate::state::VERDICT_LOG);
        let rows = verdicts.iter().map(|v| {
            [
                v.timestamp.to_rfc3339(),
                v.ip.to_string(),
                crate::sink::csv::neutralise(&v.username).into_owned(),
                if v.known_user { "known" } else { "unknown" }.to_owned(),
            ]
        });
        if let Err(e) = append_records(&path, rows) {
            tracing::warn!(path = %path.display(), "cannot record Dovecot's verdicts: {e}");
        }
    }

    /// Writes the intrusion record to `path` from now on (the store says whether it can).
    fn switch_output(&mut self, path: &Path) -> Result<(), CommitError> {
        let progress = self.progress();
        self.store.switch_output(path, &progress)?;
        self.mark_committed();
        Ok(())
    }

    /// Commits pending rows; on failure, retries with backoff (the pipeline waits: nothing is
    /// read that cannot be written) until it works, logging when the failure starts, changes
    /// and ends. Once the daemon is stopping, a failure ends the retries: the checkpoint then
    /// makes the next start read the lines again.
    fn commit_with_retry(&mut self, runtime: &tokio::runtime::Handle) -> Result<(), CommitError> {
        let mut delay = Duration::from_millis(500);
        let writes = self.pending() > 0;
        loop {
            match self.commit() {
                Ok(()) => {
                    // (Nothing to write proves nothing about a failure being over.)
                    if writes {
                        self.recovered();
                    }
                    return Ok(());
                }
                Err(e) => {
                    if self.stop.is_cancelled() {
                        return Err(e);
                    }
                    self.failed(&e);
                    self.heartbeat.beat();
                    let stop = self.stop.clone();
                    // The future is made inside the runtime: a timer needs its context.
                    runtime.block_on(async move {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = stop.cancelled() => {}
                        }
                    });
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Logs a write failure once per state (a new kind of failure is logged again).
    fn failed(&mut self, e: &CommitError) {
        let state = e.state();
        if self.failing.as_deref() != Some(state.as_str()) {
            tracing::error!(
                "cannot write rows or positions: {e}; retrying (every 30 s at most) until it works, nothing is read meanwhile"
            );
            self.failing = Some(state);
            *self.counters.store_problem.lock().expect("problem lock") =
                Some(format!("cannot write to the store: {e}"));
        }
    }

    /// Says that writing works again after a failure.
    fn recovered(&mut self) {
        if self.failing.take().is_some() {
            tracing::info!(store = %self.store.describe(), "writing rows and positions works again");
            *self.counters.store_problem.lock().expect("problem lock") = None;
        }
    }

    /// Bytes of rows formatted and not committed, in both records.
    fn pending_bytes(&mut self) -> usize {
        self.store.staged_bytes()
    }

    /// Rows not committed, in both records.
    fn pending(&self) -> u64 {
        self.pending_rows + self.pending_logins
    }

    /// Commits the staged rows with the positions after them, as one unit (the store says
    /// how). A failure leaves the rows staged, for a retry.
    fn commit(&mut self) -> Result<(), CommitError> {
        if self.pending() == 0 {
            // Row-less progress is saved on a timer (re-reading it after a crash is harmless).
            // (Logins with no record kept still reach the alerts, and give their share of the
            // event budget back: nothing of theirs waits for a commit.)
            self.budget.clear();
            self.hand_to_consumers();
            return Ok(());
        }
        let progress = self.progress();
        self.store.commit(&progress)?;
        self.counters.checkpoints.fetch_add(1, Relaxed);
        CrashPoint::AfterRows.here(self.crash);
        if self.crash == Some(CrashPoint::HangAfterRows) {
            // A stuck sink (a dead NFS server, say): the watchdog must stop being pinged.
            eprintln!("simulated hang after a commit");
            loop {
                std::thread::park();
            }
        }
        self.counters.failures.fetch_add(self.pending_rows, Relaxed);
        self.counters.logins.fetch_add(self.pending_logins, Relaxed);
        self.counters
            .add_kinds(&std::mem::take(&mut self.pending_kinds));
        self.pending_rows = 0;
        self.pending_logins = 0;
        self.budget.clear();
        self.mark_committed();
        self.hand_to_consumers();
        Ok(())
    }

    /// Gives the committed events to the consumers (waiting when one is behind: their queues
    /// are bounded, and nothing is dropped).
    fn hand_to_consumers(&mut self) {
        if self.pending_events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.pending_events);
        let last = self.consumers.len().saturating_sub(1);
        let mut events = Some(events);
        let mut gone = Vec::new();
        for (i, c) in self.consumers.iter_mut().enumerate() {
            let batch = if i == last {
                events.take().unwrap_or_default()
            } else {
                events.clone().unwrap_or_default()
            };
            // Waiting on a consumer is not being stuck (the watchdog knows the difference).
            self.heartbeat.waiting();
            let sent = (c.send)(batch);
            self.heartbeat.beat();
            if !sent {
                tracing::error!("the {} consumer is gone: it gets no more events", c.name);
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            self.consumers.remove(i);
        }
    }

    /// Saves progress that carries no rows.
    fn save_progress(&mut self) -> Result<(), CommitError> {
        if self.pending() > 0 {
            return Ok(());
        }
        let progress = self.progress();
        self.store.save_progress(&progress)?;
        self.counters.checkpoints.fetch_add(1, Relaxed);
        self.mark_committed();
        Ok(())
    }

    fn mark_committed(&mut self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.counters.last_commit_unix.store(now, Relaxed);
        let forget = Duration::from_secs(FORGET_AFTER_SECS);
        let started = self.started;
        self.files.retain(|_, f| f.unseen(started) < forget);
        let mut journals = self.shared_journals.lock().expect("positions lock");
        journals.clear();
        for (source, j) in self.journals.iter_mut() {
            j.committed = Some(j.current.clone());
            journals.insert(source.clone(), j.current.clone());
        }
        drop(journals);
        let mut shared = self.shared.lock().expect("positions lock");
        shared.clear();
        for (fp, f) in self.files.iter_mut() {
            f.committed = f.current;
            shared.insert(
                *fp,
                Pos {
                    offset: f.current,
                    complete: f.complete,
                },
            );
        }
        self.dirty = false;
        self.last_save = Instant::now();
    }

    /// Where every source stands: before the staged rows and after them.
    fn progress(&self) -> Progress {
        Progress {
            files: self
                .files
                .iter()
                .map(|(fp, f)| FilePosition {
                    fingerprint: *fp,
                    path: f.path.clone(),
                    offset_before: f.committed,
                    offset: f.current,
                    unseen_secs: f.unseen(self.started).as_secs(),
                    complete: f.complete,
                })
                .collect(),
            journals: self
                .journals
                .iter()
                .map(|(source, j)| JournalPosition {
                    source: source.clone(),
                    before: j.committed.clone(),
                    after: j.current.clone(),
                })
                .collect(),
        }
    }
}
