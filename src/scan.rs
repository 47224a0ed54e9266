//! The one-shot pipeline behind `maillogsentinel scan`: each input in turn through the source
//! ([`crate::source`]), the parser ([`crate::parse`]) and into the sink ([`crate::sink`]) —
//! the same stages the daemon runs, driven to the end of each input instead of following it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::enrich::Enricher;
use crate::parse::{
    AuthEvent, BlockCounts, Candidate, Found, MAX_REPEAT, Parsed, Parser, YearContext,
};
use crate::sink::{CsvSink, SinkError};
use crate::source::{self, BlockReader};
use crate::stats::Stats;

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
    Sink(#[from] SinkError),
}

/// Why `scan --journal` stopped.
#[derive(Debug, thiserror::Error)]
pub enum JournalScanError {
    /// The journal could not be opened or read on (rows before the failure were kept).
    #[error(transparent)]
    Journal(#[from] crate::source::journal::JournalError),
    /// The output failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
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

/// Rows on their way to the sinks (failures to the intrusion record, logins to the logins
/// record when one is given): with enrichment, rows are gathered so that many addresses are
/// looked up at once, then written in their order.
pub struct Recorder<'a> {
    sink: &'a mut CsvSink,
    logins: Option<&'a mut CsvSink>,
    enrich: Option<ScanEnrich<'a>>,
    /// Rows waiting for their lookups, and whether each is a login.
    pending: Vec<(AuthEvent, bool)>,
}

/// Failures gathered before their lookups run together.
const ENRICH_BATCH: usize = 2048;

impl<'a> Recorder<'a> {
    /// Failures to `sink`, logins to `logins` (none: logins are not written), enriched when
    /// `enrich` is given.
    pub fn new(
        sink: &'a mut CsvSink,
        logins: Option<&'a mut CsvSink>,
        enrich: Option<ScanEnrich<'a>>,
    ) -> Self {
        Recorder {
            sink,
            logins,
            enrich,
            pending: Vec::new(),
        }
    }

    /// Records a failure (`login` false) or a login.
    fn push(&mut self, f: &AuthEvent, login: bool) -> Result<(), SinkError> {
        if login && self.logins.is_none() {
            return Ok(());
        }
        if self.enrich.is_none() {
            return self.sink_for(login).write(f, None);
        }
        self.pending.push((f.clone(), login));
        if self.pending.len() >= ENRICH_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Enriches and writes what is gathered, then hands it to the operating system.
    pub fn flush(&mut self) -> Result<(), SinkError> {
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
                self.sink_for(login).write(&f, Some(&found[i]))?;
            }
        }
        self.sink.flush()?;
        match &mut self.logins {
            Some(l) => l.flush(),
            None => Ok(()),
        }
    }

    /// Flushes and syncs.
    pub fn sync(&mut self) -> Result<(), SinkError> {
        self.flush()?;
        self.sink.sync()?;
        match &mut self.logins {
            Some(l) => l.sync(),
            None => Ok(()),
        }
    }

    /// Records `count` copies of a row (rsyslog's `message repeated N times`).
    fn push_n(&mut self, f: &AuthEvent, login: bool, count: u32) -> Result<(), SinkError> {
        for _ in 0..count {
            self.push(f, login)?;
        }
        Ok(())
    }

    fn sink_for(&mut self, login: bool) -> &mut CsvSink {
        match (login, &mut self.logins) {
            (true, Some(l)) => l,
            _ => self.sink,
        }
    }
}

/// Scans `inputs` in order into `sink`. An input that cannot be read is reported and skipped;
/// the sink failing stops the scan. Rows are synced to disk before returning.
pub fn scan_all(
    inputs: &[PathBuf],
    max_line_bytes: usize,
    server: &str,
    sink: &mut CsvSink,
    logins: Option<&mut CsvSink>,
    enrich: Option<ScanEnrich<'_>>,
) -> Result<ScanReport, SinkError> {
    let parser = Parser::new(max_line_bytes, server);
    let mut report = ScanReport::default();
    let mut sink = Recorder::new(sink, logins, enrich);
    let sink = &mut sink;
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
    }
    sink.sync()?;
    Ok(report)
}

/// Reads the journal `settings` name once, from `from` (the oldest entry when `None`) to `to`
/// (the newest when `None`; microseconds since the epoch), into `sink`. Rows are synced to disk
/// before returning, also when reading fails part way.
pub fn scan_journal(
    settings: &crate::source::journal::JournalSettings,
    from: Option<u64>,
    to: Option<u64>,
    sink: &mut CsvSink,
    logins: Option<&mut CsvSink>,
    enrich: Option<ScanEnrich<'_>>,
) -> Result<Stats, JournalScanError> {
    use crate::source::journal::{JournalReader, JournalStart};
    let mut reader = JournalReader::open(settings)?;
    reader.seek(&from.map_or(JournalStart::Head, JournalStart::Since))?;
    if let Some(to) = to {
        reader.set_until(to);
    }
    let mut stats = Stats::default();
    let mut recorder = Recorder::new(sink, logins, enrich);
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
        if let Some(e) = rows.find_map(|(f, login)| recorder.push(&f, login).err()) {
            break Err(e.into());
        }
        if read.at_end {
            break Ok(());
        }
    };
    let synced = recorder.sync();
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
    let input = source::open(path).map_err(|source| InputError {
        path: path.to_path_buf(),
        at_line: None,
        source,
    })?;
    let years = input
        .modified
        .map_or_else(YearContext::now, |m| YearContext::new(m.into()));
    let first_line = stats.lines;
    let (filled, to_record) = mpsc::sync_channel(READ_AHEAD);
    let (emptied, to_fill) = mpsc::channel::<Candidates>();
    // The reader owns what it uses (not a scoped thread): when recording fails it may be
    // blocked reading a pipe that stays open (`journalctl -f | maillogsentinel scan -`), and
    // the error must not wait for more input. It is then left to stop at its next block.
    let finder = parser.clone();
    let reading = std::thread::spawn(move || {
        let mut reader = BlockReader::new(input, max_line_bytes);
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
            let mut c = to_fill.try_recv().unwrap_or_default();
            c.bytes = block.bytes.len() as u64;
            c.counts = finder.candidates(block.bytes, block.offset, lines, |found| {
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
    let outcome = record_all(to_record, emptied, parser, &years, path, sink, stats);
    if let Err(ScanError::Sink(_)) = outcome {
        return outcome;
    }
    // The input ended or failed: the reader has stopped.
    stats.too_long += reading
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    outcome
}

/// How many blocks the reading thread of [`scan_one`] may be ahead of the recording.
const READ_AHEAD: usize = 4;

/// One block's candidate lines, as the reading thread of [`scan_one`] hands them over.
#[derive(Default)]
struct Candidates {
    /// The block's length.
    bytes: u64,
    /// Its lines and skipped lines.
    counts: BlockCounts,
    /// The candidate lines, one after the other.
    text: Vec<u8>,
    /// Each candidate: where it is in `text`, its line number and the input offset after it.
    lines: Vec<(std::ops::Range<usize>, u64, u64)>,
}

/// The recording half of [`scan_one`]: parses and records each block's candidates in order
/// until the input ends or fails, or recording fails; hands each block back emptied.
fn record_all(
    to_record: mpsc::Receiver<std::io::Result<Candidates>>,
    emptied: mpsc::Sender<Candidates>,
    parser: &Parser,
    years: &YearContext,
    path: &Path,
    sink: &mut Recorder<'_>,
    stats: &mut Stats,
) -> Result<(), ScanError> {
    let mut warnings = Warnings::new(path);
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
        block.text.clear();
        let _ = emptied.send(block);
    }
    warnings.finish(stats);
    Ok(())
}

fn record(
    found: Found,
    sink: &mut Recorder<'_>,
    stats: &mut Stats,
    warnings: &mut Warnings<'_>,
) -> Result<(), SinkError> {
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
