//! The daemon's sink actor: takes batches from the source, appends their rows to the CSVs (the
//! intrusion record, and the logins record when one is kept) and records the source positions
//! with them, exactly once (the protocol is described in [`crate::checkpoint`]).
//!
//! It runs on a thread of its own: appending and fsync are blocking by nature. Batches waiting
//! in the channel are merged into one commit, so under load the cost of the fsyncs is shared by
//! many rows, and when idle a row reaches the disk as soon as it arrives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{
    Checkpoint, CheckpointError, FORGET_AFTER_SECS, FilePosition, JournalPosition, OutputPosition,
    Pos, Positions, Store, VERSION,
};
use crate::pipeline::{Committed, Heartbeat, JournalPos, Position, ToSink};
use crate::sink::{CsvFile, RowFormatter, SinkError};
use crate::source::fingerprint::Fingerprint;
use crate::stats::Counters;

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

/// Why the committer stopped.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The CSV failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl CommitError {
    /// The system's error behind this one, for telling one failure state from another.
    fn kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            CommitError::Sink(SinkError::Io { source, .. }) => Some(source.kind()),
            CommitError::Checkpoint(CheckpointError::Io { source, .. }) => Some(source.kind()),
            _ => None,
        }
    }
}

/// The logins record and its rows not committed yet.
struct LoginsOutput {
    csv: CsvFile,
    rows: RowFormatter,
    pending: u64,
}

/// The sink actor.
pub struct Committer {
    store: Store,
    csv: CsvFile,
    rows: RowFormatter,
    /// The logins record (`None`: `[output] logins = ""`, successful logins are not kept).
    logins: Option<LoginsOutput>,
    /// The alerts consumer, handed each commit's failures and logins once they are durable.
    alerts: Option<std::sync::mpsc::SyncSender<Vec<Committed>>>,
    /// Events for the alerts consumer, waiting for their commit.
    pending_events: Vec<Committed>,
    /// Lengths a failed write must still be cut back to (the intrusion record, the logins
    /// record) before anything else is appended: a cut that failed once is retried first, so
    /// that the batch is never appended after its own partial copy.
    cuts: [Option<u64>; 2],
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
    /// Rows of the intrusion record formatted but not committed.
    pending_rows: u64,
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

/// Starts a new file at the path of an output that was archived (or deleted) by the
/// postmaster: new rows go there, not on into the archive.
fn reopen_if_moved(csv: &mut CsvFile) -> Result<(), SinkError> {
    if csv.moved_away() {
        let path = csv.path().to_path_buf();
        tracing::info!(path = %path.display(), "the CSV was moved away; starting a new one");
        *csv = CsvFile::open_append(&path)?;
    }
    Ok(())
}

/// Moments of a commit at which the durability tests make the process die, to prove that a
/// restart recovers from each. Chosen with `MAILLOGSENTINEL_TEST_CRASH=after-checkpoint`,
/// `mid-rows`, `between-records`, `after-rows` or `hang-after-rows`; never set in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The checkpoint is saved, no row is written.
    AfterCheckpoint,
    /// Half of the rows' bytes are written.
    MidRows,
    /// The intrusion record's rows are written and synced, the logins record's not.
    BetweenRecords,
    /// The rows are written and synced; nothing after.
    AfterRows,
    /// After the rows, the sink thread stops responding (but the process lives on).
    HangAfterRows,
}

impl CrashPoint {
    fn from_env() -> Option<CrashPoint> {
        match std::env::var("MAILLOGSENTINEL_TEST_CRASH").ok()?.as_str() {
            "after-checkpoint" => Some(CrashPoint::AfterCheckpoint),
            "mid-rows" => Some(CrashPoint::MidRows),
            "between-records" => Some(CrashPoint::BetweenRecords),
            "after-rows" => Some(CrashPoint::AfterRows),
            "hang-after-rows" => Some(CrashPoint::HangAfterRows),
            _ => None,
        }
    }
}

/// Dies on the spot (like `kill -9` or a power cut) when `at` is the chosen crash point.
fn crash_point(at: CrashPoint, chosen: Option<CrashPoint>) {
    if chosen == Some(at) {
        eprintln!("simulated crash at {at:?}");
        std::process::abort();
    }
}

impl Committer {
    /// A committer writing `csv` (and `logins`, the logins record), resuming from a recovery's
    /// positions (files and journals), names and unseen times. Cancelling `stop` (the daemon is
    /// stopping) ends the retries of a failing write.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        csv: CsvFile,
        logins: Option<CsvFile>,
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
            csv,
            rows: RowFormatter::default(),
            logins: logins.map(|csv| LoginsOutput {
                csv,
                rows: RowFormatter::default(),
                pending: 0,
            }),
            alerts: None,
            pending_events: Vec::new(),
            cuts: [None, None],
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
            budget: Vec::new(),
            crash: CrashPoint::from_env(),
            started: Instant::now(),
            stop,
            failing: None,
        }
    }

    /// Hands each commit's failures and logins to `alerts` once they are durable.
    pub fn with_alerts(mut self, alerts: std::sync::mpsc::SyncSender<Vec<Committed>>) -> Self {
        self.alerts = Some(alerts);
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
                Err(_timeout) => {}
            }
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
                    self.rows.push(f, b.enrichment.get(i));
                }
                self.pending_rows += events.failures.len() as u64;
                let mut rowless = events.failures.is_empty();
                if let Some(l) = &mut self.logins {
                    let offset = events.failures.len();
                    for (i, f) in events.logins.iter().enumerate() {
                        l.rows.push(f, b.enrichment.get(offset + i));
                    }
                    l.pending += events.logins.len() as u64;
                    rowless &= events.logins.is_empty();
                }
                if self.alerts.is_some() {
                    // Enrichment is in failures-then-logins order (empty when it is off).
                    let mut enrichment = b.enrichment.into_iter();
                    for f in b.events.failures {
                        enrichment.next();
                        self.pending_events.push(Committed::Failure(f));
                    }
                    for l in b.events.logins {
                        self.pending_events
                            .push(Committed::Login(l, enrichment.next()));
                    }
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

    /// A file of the state directory (where the checkpoint is).
    fn state_file(&self, name: &str) -> PathBuf {
        self.store.path().with_file_name(name)
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

    /// Writes to `path` from now on, once a checkpoint naming it is saved (until then, and if
    /// that fails, the old output stays in use).
    fn switch_output(&mut self, path: &Path) -> Result<(), CommitError> {
        let csv = CsvFile::open_append(path)?;
        let old = std::mem::replace(&mut self.csv, csv);
        if let Err(e) = self.save_progress() {
            self.csv = old;
            return Err(e);
        }
        tracing::info!(from = %old.path().display(), to = %path.display(), "output switched");
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
        let state = format!("{:?}", e.kind());
        if self.failing.as_deref() != Some(state.as_str()) {
            tracing::error!(
                "cannot write rows or checkpoint: {e}; retrying (every 30 s at most) until it works, nothing is read meanwhile"
            );
            self.failing = Some(state);
        }
    }

    /// Says that writing works again after a failure.
    fn recovered(&mut self) {
        if self.failing.take().is_some() {
            tracing::info!(path = %self.csv.path().display(), "writing rows and checkpoint works again");
        }
    }

    /// Bytes of rows formatted and not committed, in both records.
    fn pending_bytes(&mut self) -> usize {
        self.rows.bytes().len() + self.logins.as_mut().map_or(0, |l| l.rows.bytes().len())
    }

    /// Rows not committed, in both records.
    fn pending(&self) -> u64 {
        self.pending_rows + self.logins.as_ref().map_or(0, |l| l.pending)
    }

    /// Writes the checkpoint describing the state after the pending rows, then the rows: the
    /// intrusion record's, then the logins record's. A failure cuts both back, so that a retry
    /// (or a restart) writes the batch whole into each.
    fn commit(&mut self) -> Result<(), CommitError> {
        if self.pending() == 0 {
            // Row-less progress is saved on a timer (re-reading it after a crash is harmless).
            // (Logins with no record kept still reach the alerts, and give their share of the
            // event budget back: nothing of theirs waits for a commit.)
            self.budget.clear();
            self.hand_to_alerts();
            return Ok(());
        }
        // A failed write's partial rows go first (through the handle that wrote them, even if
        // the file was moved away since).
        self.cut_back()?;
        reopen_if_moved(&mut self.csv)?;
        // The length on disk, not as last written: someone may have truncated the file.
        self.csv.refresh_len();
        let len_before = self.csv.len();
        let bytes = self.rows.bytes();
        let len_after = len_before + bytes.len() as u64;
        let mut logins_lens = None;
        if let Some(l) = &mut self.logins {
            reopen_if_moved(&mut l.csv)?;
            l.csv.refresh_len();
            let before = l.csv.len();
            logins_lens = Some((before, before + l.rows.bytes().len() as u64));
        }
        let cp = self.checkpoint((len_before, len_after), logins_lens);
        self.store.save(&cp)?;
        self.counters.checkpoints.fetch_add(1, Relaxed);
        crash_point(CrashPoint::AfterCheckpoint, self.crash);
        let bytes = self.rows.bytes();
        if self.crash == Some(CrashPoint::MidRows) {
            let half = bytes.len() / 2;
            let _ = self
                .csv
                .append(&bytes[..half])
                .and_then(|_| self.csv.sync());
            crash_point(CrashPoint::MidRows, self.crash);
        }
        let mut written = if bytes.is_empty() {
            Ok(())
        } else {
            self.csv.append(bytes).and_then(|_| self.csv.sync())
        };
        if written.is_ok() {
            crash_point(CrashPoint::BetweenRecords, self.crash);
        }
        if written.is_ok()
            && let Some(l) = &mut self.logins
        {
            let bytes = l.rows.bytes();
            if !bytes.is_empty() {
                written = l.csv.append(bytes).and_then(|_| l.csv.sync());
            }
        }
        if let Err(e) = written {
            // Take the partial rows back out of both, so that a retry appends them whole.
            self.cuts = [Some(len_before), logins_lens.map(|(before, _)| before)];
            if let Err(cut) = self.cut_back() {
                tracing::error!(
                    "cannot cut a failed write back (tried again before the next write): {cut}"
                );
            }
            return Err(e.into());
        }
        crash_point(CrashPoint::AfterRows, self.crash);
        if self.crash == Some(CrashPoint::HangAfterRows) {
            // A stuck sink (a dead NFS server, say): the watchdog must stop being pinged.
            eprintln!("simulated hang after a commit");
            loop {
                std::thread::park();
            }
        }
        self.counters.failures.fetch_add(self.pending_rows, Relaxed);
        self.pending_rows = 0;
        self.rows.clear();
        if let Some(l) = &mut self.logins {
            self.counters.logins.fetch_add(l.pending, Relaxed);
            l.pending = 0;
            l.rows.clear();
        }
        self.budget.clear();
        self.mark_committed();
        self.hand_to_alerts();
        Ok(())
    }

    /// Cuts the records back to the lengths a failed write left to cut (see `cuts`); what
    /// cannot be cut stays to do.
    fn cut_back(&mut self) -> Result<(), SinkError> {
        if let Some(len) = self.cuts[0] {
            self.csv.truncate_to(len)?;
            self.cuts[0] = None;
        }
        if let Some(len) = self.cuts[1] {
            if let Some(l) = &mut self.logins {
                l.csv.truncate_to(len)?;
            }
            self.cuts[1] = None;
        }
        Ok(())
    }

    /// Gives the committed events to the alerts consumer (waiting when it is behind: its queue
    /// is bounded, and nothing is dropped).
    fn hand_to_alerts(&mut self) {
        if self.pending_events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.pending_events);
        if let Some(tx) = &self.alerts {
            // Waiting on a consumer is not being stuck (the watchdog knows the difference).
            self.heartbeat.waiting();
            let sent = tx.send(events);
            self.heartbeat.beat();
            if sent.is_err() {
                tracing::error!("the alerts consumer is gone: no alert can be raised");
                self.alerts = None;
            }
        }
    }

    /// Saves progress that carries no rows.
    fn save_progress(&mut self) -> Result<(), CommitError> {
        if self.pending() > 0 {
            return Ok(());
        }
        let len = self.csv.len();
        let logins = self.logins.as_ref().map(|l| (l.csv.len(), l.csv.len()));
        let cp = self.checkpoint((len, len), logins);
        self.store.save(&cp)?;
        self.counters.checkpoints.fetch_add(1, Relaxed);
        self.mark_committed();
        Ok(())
    }

    fn mark_committed(&mut self) {
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

    /// The checkpoint for the output lengths before and after the pending rows (and the logins
    /// record's, when one is kept).
    fn checkpoint(&self, output: (u64, u64), logins: Option<(u64, u64)>) -> Checkpoint {
        let position = |csv: &CsvFile, (len_before, len_after): (u64, u64)| OutputPosition {
            path: csv.path().to_path_buf(),
            len_before,
            len_after,
            dev: csv.identity().0,
            ino: csv.identity().1,
        };
        Checkpoint {
            version: VERSION,
            output: position(&self.csv, output),
            logins: self
                .logins
                .as_ref()
                .zip(logins)
                .map(|(l, lens)| position(&l.csv, lens)),
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
