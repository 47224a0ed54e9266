//! The source actor for one configured log: follows it as it is written, through rotation,
//! truncation, deletion and replacement, reading each line once.
//!
//! A `Tailer` runs on a thread of its own (file reads and parsing are blocking CPU work) and
//! wakes on change notifications or every `poll_interval`. Every wake does the same checks, so
//! no event is ever required for correctness, only for speed:
//!
//! 1. `stat` the configured path: a different inode means the file was rotated or replaced,
//!    the old handle is kept open to be finished ("draining"); a missing path means it was
//!    renamed or deleted; a shorter file, or a changed first line, means it was truncated.
//! 2. After a rotation, truncation or on a timer, look at the rotated siblings: any whose
//!    fingerprint has unread bytes (the copy `copytruncate` made, a file rotated while the
//!    daemon was down) is read from its recorded offset.
//! 3. Read draining files, then the live file, in blocks of whole lines; a line still being
//!    written waits for its newline.
//!
//! Positions are per fingerprint ([`super::fingerprint`]) and only ever move forward past whole
//! lines; each block goes to the sink as a [`Batch`] carrying its end offset.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fingerprint::{self, Fingerprint};
use super::rotated;
use super::{BlockReader, READ_CHUNK};
use crate::checkpoint::{Pos, Positions};
use crate::parse::{Parser, YearContext};
use crate::pipeline::{Batch, EventBudget, Events, Heartbeat, Position, ToSink};
use crate::stats::{Counters, Stats};

/// Why a tailer is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something changed in the directory (the file or a sibling).
    Changed,
    /// Something happened to a sibling name (rotation): look at the siblings too.
    Siblings,
    /// Stop (the token says whether for good).
    Stop,
}

/// How a tailer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Resume from checkpoints; files never seen are read from their start.
    Resume,
    /// First start without backfill: everything already on disk counts as read.
    AtEnd,
}

/// Settings of one tailer.
#[derive(Debug, Clone)]
pub struct TailerSettings {
    /// The configured log path.
    pub path: PathBuf,
    /// Longest line accepted.
    pub max_line_bytes: usize,
    /// The server recorded for lines that name no host (`[sources] server`).
    pub server: String,
    /// Wake at least this often.
    pub poll_interval: Duration,
    /// Keep reading a rotated-away file this long after it last grew.
    pub rotate_wait: Duration,
    /// Look at the siblings at least this often, to keep their checkpoint entries alive.
    pub rescan_interval: Duration,
}

/// A file being read.
struct Tracked {
    file: File,
    path: PathBuf,
    dev: u64,
    ino: u64,
    fp: Option<Fingerprint>,
    offset: u64,
    /// Inside an overlong line: skip to its newline.
    skipping: bool,
    /// When it last grew, or (for a rotated-away file) when its rotation was seen if later: a
    /// draining file is closed once it has been quiet this long since both.
    last_growth: Instant,
    /// The furthest end of data read so far: bytes beyond it are growth.
    seen_end: u64,
    /// Where its data starts: after a leading hole of NULs (see `fingerprint::locate`), else 0.
    data_start: u64,
}

/// A rotated sibling as a rescan found it.
#[derive(Debug, Clone, Copy)]
struct SiblingSeen {
    size: u64,
    mtime: Option<SystemTime>,
    fp: Fingerprint,
    compressed: bool,
}

/// What a tailer is doing, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Not looked at yet.
    Starting,
    /// Reading the file as it is written.
    Following,
    /// Reading the file, and finishing a rotated-away one.
    Draining,
    /// The file does not exist (yet).
    Waiting,
    /// The file exists but cannot be opened or read.
    Unreadable,
    /// Stopped.
    Stopped,
}

impl SourceState {
    fn from_u8(v: u8) -> SourceState {
        match v {
            1 => SourceState::Following,
            2 => SourceState::Draining,
            3 => SourceState::Waiting,
            4 => SourceState::Unreadable,
            5 => SourceState::Stopped,
            _ => SourceState::Starting,
        }
    }

    /// For people: "following", "waiting for the file"...
    pub fn describe(self) -> &'static str {
        match self {
            SourceState::Starting => "starting",
            SourceState::Following => "following",
            SourceState::Draining => "following, finishing a rotated file",
            SourceState::Waiting => "waiting for the file",
            SourceState::Unreadable => "unreadable",
            SourceState::Stopped => "stopped",
        }
    }
}

/// A tailer's figures for `status` and the status line, updated at every pass: plain atomics
/// the control loop reads whenever it likes, never a lock the tailer waits on.
#[derive(Debug, Default)]
pub struct SourceGauges {
    /// Bytes of the live file not read yet.
    pub lag: AtomicU64,
    /// Where reading is in the live file.
    pub offset: AtomicU64,
    /// The live file's size at the last pass.
    pub size: AtomicU64,
    /// When reading last moved on in the live file (seconds since the epoch; 0: not yet).
    pub last_read_unix: AtomicU64,
    state: std::sync::atomic::AtomicU8,
}

impl SourceGauges {
    /// What the tailer is doing.
    pub fn state(&self) -> SourceState {
        SourceState::from_u8(self.state.load(Relaxed))
    }

    fn set_state(&self, s: SourceState) {
        self.state.store(s as u8, Relaxed);
    }
}

/// The source actor for one configured path.
pub struct Tailer {
    settings: TailerSettings,
    tx: mpsc::Sender<ToSink>,
    wake: std_mpsc::Receiver<Wake>,
    cancel: CancellationToken,
    counters: Arc<Counters>,
    heartbeat: Heartbeat,
    gauges: Arc<SourceGauges>,
    /// Failures in flight, shared by every source (see [`EventBudget`]).
    budget: EventBudget,
    positions: Positions,
    start: Start,
    parser: Parser,
    buf: Vec<u8>,
    live: Option<Tracked>,
    draining: Vec<Tracked>,
    last_rescan: Option<Instant>,
    rescan_due: bool,
    /// Siblings as the last rescan found them: identity (device, inode) -> what was learnt by
    /// opening it. One unchanged since is not opened again to be fingerprinted.
    siblings: HashMap<(u64, u64), SiblingSeen>,
    /// Problems already reported (reported again only after they went away).
    reported: BTreeSet<String>,
    warned_missing: bool,
    /// The file went missing through a rotation: its reappearance is not news.
    quiet_missing: bool,
    closed: bool,
}

impl Tailer {
    /// A tailer for `settings.path`, resuming from `positions`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: TailerSettings,
        positions: Positions,
        start: Start,
        tx: mpsc::Sender<ToSink>,
        wake: std_mpsc::Receiver<Wake>,
        cancel: CancellationToken,
        counters: Arc<Counters>,
        heartbeat: Heartbeat,
        gauges: Arc<SourceGauges>,
        budget: EventBudget,
    ) -> Self {
        let cap = READ_CHUNK.max(settings.max_line_bytes + 1);
        Tailer {
            parser: Parser::new(settings.max_line_bytes, &settings.server),
            settings,
            tx,
            wake,
            cancel,
            counters,
            heartbeat,
            gauges,
            budget,
            positions,
            start,
            buf: vec![0; cap],
            live: None,
            draining: Vec::new(),
            last_rescan: None,
            rescan_due: true,
            siblings: HashMap::new(),
            reported: BTreeSet::new(),
            warned_missing: false,
            quiet_missing: false,
            closed: false,
        }
    }

    /// Follows the file until cancelled or the sink goes away. Dropping the tailer's sender at
    /// the end tells the sink this source is done.
    pub fn run(mut self) {
        let path = self.settings.path.display().to_string();
        tracing::debug!(path, "following");
        while !self.cancel.is_cancelled() && !self.closed {
            self.heartbeat.beat();
            self.tick();
            // "Everything on disk counts as read" applies to what was there at start only.
            self.start = Start::Resume;
            if self.cancel.is_cancelled() || self.closed {
                break;
            }
            match self.wake.recv_timeout(self.settings.poll_interval) {
                Ok(w) => {
                    self.note_wake(w);
                    // Coalesce a burst of notifications into one pass.
                    while let Ok(w) = self.wake.try_recv() {
                        self.note_wake(w);
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.gauges.lag.store(0, Relaxed);
        self.gauges.set_state(SourceState::Stopped);
        tracing::debug!(path, "stopped following");
    }

    fn note_wake(&mut self, w: Wake) {
        if w == Wake::Siblings {
            self.rescan_due = true;
        }
    }

    /// One pass: identity checks, siblings, then reading.
    fn tick(&mut self) {
        self.check_live();
        let rescan_timer = self
            .last_rescan
            .is_none_or(|t| t.elapsed() >= self.settings.rescan_interval);
        if self.rescan_due || rescan_timer {
            self.rescan_due = false;
            self.rescan();
        }
        // Rotated-away files first: their lines are older.
        let mut draining: Vec<Tracked> = Vec::new();
        for mut t in std::mem::take(&mut self.draining) {
            if self.cancel.is_cancelled() || self.closed {
                draining.push(t);
                continue;
            }
            if t.fp.is_none() {
                let size = t.file.metadata().map_or(0, |m| m.len());
                self.identify(&mut t, size, true);
            }
            // Two handles on the same content (a file and its copy): one reader is enough.
            let duplicate = t.fp.is_some()
                && (draining.iter().any(|d| d.fp == t.fp)
                    || self.live.as_ref().is_some_and(|l| l.fp == t.fp));
            if duplicate {
                tracing::debug!(path = %t.path.display(), "a second handle on content already being read; closed");
                continue;
            }
            self.read_plain(&mut t);
            draining.push(t);
        }
        if self.cancel.is_cancelled() || self.closed {
            // Not read this time: nothing may be declared finished.
            self.draining = draining;
        } else {
            let rotate_wait = self.settings.rotate_wait;
            let (quiet, still): (Vec<Tracked>, Vec<Tracked>) = draining
                .into_iter()
                .partition(|t| t.last_growth.elapsed() >= rotate_wait);
            self.draining = still;
            for mut t in quiet {
                if !self.finish(&mut t) {
                    self.draining.push(t);
                    continue;
                }
                tracing::info!(path = %t.path.display(), offset = t.offset, "finished reading rotated file");
                if let Some(fp) = t.fp {
                    self.positions.entry(fp).or_default().complete = true;
                    self.send(ToSink::Complete(fp));
                }
            }
        }
        if let Some(mut live) = self.live.take() {
            if !self.cancel.is_cancelled() && !self.closed {
                self.read_plain(&mut live);
            }
            let size = live.file.metadata().map_or(live.offset, |m| m.len());
            self.gauges
                .lag
                .store(size.saturating_sub(live.offset), Relaxed);
            if self.gauges.offset.swap(live.offset, Relaxed) != live.offset {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.gauges.last_read_unix.store(now, Relaxed);
            }
            self.gauges.size.store(size, Relaxed);
            self.live = Some(live);
        }
        // (Problems with rotated siblings, also in `reported`, are not the live file's.)
        let path = self.settings.path.display().to_string();
        let live_problem = self.reported.iter().any(|m| {
            m.starts_with(&format!("cannot open {path}:"))
                || m.starts_with(&format!("cannot read {path}:"))
                || m.starts_with(&format!("{path} is not a regular file"))
        });
        let state = if self.live.is_none() && live_problem {
            SourceState::Unreadable
        } else if self.live.is_none() {
            SourceState::Waiting
        } else if !self.draining.is_empty() {
            SourceState::Draining
        } else {
            SourceState::Following
        };
        self.gauges.set_state(state);
    }

    /// Checks what the configured path is now.
    fn check_live(&mut self) {
        let path = self.settings.path.clone();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(old) = self.live.take() {
                    tracing::info!(path = %path.display(), "log file gone (renamed or deleted); finishing what was written to it and waiting for a new one");
                    self.counters.rotations.fetch_add(1, Relaxed);
                    self.start_draining(old);
                    self.rescan_due = true;
                    // A rotation in progress, not a problem worth a warning.
                    self.warned_missing = true;
                    self.quiet_missing = true;
                }
                if !self.warned_missing {
                    tracing::warn!(path = %path.display(), "log file does not exist (yet); waiting for it to appear");
                    self.warned_missing = true;
                }
                return;
            }
            Err(e) => {
                self.report(format!("cannot read {}: {e}; retrying", path.display()));
                return;
            }
        };
        if !meta.is_file() {
            self.report(format!(
                "{} is not a regular file; waiting for a log file there",
                path.display()
            ));
            return;
        }
        let id = (meta.dev(), meta.ino());
        if let Some(live) = &mut self.live
            && (live.dev, live.ino) == id
        {
            let now =
                fingerprint::of_plain_at(&live.file, live.data_start, self.settings.max_line_bytes)
                    .ok()
                    .flatten();
            let truncated = meta.len() < live.offset || (live.fp.is_some() && now != live.fp);
            if truncated {
                tracing::info!(path = %path.display(), offset = live.offset, size = meta.len(), "log file truncated (copytruncate or emptied); reading it again from its start");
                self.counters.truncations.fetch_add(1, Relaxed);
                // What was not read yet may be in the copy (same first line, so the same
                // fingerprint and position): the siblings are checked for it. But a file that
                // still starts with the same line is that content rewritten shorter in place
                // (a restore from backup): its position goes back to the start with it.
                if let Some(fp) = live.fp.take()
                    && now == Some(fp)
                {
                    self.positions.insert(fp, Pos::default());
                }
                live.offset = 0;
                live.seen_end = 0;
                live.skipping = false;
                self.rescan_due = true;
            }
            return;
        }
        // A new file at the path (first open, rotation, replacement).
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                self.report(format!(
                    "cannot open {}: {e}; retrying every {:?}",
                    path.display(),
                    self.settings.poll_interval
                ));
                return;
            }
        };
        self.resolved(&format!("cannot open {}", path.display()));
        self.resolved(&format!("cannot read {}", path.display()));
        if let Some(old) = self.live.take() {
            tracing::info!(path = %path.display(), "log file rotated or replaced; finishing the old one");
            self.counters.rotations.fetch_add(1, Relaxed);
            self.start_draining(old);
            self.rescan_due = true;
        }
        if self.warned_missing {
            if !self.quiet_missing {
                tracing::info!(path = %path.display(), "log file appeared");
            }
            self.warned_missing = false;
            self.quiet_missing = false;
        }
        let mut t = Tracked {
            file,
            path: path.clone(),
            dev: id.0,
            ino: id.1,
            fp: None,
            offset: 0,
            skipping: false,
            last_growth: Instant::now(),
            seen_end: 0,
            data_start: 0,
        };
        self.identify(&mut t, meta.len(), false);
        self.live = Some(t);
    }

    /// Computes a file's fingerprint and where to start reading it.
    fn identify(&mut self, t: &mut Tracked, size: u64, rotated: bool) {
        if t.fp.is_some() {
            return;
        }
        let Ok(Some((fp, data_start))) = fingerprint::locate(&t.file, self.settings.max_line_bytes)
        else {
            return;
        };
        t.fp = Some(fp);
        t.data_start = data_start;
        let mut offset = match self.positions.get(&fp) {
            Some(p) => p.offset,
            None if self.start == Start::AtEnd => {
                let end = end_of_last_line(&t.file, size).unwrap_or(0);
                if !rotated {
                    tracing::info!(path = %t.path.display(), offset = end, "first start without backfill: reading only what comes next");
                }
                self.skip_to(fp, &t.path.clone(), end, false);
                end
            }
            None => 0,
        };
        // Another handle on the same content (a copy put in place): this one takes over.
        if let Some(i) = self.draining.iter().position(|d| d.fp == Some(fp)) {
            let d = self.draining.remove(i);
            offset = offset.max(d.offset);
        }
        if offset > size {
            // Same first line, but shorter than what was read of it: rewritten (`sed -i`, a
            // restore from backup), also while the daemon was down. Its lines are read again.
            tracing::info!(path = %t.path.display(), offset, size, "log file is shorter than what was read of it (rewritten or restored?); reading it again from its start");
            self.counters.truncations.fetch_add(1, Relaxed);
            self.positions.insert(fp, Pos::default());
            offset = 0;
        }
        t.offset = offset;
    }

    /// Counts what is on disk as read up to `end` (a first start without backfill), and tells
    /// the sink, so that the checkpoint says so too: a restart before any new line must not
    /// read that history after all.
    fn skip_to(&mut self, fp: Fingerprint, path: &Path, end: u64, complete: bool) {
        self.positions.insert(
            fp,
            Pos {
                offset: end,
                complete,
            },
        );
        self.send(ToSink::Batch(Batch {
            position: Position::File {
                fingerprint: fp,
                path: path.to_path_buf(),
                end,
            },
            events: Events::default(),
            enrichment: Vec::new(),
            budget: None,
        }));
        if complete {
            self.send(ToSink::Complete(fp));
        }
    }

    /// Keeps a rotated-away file open to finish it: closed once quiet for `rotate_wait`,
    /// counted from now (when the rotation was seen) at the earliest, however long it had been
    /// quiet before: its writer may still add a line through its old handle.
    fn start_draining(&mut self, mut t: Tracked) {
        t.last_growth = Instant::now();
        self.draining.push(t);
    }

    /// Looks at the rotated siblings for unread bytes.
    fn rescan(&mut self) {
        self.last_rescan = Some(Instant::now());
        let (siblings, unreadable) = match rotated::siblings(&self.settings.path) {
            Ok(s) => s,
            Err(e) => {
                self.report(format!(
                    "cannot list the directory of {}: {e}",
                    self.settings.path.display()
                ));
                return;
            }
        };
        for p in unreadable {
            self.report(format!(
                "{} is compressed in a format this program cannot read (only gzip); it is skipped",
                p.display()
            ));
        }
        let mut seen = Vec::new();
        let mut found = HashMap::new();
        for s in siblings {
            if self.cancel.is_cancelled() || self.closed {
                return;
            }
            let Ok(meta) = std::fs::metadata(&s.path) else {
                continue;
            };
            let id = (meta.dev(), meta.ino());
            if let Some(t) = self.tracked(id) {
                if let Some(fp) = t.fp {
                    seen.push((fp, s.path.clone()));
                }
                continue;
            }
            let ident = (meta.len(), meta.modified().ok());
            let (fp, compressed) = match self.siblings.get(&id) {
                // Unchanged since the last look: its fingerprint is known without opening it
                // (an open is an event to inotify watchers, and costs a decompression).
                Some(k) if (k.size, k.mtime) == ident => (k.fp, k.compressed),
                _ => match fingerprint::of_path(&s.path, self.settings.max_line_bytes) {
                    Ok((Some(fp), compressed)) => (fp, compressed),
                    Ok((None, _)) => continue,
                    Err(e) => {
                        self.report(format!(
                            "cannot read rotated file {}: {e}",
                            s.path.display()
                        ));
                        continue;
                    }
                },
            };
            found.insert(
                id,
                SiblingSeen {
                    size: ident.0,
                    mtime: ident.1,
                    fp,
                    compressed,
                },
            );
            seen.push((fp, s.path.clone()));
            if self
                .live
                .iter()
                .chain(&self.draining)
                .any(|t| t.fp == Some(fp))
            {
                continue;
            }
            let known = self.positions.get(&fp).copied();
            if known.is_some_and(|p| p.complete) {
                continue;
            }
            if known.is_none() && self.start == Start::AtEnd {
                // First start without backfill: history counts as read.
                let end = if compressed {
                    u64::MAX
                } else {
                    File::open(&s.path)
                        .and_then(|f| end_of_last_line(&f, meta.len()))
                        .unwrap_or(0)
                };
                self.skip_to(fp, &s.path, end, compressed);
                continue;
            }
            let from = known.map_or(0, |p| p.offset);
            if compressed {
                self.read_gz(&s.path, fp, from, s.modified);
            } else if let Ok(file) = File::open(&s.path) {
                let data_start = fingerprint::locate(&file, self.settings.max_line_bytes)
                    .ok()
                    .flatten()
                    .map_or(0, |(_, start)| start);
                if from < meta.len() {
                    tracing::info!(path = %s.path.display(), offset = from, "reading rotated file");
                }
                let mut t = Tracked {
                    file,
                    path: s.path.clone(),
                    dev: id.0,
                    ino: id.1,
                    fp: Some(fp),
                    offset: from,
                    skipping: false,
                    last_growth: Instant::now(),
                    seen_end: 0,
                    data_start,
                };
                self.read_plain(&mut t);
                self.start_draining(t);
            }
        }
        self.siblings = found;
        // The files being read are on disk too (a live log quiet for weeks must keep its entry).
        seen.extend(
            self.live
                .iter()
                .chain(&self.draining)
                .filter_map(|t| Some((t.fp?, t.path.clone()))),
        );
        if !seen.is_empty() {
            self.send(ToSink::Seen(seen));
        }
    }

    /// The handle already open on inode `id`, if any (whether or not its fingerprint is known
    /// yet): a second handle on the same file would read its lines twice.
    fn tracked(&self, id: (u64, u64)) -> Option<&Tracked> {
        self.live
            .iter()
            .chain(&self.draining)
            .find(|t| (t.dev, t.ino) == id)
    }

    /// Reads a plain file from its offset to its last complete line.
    fn read_plain(&mut self, t: &mut Tracked) {
        if t.fp.is_none() {
            let size = t.file.metadata().map_or(0, |m| m.len());
            self.identify(t, size, false);
            if t.fp.is_none() {
                return;
            }
        }
        let fp = t.fp.expect("identified");
        let years = years_of(&t.file);
        // The leading hole (found once, when the file was identified) is no line.
        t.offset = t.offset.max(t.data_start);
        loop {
            if self.cancel.is_cancelled() || self.closed {
                return;
            }
            let n = match t.file.read_at(&mut self.buf, t.offset) {
                Ok(n) => n,
                Err(e) => {
                    self.report(format!("cannot read {}: {e}; retrying", t.path.display()));
                    return;
                }
            };
            if n == 0 {
                return;
            }
            // The file may have been truncated and written again between the identity check
            // and this read (copytruncate with a busy writer): then these bytes belong to new
            // content, not to the position we hold. Trust them only if the first line is
            // still the one we know.
            let same =
                fingerprint::of_plain_at(&t.file, t.data_start, self.settings.max_line_bytes)
                    .ok()
                    .flatten()
                    == t.fp;
            if !same {
                self.rescan_due = true;
                return;
            }
            // Growth is new bytes, not the same unfinished line read again: a rotated file
            // ending in a line without a newline must still become quiet, and be finished.
            let read_end = t.offset + n as u64;
            if read_end > t.seen_end {
                t.seen_end = read_end;
                t.last_growth = Instant::now();
            }
            // A hole at a line start: a writer without O_APPEND kept writing at its old offset
            // after a copytruncate. Its NULs are no line: skip to what follows them, once
            // something does (NULs at the end may yet be filled, e.g. on network filesystems).
            if !t.skipping && self.buf[0] == 0 {
                let nuls = self.buf[..n].iter().take_while(|&&b| b == 0).count();
                if nuls == n {
                    return;
                }
                t.offset += nuls as u64;
                continue;
            }
            if t.skipping {
                match memchr::memchr(b'\n', &self.buf[..n]) {
                    Some(i) => {
                        t.offset += i as u64 + 1;
                        t.skipping = false;
                    }
                    None => t.offset += n as u64,
                }
                continue;
            }
            let Some(last) = memchr::memrchr(b'\n', &self.buf[..n]) else {
                if n > self.settings.max_line_bytes {
                    self.counters.too_long.fetch_add(1, Relaxed);
                    if crate::ratelimit::allow("lines longer than max_line_bytes") {
                        tracing::warn!(path = %t.path.display(), offset = t.offset, "line longer than max_line_bytes skipped");
                    }
                    t.skipping = true;
                    t.offset += n as u64;
                    continue;
                }
                // A line still being written: wait for its newline.
                return;
            };
            let end = t.offset + last as u64 + 1;
            let scanned = scan(&self.parser, &self.buf[..=last], t.offset, &years, &t.path);
            t.offset = end;
            self.deliver(fp, &t.path.clone(), end, scanned);
            if n < self.buf.len() && last + 1 == n {
                // Everything read was whole lines and the read was short: at the end for now.
                return;
            }
        }
    }

    /// Reads what is left of a quiet rotated file, for the last time; whether it can be closed
    /// now. Its writer has moved on, so a last line without a newline is complete (as `scan`
    /// takes it) and recorded; a last line over the length limit is counted and passed. Not
    /// yet when the file changed meanwhile: it grew (the writer finished that line after all)
    /// or is other content.
    fn finish(&mut self, t: &mut Tracked) -> bool {
        let Some(fp) = t.fp else { return true };
        let size_of = |t: &Tracked| t.file.metadata().map_or(t.offset, |m| m.len());
        let size = size_of(t);
        if size <= t.offset {
            return true;
        }
        if t.skipping || size - t.offset > self.settings.max_line_bytes as u64 {
            if !t.skipping {
                self.counters.too_long.fetch_add(1, Relaxed);
                if crate::ratelimit::allow("lines longer than max_line_bytes") {
                    tracing::warn!(path = %t.path.display(), offset = t.offset, "line longer than max_line_bytes skipped");
                }
            }
            t.skipping = false;
            self.deliver(fp, &t.path.clone(), size, Scanned::default());
            t.offset = size;
            return true;
        }
        let mut tail = vec![0u8; (size - t.offset) as usize];
        if t.file.read_exact_at(&mut tail, t.offset).is_err() || tail.contains(&b'\n') {
            return false;
        }
        let unchanged = size_of(t) == size
            && fingerprint::of_plain_at(&t.file, t.data_start, self.settings.max_line_bytes)
                .ok()
                .flatten()
                == Some(fp);
        if !unchanged {
            return false;
        }
        let years = years_of(&t.file);
        let scanned = scan(&self.parser, &tail, t.offset, &years, &t.path);
        t.offset = size;
        self.deliver(fp, &t.path.clone(), size, scanned);
        true
    }

    /// Reads a gzip-compressed rotated file from `from` (in uncompressed bytes) to its end.
    fn read_gz(&mut self, path: &Path, fp: Fingerprint, from: u64, modified: SystemTime) {
        let input = match super::open(path) {
            Ok(i) => i,
            Err(e) => {
                self.report(format!("cannot read rotated file {}: {e}", path.display()));
                return;
            }
        };
        tracing::info!(path = %path.display(), offset = from, "reading compressed rotated file");
        let years = YearContext::new(modified.into());
        // A leading hole (a holey log compressed) is no line: skipped, offsets kept.
        let (input, hole) = match fingerprint::skip_leading_nuls(input) {
            Ok(r) => r,
            Err(e) => {
                self.report(format!("cannot read rotated file {}: {e}", path.display()));
                return;
            }
        };
        let mut reader = BlockReader::new(input, self.settings.max_line_bytes).starting_at(hole);
        loop {
            if self.cancel.is_cancelled() || self.closed {
                return;
            }
            let block = match reader.next_block() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    let recent = modified
                        .elapsed()
                        .is_ok_and(|d| d < Duration::from_secs(30));
                    if recent {
                        // Probably still being compressed: try again on a later pass.
                        self.rescan_due = true;
                        return;
                    }
                    self.report(format!(
                        "{}: {e}; the rest of this compressed file cannot be read",
                        path.display()
                    ));
                    break;
                }
            };
            let block_end = block.offset + block.bytes.len() as u64;
            if block_end <= from {
                continue;
            }
            let skip = from.saturating_sub(block.offset) as usize;
            let bytes = &block.bytes[skip..];
            let start = block.offset + skip as u64;
            let scanned = scan(&self.parser, bytes, start, &years, path);
            self.deliver(fp, path, block_end, scanned);
        }
        self.counters.too_long.fetch_add(reader.too_long(), Relaxed);
        self.positions.insert(
            fp,
            Pos {
                offset: reader.consumed().max(from),
                complete: true,
            },
        );
        self.send(ToSink::Complete(fp));
    }

    /// Sends what [`scan`] found in a file's range ending at `end`, and moves its position.
    fn deliver(&mut self, fp: Fingerprint, path: &Path, end: u64, scanned: Scanned) {
        self.counters.add_read(&scanned.stats);
        self.positions.insert(
            fp,
            Pos {
                offset: end,
                complete: false,
            },
        );
        self.send(ToSink::Batch(Batch {
            position: Position::File {
                fingerprint: fp,
                path: path.to_path_buf(),
                end,
            },
            events: scanned.events,
            enrichment: Vec::new(),
            budget: None,
        }));
    }

    fn send(&mut self, mut msg: ToSink) {
        self.heartbeat.waiting();
        if let ToSink::Batch(b) = &mut msg {
            b.budget = self.budget.take_blocking(b.events.rows());
        }
        if self.tx.blocking_send(msg).is_err() {
            // The sink is gone: nothing more can be recorded.
            self.closed = true;
        }
        self.heartbeat.beat();
    }

    /// Logs a problem once until it goes away.
    fn report(&mut self, message: String) {
        if self.reported.insert(message.clone()) {
            tracing::error!("{message}");
        }
    }

    /// Forgets problems starting with `prefix` (they went away), saying so.
    fn resolved(&mut self, prefix: &str) {
        let gone: Vec<String> = self
            .reported
            .iter()
            .filter(|m| m.starts_with(prefix))
            .cloned()
            .collect();
        for m in gone {
            self.reported.remove(&m);
            tracing::info!("resolved: {m}");
        }
    }
}

/// What one range of whole lines held.
#[derive(Default)]
struct Scanned {
    events: Events,
    stats: Stats,
}

/// Parses a range of whole lines of `path` starting at input offset `start`: rows kept, the
/// rest counted and reported.
fn scan(parser: &Parser, bytes: &[u8], start: u64, years: &YearContext, path: &Path) -> Scanned {
    let mut stats = Stats {
        bytes: bytes.len() as u64,
        ..Stats::default()
    };
    let mut events = Events::default();
    let counts = parser.scan_block(bytes, start, 0, years, |found| {
        super::collect(
            found.parsed,
            found.count,
            found.capped,
            &format_args!("{}, offset {}", path.display(), found.end_offset),
            &mut events,
            &mut stats,
        );
    });
    stats.lines = counts.lines;
    stats.too_long += counts.too_long;
    if counts.too_long > 0 {
        tracing::warn!(path = %path.display(), count = counts.too_long, "line longer than max_line_bytes skipped");
    }
    Scanned { events, stats }
}

/// Places yearless syslog timestamps by the file's modification time.
fn years_of(file: &File) -> YearContext {
    YearContext::new(
        file.metadata()
            .and_then(|m| m.modified())
            .map_or_else(|_| chrono::Local::now(), Into::into),
    )
}

/// Offset just past the last newline in the first `size` bytes of `file`.
fn end_of_last_line(file: &File, size: u64) -> io::Result<u64> {
    let mut end = size;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}
