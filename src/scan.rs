//! The one-shot pipeline behind `maillogsentinel scan`: each input in turn through the source
//! ([`crate::source`]), the parser ([`crate::parse`]) and into a CSV given with `-o`
//! ([`crate::sink`]) or the configured store ([`crate::store`]) — the same stages the daemon
//! runs, driven to the end of each input instead of following it.
//!
//! Into the store, a scan is what the daemon's reading would have been: each file's rows are
//! committed together with its position (by fingerprint, as the daemon records it), so a
//! daemon started afterwards resumes after what the scan recorded instead of recording the
//! same history again, and a scan run twice adds nothing. A file's last line without a
//! newline (still being written) is left to the daemon.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::checkpoint::{FilePosition, JournalPosition, Pos};
use crate::enrich::Enricher;
use crate::parse::{
    AuthEvent, BlockCounts, Candidate, Found, MAX_REPEAT, Parsed, Parser, YearContext,
};
use crate::sink::CsvSink;
use crate::source::fingerprint::{self, Fingerprint};
use crate::source::{self, BlockReader};
use crate::stats::Stats;
use crate::store::{Progress, Recovered, Store, StoreError};

/// How many individual warnings of one kind are logged per input before they are only
/// counted (the summary gives the total).
pub const WARNINGS_PER_INPUT: u64 = 10;

/// An input that could not be read (to its end).
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}{}", path.display(), context(*at_line))]
pub struct InputError {
    /// The input (`-` for stdin).
    pub path: PathBuf,
    /// Lines read before the error, when reading had started (rows for them were kept).
    pub at_line: Option<u64>,
    /// What went wrong.
    pub source: io::Error,
}

fn context(at_line: Option<u64>) -> String {
    match at_line {
        Some(n) => format!(" (after line {n}; rows before it were kept)"),
        None => String::new(),
    }
}

/// Why scanning stopped or an input was passed over.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// One input could not be read; the others go on.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The output failed: nothing more can be recorded, so scanning stops.
    #[error(transparent)]
    Sink(#[from] StoreError),
}

/// Why `scan --journal` stopped.
#[derive(Debug, thiserror::Error)]
pub enum JournalScanError {
    /// The journal could not be opened or read on (rows before the failure were kept).
    #[error(transparent)]
    Journal(#[from] crate::source::journal::JournalError),
    /// The output failed.
    #[error(transparent)]
    Sink(#[from] StoreError),
}

/// What a scan did.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Counters over all inputs.
    pub stats: Stats,
    /// Inputs that could not be read, or not to their end.
    pub failed: Vec<InputError>,
}

/// Enrichment for a scan: the enricher and the runtime its lookups run on.
pub struct ScanEnrich<'a> {
    /// The enricher.
    pub enricher: &'a Enricher,
    /// A runtime to wait on lookups with.
    pub runtime: &'a tokio::runtime::Runtime,
}

/// Where rows go: CSV files given on the command line, or the configured store.
enum Target<'a> {
    /// Failures to `sink`, logins to `logins` (none: logins are not written).
    Csv {
        sink: &'a mut CsvSink,
        logins: Option<&'a mut CsvSink>,
    },
    /// The store, committed with the positions in `ledger`.
    Store {
        store: &'a mut dyn Store,
        ledger: Ledger,
    },
}

/// Rows on their way to the record (failures to the intrusion record, logins to the logins
/// record when one is kept): with enrichment, rows are gathered so that many addresses are
/// looked up at once, then written in their order.
pub struct Recorder<'a> {
    target: Target<'a>,
    enrich: Option<ScanEnrich<'a>>,
    /// Rows waiting for their lookups, and whether each is a login.
    pending: Vec<(AuthEvent, bool)>,
}

/// Failures gathered before their lookups run together.
const ENRICH_BATCH: usize = 2048;

/// Staged bytes after which a scan into the store commits (as the daemon's commits, a few MB).
const COMMIT_BYTES: usize = 4 * 1024 * 1024;

impl<'a> Recorder<'a> {
    /// Failures to `sink`, logins to `logins` (none: logins are not written), enriched when
    /// `enrich` is given.
    pub fn new(
        sink: &'a mut CsvSink,
        logins: Option<&'a mut CsvSink>,
        enrich: Option<ScanEnrich<'a>>,
    ) -> Self {
        Recorder {
            target: Target::Csv { sink, logins },
            enrich,
            pending: Vec::new(),
        }
    }

    /// Rows into `store`, committed with the positions of the files read (starting from
    /// `ledger`, what the store held), enriched when `enrich` is given.
    pub fn into_store(
        store: &'a mut dyn Store,
        ledger: Ledger,
        enrich: Option<ScanEnrich<'a>>,
    ) -> Self {
        Recorder {
            target: Target::Store { store, ledger },
            enrich,
            pending: Vec::new(),
        }
    }

    /// Where each file stands in the store (`None`: rows go to CSV files, without positions).
    fn ledger(&self) -> Option<&Ledger> {
        match &self.target {
            Target::Store { ledger, .. } => Some(ledger),
            Target::Csv { .. } => None,
        }
    }

    /// Whether logins are kept.
    fn keeps_logins(&self) -> bool {
        match &self.target {
            Target::Csv { logins, .. } => logins.is_some(),
            Target::Store { store, .. } => store.keeps_logins(),
        }
    }

    /// Records a failure (`login` false) or a login.
    fn push(&mut self, f: &AuthEvent, login: bool) -> Result<(), StoreError> {
        if login && !self.keeps_logins() {
            return Ok(());
        }
        if self.enrich.is_none() {
            return self.write(f, None, login);
        }
        self.pending.push((f.clone(), login));
        if self.pending.len() >= ENRICH_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes (or stages, for the store) one row.
    fn write(
        &mut self,
        f: &AuthEvent,
        enrichment: Option<&crate::enrich::Enrichment>,
        login: bool,
    ) -> Result<(), StoreError> {
        match &mut self.target {
            Target::Csv {
                logins: Some(l), ..
            } if login => l.write(f, enrichment)?,
            Target::Csv { sink, .. } => sink.write(f, enrichment)?,
            Target::Store { store, .. } if login => store.stage_login(f, enrichment),
            Target::Store { store, .. } => store.stage_failure(f, enrichment),
        }
        Ok(())
    }

    /// Enriches and writes what is gathered, then hands it to the operating system (CSV) or
    /// leaves it staged for the next commit (store).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if let Some(e) = &self.enrich {
            // Each address once per batch: attackers repeat themselves.
            let mut distinct: Vec<std::net::IpAddr> =
                self.pending.iter().map(|(f, _)| f.ip).collect();
            distinct.sort_unstable();
            distinct.dedup();
            let lookups = distinct.iter().map(|ip| e.enricher.enrich(*ip));
            let found = e.runtime.block_on(futures::future::join_all(lookups));
            let pending = std::mem::take(&mut self.pending);
            for (f, login) in pending {
                let i = distinct
                    .binary_search(&f.ip)
                    .expect("every address was looked up");
                self.write(&f, Some(&found[i]), login)?;
            }
        }
        if let Target::Csv { sink, logins } = &mut self.target {
            sink.flush()?;
            if let Some(l) = logins {
                l.flush()?;
            }
        }
        Ok(())
    }

    /// Makes everything recorded durable: flushes and syncs the CSV files, or commits what is
    /// staged with the positions reached.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        match &mut self.target {
            Target::Csv { sink, logins } => {
                sink.sync()?;
                if let Some(l) = logins {
                    l.sync()?;
                }
            }
            Target::Store { store, ledger } => {
                let progress = ledger.progress();
                if store.staged_bytes() > 0 {
                    store.commit(&progress)?;
                } else if ledger.moved() {
                    store.save_progress(&progress)?;
                }
                ledger.committed();
            }
        }
        Ok(())
    }

    /// Notes that the rows of `path` (fingerprint `fp`) up to `offset` are recorded
    /// (`complete`: to its end, for good), and commits when enough is staged. Nothing for CSV
    /// files.
    fn reached(
        &mut self,
        fp: Fingerprint,
        path: &Path,
        offset: u64,
        complete: bool,
    ) -> Result<(), StoreError> {
        let Target::Store { store, ledger } = &mut self.target else {
            return Ok(());
        };
        ledger.advance(fp, path, offset, complete);
        if store.staged_bytes() + self.pending.len() * 128 >= COMMIT_BYTES {
            self.sync()?;
        }
        Ok(())
    }

    /// Notes that the journal `source`'s rows up to the entry `end` are recorded, and commits
    /// when enough is staged. Nothing for CSV files.
    fn reached_journal(
        &mut self,
        source: &str,
        end: crate::source::journal::JournalPos,
    ) -> Result<(), StoreError> {
        let Target::Store { store, ledger } = &mut self.target else {
            return Ok(());
        };
        ledger.advance_journal(source, end);
        if store.staged_bytes() + self.pending.len() * 128 >= COMMIT_BYTES {
            self.sync()?;
        }
        Ok(())
    }

    /// Records `count` copies of a row (rsyslog's `message repeated N times`).
    fn push_n(&mut self, f: &AuthEvent, login: bool, count: u32) -> Result<(), StoreError> {
        for _ in 0..count {
            self.push(f, login)?;
        }
        Ok(())
    }
}

/// Where a scan into the store stands: every position the store held (carried over, so that
/// a commit keeps them), and the files read since.
#[derive(Debug, Default)]
pub struct Ledger {
    files: BTreeMap<Fingerprint, FilePosition>,
    journals: Vec<JournalPosition>,
    /// A position moved since the last commit.
    moved: bool,
}

impl Ledger {
    /// The positions `recovered` from the store (none on a store never written).
    ///
    /// Fails when a journal's first batch was lost in a crash: only the daemon knows to read
    /// that journal again from its start, and a commit here would forget it.
    pub fn new(recovered: Option<&Recovered>) -> Result<Self, StoreError> {
        let mut ledger = Ledger::default();
        let Some(r) = recovered else {
            return Ok(ledger);
        };
        for (fp, pos) in &r.positions {
            ledger.files.insert(
                *fp,
                FilePosition {
                    fingerprint: *fp,
                    path: r.paths.get(fp).cloned().unwrap_or_default(),
                    offset_before: pos.offset,
                    offset: pos.offset,
                    unseen_secs: r.unseen.get(fp).map_or(0, |d| d.as_secs()),
                    complete: pos.complete,
                },
            );
        }
        for (source, pos) in &r.journals {
            let Some(pos) = pos else {
                return Err(StoreError::Unsupported(format!(
                    "the first entries read from the journal {source} were not recorded before the daemon stopped: start the daemon once so that it reads them again, then scan"
                )));
            };
            ledger.journals.push(JournalPosition {
                source: source.clone(),
                before: Some(pos.clone()),
                after: pos.clone(),
            });
        }
        Ok(ledger)
    }

    /// Where the file with fingerprint `fp` was recorded up to.
    pub fn position(&self, fp: Fingerprint) -> Option<Pos> {
        self.files.get(&fp).map(|f| Pos {
            offset: f.offset,
            complete: f.complete,
        })
    }

    fn advance(&mut self, fp: Fingerprint, path: &Path, offset: u64, complete: bool) {
        let f = self.files.entry(fp).or_insert_with(|| FilePosition {
            fingerprint: fp,
            path: path.to_path_buf(),
            offset_before: 0,
            offset: 0,
            unseen_secs: 0,
            complete: false,
        });
        if f.offset < offset || (complete && !f.complete) || f.path != path {
            self.moved = true;
        }
        f.path = path.to_path_buf();
        f.offset = f.offset.max(offset);
        f.complete |= complete;
        f.unseen_secs = 0;
    }

    /// Where the journal `source` was recorded up to.
    pub fn journal(&self, source: &str) -> Option<crate::source::journal::JournalPos> {
        self.journals
            .iter()
            .find(|j| j.source == source)
            .map(|j| j.after.clone())
    }

    fn advance_journal(&mut self, source: &str, end: crate::source::journal::JournalPos) {
        self.moved = true;
        match self.journals.iter_mut().find(|j| j.source == source) {
            Some(j) => j.after = end,
            None => self.journals.push(JournalPosition {
                source: source.to_string(),
                before: None,
                after: end,
            }),
        }
    }

    fn moved(&self) -> bool {
        self.moved
    }

    fn progress(&self) -> Progress {
        Progress {
            files: self.files.values().cloned().collect(),
            journals: self.journals.clone(),
        }
    }

    fn committed(&mut self) {
        for f in self.files.values_mut() {
            f.offset_before = f.offset;
        }
        for j in &mut self.journals {
            j.before = Some(j.after.clone());
        }
        self.moved = false;
    }
}

/// Scans `inputs` in order into `sink`. An input that cannot be read is reported and skipped;
/// the output failing stops the scan. Rows are made durable before returning (and, into the
/// store, after each input and every few MB, with the positions they account for).
pub fn scan_all(
    inputs: &[PathBuf],
    max_line_bytes: usize,
    server: &str,
    sink: &mut Recorder<'_>,
) -> Result<ScanReport, StoreError> {
    let parser = Parser::new(max_line_bytes, server);
    let mut report = ScanReport::default();
    for path in inputs {
        let mut stats = Stats::default();
        let outcome = scan_one(path, &parser, max_line_bytes, sink, &mut stats);
        report.stats.add(&stats);
        match outcome {
            Ok(()) => tracing::debug!(path = %path.display(), "{stats}"),
            Err(ScanError::Input(e)) => {
                tracing::error!("{e}");
                report.failed.push(e);
            }
            Err(ScanError::Sink(e)) => {
                // Keep what was written before the failure.
                let _ = sink.flush();
                return Err(e);
            }
        }
        // Into the store, each input is committed once read (rows and position).
        if sink.ledger().is_some() {
            sink.sync()?;
        }
    }
    sink.sync()?;
    Ok(report)
}

/// Reads the journal `settings` name once, from `from` (the oldest entry when `None`) to `to`
/// (the newest when `None`; microseconds since the epoch), into `sink`. Rows are made durable
/// before returning, also when reading fails part way.
///
/// Into the store, reading starts after the entry recorded last (by the daemon or an earlier
/// scan; `from` only when it is later), and the position reached is committed with the rows,
/// so that the daemon reads on from there.
pub fn scan_journal(
    settings: &crate::source::journal::JournalSettings,
    from: Option<u64>,
    to: Option<u64>,
    sink: &mut Recorder<'_>,
) -> Result<Stats, JournalScanError> {
    use crate::source::journal::{JournalReader, JournalStart};
    let source = settings.source_id();
    let recorded = sink.ledger().and_then(|l| l.journal(&source));
    let start = match (recorded, from) {
        (Some(pos), from) => {
            if from.is_some_and(|f| f > pos.realtime_usec) {
                // Starting later would move the recorded position past entries never read:
                // the daemon would never read them either.
                tracing::warn!(journal = %settings.describe(), "--since/--from is later than the entry recorded last: reading on from that entry instead, so that nothing between is lost (scan with -o FILE for a window of its own)");
            }
            tracing::info!(journal = %settings.describe(), "reading on after the entry recorded last (by the daemon or an earlier scan)");
            JournalStart::After(pos)
        }
        (None, Some(from)) => JournalStart::Since(from),
        (None, None) => JournalStart::Head,
    };
    let mut reader = JournalReader::open(settings)?;
    reader.seek(&start)?;
    if let Some(to) = to {
        reader.set_until(to);
    }
    let mut stats = Stats::default();
    let outcome = loop {
        let read = match reader.read(crate::source::journal::follow::ENTRIES_PER_BATCH) {
            Ok(r) => r,
            Err(e) => break Err(JournalScanError::from(e)),
        };
        stats.add(&read.stats);
        stats.failures += read.events.failures.len() as u64;
        stats.logins += read.events.logins.len() as u64;
        let events = read.events;
        let mut rows = (events.failures.into_iter().map(|f| (f, false)))
            .chain(events.logins.into_iter().map(|l| (l, true)));
        if let Some(e) = rows.find_map(|(f, login)| sink.push(&f, login).err()) {
            break Err(e.into());
        }
        if let Some(end) = read.end
            && let Err(e) = sink.reached_journal(&source, end)
        {
            break Err(e.into());
        }
        if read.at_end {
            break Ok(());
        }
    };
    let synced = sink.sync();
    outcome?;
    synced?;
    Ok(stats)
}

/// Scans one input into `sink`, adding to `stats`.
///
/// Two threads, joined by a bounded channel: one reads the input and finds its candidate
/// lines (the prefilter: about a third of the work on a busy log), copying them into a block
/// of their own; the other parses them and records what they are (rows formatted and written,
/// counts, warnings), in input order. Blocks go back to the reader to be filled again, so
/// neither thread allocates per block nor frees what the other allocated. The reader stays at
/// most [`READ_AHEAD`] blocks ahead, and stops at its next block when recording fails.
pub fn scan_one(
    path: &Path,
    parser: &Parser,
    max_line_bytes: usize,
    sink: &mut Recorder<'_>,
    stats: &mut Stats,
) -> Result<(), ScanError> {
    let input_err = |source| InputError {
        path: path.to_path_buf(),
        at_line: None,
        source,
    };
    // Into the store, a file is known by its fingerprint, as the daemon knows it: what was
    // recorded of it before (by the daemon or an earlier scan) is not read again.
    let mut from = 0;
    let mut fp = None;
    if let Some(ledger) = sink.ledger()
        && path != Path::new("-")
    {
        let (found, gz) = fingerprint::of_path(path, max_line_bytes).map_err(input_err)?;
        let Some(found) = found else {
            tracing::info!(path = %path.display(), "no complete line yet: nothing to read");
            return Ok(());
        };
        match ledger.position(found) {
            Some(p) if p.complete => {
                tracing::info!(path = %path.display(), "already recorded to its end (by the daemon or an earlier scan): skipped");
                return Ok(());
            }
            Some(p) if p.offset > 0 => {
                // (A compressed file's size says nothing of its decompressed offsets.)
                let len = std::fs::metadata(path).map_or(u64::MAX, |m| m.len());
                if !gz && p.offset >= len {
                    tracing::info!(path = %path.display(), "already recorded up to its end (by the daemon or an earlier scan): nothing new");
                } else {
                    tracing::info!(path = %path.display(), offset = p.offset, "partly recorded before (by the daemon or an earlier scan): reading on from there");
                }
                from = p.offset;
            }
            _ => {
                // A plain file starting with a hole of NULs (a copytruncate under a writer
                // without O_APPEND) is read from its data, as the daemon reads it.
                if !gz
                    && let Ok(f) = std::fs::File::open(path)
                    && let Ok(Some((_, start))) = fingerprint::locate(&f, max_line_bytes)
                {
                    from = start;
                }
            }
        }
        fp = Some(found);
    }
    let input = source::open(path).map_err(input_err)?;
    let years = input
        .modified
        .map_or_else(YearContext::now, |m| YearContext::new(m.into()));
    let compressed = input.compressed;
    // A plain file is read from where it was left; a compressed one is read through to there.
    let (input, base): (Box<dyn Read + Send>, u64) = if from > 0 && !compressed {
        drop(input);
        let mut file = std::fs::File::open(path).map_err(input_err)?;
        file.seek(io::SeekFrom::Start(from)).map_err(input_err)?;
        (Box::new(file), from)
    } else {
        (Box::new(input), 0)
    };
    // A plain file's last line without its newline may still be being written: into the
    // store, it is left for the daemon (which waits for the newline), not recorded torn.
    let hold_partial = fp.is_some() && !compressed;
    let first_line = stats.lines;
    let (filled, to_record) = mpsc::sync_channel(READ_AHEAD);
    let (emptied, to_fill) = mpsc::channel::<Candidates>();
    // The reader owns what it uses (not a scoped thread): when recording fails it may be
    // blocked reading a pipe that stays open (`journalctl -f | maillogsentinel scan -`), and
    // the error must not wait for more input. It is then left to stop at its next block.
    let finder = parser.clone();
    let name = path.to_path_buf();
    let reading = std::thread::spawn(move || {
        let mut reader = BlockReader::new(input, max_line_bytes).starting_at(base);
        let mut lines = first_line;
        loop {
            let block = match reader.next_block() {
                Ok(Some(block)) => block,
                Ok(None) => break,
                Err(e) => {
                    let _ = filled.send(Err(e));
                    break;
                }
            };
            let end = block.offset + block.bytes.len() as u64;
            if end <= from {
                continue;
            }
            if hold_partial && !block.bytes.ends_with(b"\n") {
                // Only the last block can end without a newline.
                tracing::info!(path = %name.display(), offset = block.offset, "the last line has no newline yet (still being written?): left for the daemon");
                break;
            }
            let skip = from.saturating_sub(block.offset) as usize;
            let bytes = &block.bytes[skip..];
            let mut c = to_fill.try_recv().unwrap_or_default();
            c.bytes = bytes.len() as u64;
            c.end = end;
            c.counts = finder.candidates(bytes, block.offset + skip as u64, lines, |found| {
                let start = c.text.len();
                c.text.extend_from_slice(found.line);
                c.lines
                    .push((start..c.text.len(), found.line_number, found.end_offset));
            });
            lines += c.counts.lines;
            if filled.send(Ok(c)).is_err() {
                break; // recording stopped
            }
        }
        reader.too_long()
    });
    let outcome = record_all(to_record, emptied, parser, &years, path, fp, sink, stats);
    if let Err(ScanError::Sink(e)) = outcome {
        return Err(ScanError::Sink(e));
    }
    // The input ended or failed: the reader has stopped.
    stats.too_long += reading
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let end = outcome?;
    if let Some(fp) = fp
        && compressed
    {
        // A compressed file is a rotated one: read to its end, it is done with for good.
        sink.reached(fp, path, end.max(from), true)?;
    }
    Ok(())
}

/// How many blocks the reading thread of [`scan_one`] may be ahead of the recording.
const READ_AHEAD: usize = 4;

/// One block's candidate lines, as the reading thread of [`scan_one`] hands them over.
#[derive(Default)]
struct Candidates {
    /// The length of what was read of the block.
    bytes: u64,
    /// The input offset at its end.
    end: u64,
    /// Its lines and skipped lines.
    counts: BlockCounts,
    /// The candidate lines, one after the other.
    text: Vec<u8>,
    /// Each candidate: where it is in `text`, its line number and the input offset after it.
    lines: Vec<(std::ops::Range<usize>, u64, u64)>,
}

/// The recording half of [`scan_one`]: parses and records each block's candidates in order
/// until the input ends or fails, or recording fails; hands each block back emptied. Into the
/// store, the file (fingerprint `fp`) is noted as recorded up to each block's end. Returns the
/// offset at the end of the last block.
#[allow(clippy::too_many_arguments)]
fn record_all(
    to_record: mpsc::Receiver<std::io::Result<Candidates>>,
    emptied: mpsc::Sender<Candidates>,
    parser: &Parser,
    years: &YearContext,
    path: &Path,
    fp: Option<Fingerprint>,
    sink: &mut Recorder<'_>,
    stats: &mut Stats,
) -> Result<u64, ScanError> {
    let mut warnings = Warnings::new(path);
    let mut end = 0;
    for block in to_record {
        let mut block = block.map_err(|source| InputError {
            path: path.to_path_buf(),
            at_line: Some(stats.lines),
            source,
        })?;
        stats.bytes += block.bytes;
        for (range, line_number, end_offset) in block.lines.drain(..) {
            let candidate = Candidate {
                line: &block.text[range],
                line_number,
                end_offset,
            };
            record(parser.parse(candidate, years), sink, stats, &mut warnings)?;
        }
        stats.lines += block.counts.lines;
        stats.too_long += block.counts.too_long;
        end = block.end;
        if let Some(fp) = fp {
            sink.reached(fp, path, end, false)?;
        }
        block.text.clear();
        let _ = emptied.send(block);
    }
    warnings.finish(stats);
    Ok(end)
}

fn record(
    found: Found,
    sink: &mut Recorder<'_>,
    stats: &mut Stats,
    warnings: &mut Warnings<'_>,
) -> Result<(), StoreError> {
    let n = u64::from(found.count);
    if found.capped {
        stats.repeats_capped += 1;
        tracing::warn!(
            path = %warnings.path.display(),
            line = found.line_number,
            "a `message repeated` line stands for more than {MAX_REPEAT} lines: {MAX_REPEAT} counted"
        );
    }
    match &found.parsed {
        Parsed::Failure(f) => {
            sink.push_n(f, false, found.count)?;
            stats.failures += n;
        }
        Parsed::Login(l) => {
            sink.push_n(l, true, found.count)?;
            stats.logins += n;
        }
        Parsed::Counted(c) => stats.count(*c, n),
        Parsed::Verdict(v) => stats.verdict(v.known_user, n),
        Parsed::Backend(b) => {
            let seen = stats.backend(&b.kind, n);
            if seen - n < WARNINGS_PER_INPUT {
                tracing::warn!(
                    path = %warnings.path.display(),
                    line = found.line_number,
                    count = n,
                    "{b}"
                );
            }
        }
        Parsed::Unrecognised(why) => {
            stats.unrecognised += n;
            if stats.unrecognised - n < WARNINGS_PER_INPUT {
                tracing::warn!(
                    path = %warnings.path.display(),
                    line = found.line_number,
                    "a SASL failure line was not recorded: {why}"
                );
            }
        }
        Parsed::NotFailure => {}
    }
    Ok(())
}

/// Says, at the end of an input, how many warnings were only counted.
struct Warnings<'a> {
    path: &'a Path,
}

impl<'a> Warnings<'a> {
    fn new(path: &'a Path) -> Self {
        Warnings { path }
    }

    fn finish(&self, stats: &Stats) {
        for (n, what) in [
            (stats.backend_failures, "auth-backend failures"),
            (stats.relay_auth_failures, "relay login failures"),
            (stats.unrecognised, "unrecognised SASL failure lines"),
        ] {
            if n > WARNINGS_PER_INPUT {
                tracing::warn!(path = %self.path.display(), "{n} {what} in all (the first {WARNINGS_PER_INPUT} were shown)");
            }
        }
        if stats.too_long > 0 {
            tracing::warn!(path = %self.path.display(), count = stats.too_long, "lines longer than max_line_bytes were skipped");
        }
    }
}
