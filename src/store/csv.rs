//! The CSV store (the default): the intrusion record and the logins record as CSV files, the
//! positions in `state_dir/checkpoint.json`. A commit writes the checkpoint describing the
//! state after the batch, then appends the rows; a restart tells from the files' lengths
//! whether the batch landed, and cuts a torn one off ([`crate::checkpoint`] says how).

use std::path::{Path, PathBuf};

use crate::checkpoint::{self, Checkpoint, OutputPosition, OutputState, VERSION};
use crate::enrich::Enrichment;
use crate::parse::AuthEvent;
use crate::sink::{CsvFile, RowFormatter, SinkError};

use super::{CrashPoint, Progress, Recovered, Store, StoreError};

/// A record and its rows not committed yet.
struct Record {
    csv: CsvFile,
    rows: RowFormatter,
}

impl Record {
    fn open(path: &Path) -> Result<Record, SinkError> {
        Ok(Record {
            csv: CsvFile::open_append(path)?,
            rows: RowFormatter::default(),
        })
    }

    /// Starts a new file at the path of a record that was archived (or deleted) by the
    /// postmaster: new rows go there, not on into the archive.
    fn reopen_if_moved(&mut self) -> Result<(), SinkError> {
        if self.csv.moved_away() {
            let path = self.csv.path().to_path_buf();
            tracing::info!(path = %path.display(), "the CSV was moved away; starting a new one");
            self.csv = CsvFile::open_append(&path)?;
        }
        Ok(())
    }

    /// The record's position for a checkpoint, given its lengths before and after the batch.
    fn position(&self, (len_before, len_after): (u64, u64)) -> OutputPosition {
        OutputPosition {
            path: self.csv.path().to_path_buf(),
            len_before,
            len_after,
            dev: self.csv.identity().0,
            ino: self.csv.identity().1,
        }
    }
}

/// The CSV store.
pub struct CsvStore {
    checkpoints: checkpoint::Store,
    state_dir: PathBuf,
    /// The intrusion record.
    failures: Record,
    /// The logins record (`None`: `[output] logins = ""`, successful logins are not kept).
    logins: Option<Record>,
    /// Lengths a failed write must still be cut back to (the intrusion record, the logins
    /// record) before anything else is appended: a cut that failed once is retried first, so
    /// that the batch is never appended after its own partial copy.
    cuts: [Option<u64>; 2],
    crash: Option<CrashPoint>,
    /// What opening found and repaired, until [`Store::recover`] hands it over (the repair
    /// must come before the files are opened for appending).
    found: Option<Recovered>,
}

/// Cuts a record back to `len` (a batch a crash tore, or that must be written again whole).
fn cut_back(path: &Path, len: u64) -> Result<(), SinkError> {
    let io = |source| SinkError::Io {
        path: path.to_path_buf(),
        op: "cut back",
        source,
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io)?;
    f.set_len(len).and_then(|_| f.sync_all()).map_err(io)
}

impl CsvStore {
    /// The store writing `csv` (and `logins`), its checkpoint in `state_dir`: a batch a crash
    /// tore is cut off, then the files are opened (created with their header).
    pub fn open(state_dir: &Path, csv: &Path, logins: Option<&Path>) -> Result<Self, StoreError> {
        let checkpoints = checkpoint::Store::new(state_dir);
        // A crash may have torn the last batch: cut it off before opening the files for
        // appending (their header check reads the start only, the cut is at the end).
        let recovery = Self::repair(&checkpoints)?;
        let store = CsvStore {
            checkpoints,
            state_dir: state_dir.to_path_buf(),
            failures: Record::open(csv)?,
            logins: logins.map(Record::open).transpose()?,
            cuts: [None, None],
            crash: CrashPoint::from_env(),
            found: recovery,
        };
        Ok(store)
    }

    /// Reads the checkpoint and cuts the records back where a crash left a batch torn (or in
    /// one record and not the other).
    fn repair(checkpoints: &checkpoint::Store) -> Result<Option<Recovered>, StoreError> {
        let Some(cp) = checkpoints.load()? else {
            return Ok(None);
        };
        let logins_state = cp.logins.as_ref().and_then(|l| OutputState::of(&l.path));
        let rec = cp.recover(OutputState::of(&cp.output.path), logins_state);
        let cuts = [
            (&cp.output.path, rec.truncate_output_to),
            (
                cp.logins.as_ref().map_or(&cp.output.path, |l| &l.path),
                rec.truncate_logins_to,
            ),
        ];
        let repaired = cuts.iter().any(|(_, len)| len.is_some());
        for (path, len) in cuts {
            if let Some(len) = len {
                cut_back(path, len)?;
            }
        }
        Ok(Some(Recovered {
            positions: rec.positions,
            paths: rec.paths,
            unseen: rec.unseen,
            journals: rec.journals,
            note: format!("{} ({})", rec.note, checkpoints.path().display()),
            repaired,
        }))
    }

    /// `cp` made to describe no batch in flight: each source where a restart would resume now
    /// (both before and after), each record at its length now. Refused when a journal's first
    /// batch was lost (only a restart of the daemon can say "read it from its start").
    fn settle(&self, cp: &Checkpoint) -> Result<Checkpoint, StoreError> {
        let logins_state = cp.logins.as_ref().and_then(|l| OutputState::of(&l.path));
        let rec = cp.recover(OutputState::of(&cp.output.path), logins_state);
        let mut settled = cp.clone();
        for f in &mut settled.files {
            let pos = rec
                .positions
                .get(&f.fingerprint)
                .copied()
                .unwrap_or_default();
            f.offset_before = pos.offset;
            f.offset = pos.offset;
            f.complete = pos.complete;
        }
        for j in &mut settled.journals {
            match rec.journals.get(&j.source) {
                Some(Some(pos)) => {
                    j.before = Some(pos.clone());
                    j.after = pos.clone();
                }
                _ => {
                    return Err(StoreError::Unsupported(format!(
                        "the first entries read from the journal {} were not recorded before the daemon stopped: start the daemon once so that it reads them again, stop it, then purge",
                        j.source
                    )));
                }
            }
        }
        let now = |out: &mut OutputPosition| {
            if let Some(state) = OutputState::of(&out.path) {
                out.len_before = state.len;
                out.len_after = state.len;
                out.dev = state.dev;
                out.ino = state.ino;
            }
        };
        now(&mut settled.output);
        if let Some(l) = &mut settled.logins {
            now(l);
        }
        Ok(settled)
    }

    /// The checkpoint for the records' lengths before and after the staged rows.
    fn checkpoint(
        &self,
        progress: &Progress,
        output: (u64, u64),
        logins: Option<(u64, u64)>,
    ) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            output: self.failures.position(output),
            logins: self
                .logins
                .as_ref()
                .zip(logins)
                .map(|(l, lens)| l.position(lens)),
            files: progress.files.clone(),
            journals: progress.journals.clone(),
        }
    }

    /// Cuts the records back to the lengths a failed write left to cut (see `cuts`); what
    /// cannot be cut stays to do.
    fn cut_back(&mut self) -> Result<(), SinkError> {
        if let Some(len) = self.cuts[0] {
            self.failures.csv.truncate_to(len)?;
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

    /// Appends the staged rows: the intrusion record's, then the logins record's.
    fn append(&mut self) -> Result<(), SinkError> {
        let crash = self.crash;
        let f = &mut self.failures;
        let bytes = f.rows.bytes();
        if crash == Some(CrashPoint::MidRows) {
            let half = bytes.len() / 2;
            let _ = f.csv.append(&bytes[..half]).and_then(|_| f.csv.sync());
            CrashPoint::MidRows.here(crash);
        }
        if !bytes.is_empty() {
            f.csv.append(bytes)?;
            f.csv.sync()?;
        }
        CrashPoint::BetweenRecords.here(crash);
        if let Some(l) = &mut self.logins {
            let bytes = l.rows.bytes();
            if !bytes.is_empty() {
                l.csv.append(bytes)?;
                l.csv.sync()?;
            }
        }
        Ok(())
    }
}

impl Store for CsvStore {
    fn describe(&self) -> String {
        format!("CSV {}", self.failures.csv.path().display())
    }

    fn recover(&mut self) -> Result<Option<Recovered>, StoreError> {
        Ok(self.found.take())
    }

    fn has_rows(&mut self) -> bool {
        // More than the header row and its CRLF.
        let header = crate::sink::COLUMNS.join(",").len() as u64 + 2;
        std::fs::metadata(self.failures.csv.path()).is_ok_and(|m| m.is_file() && m.len() > header)
    }

    fn keeps_logins(&self) -> bool {
        self.logins.is_some()
    }

    fn stage_failure(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>) {
        self.failures.rows.push(event, enrichment);
    }

    fn stage_login(&mut self, event: &AuthEvent, enrichment: Option<&Enrichment>) {
        if let Some(l) = &mut self.logins {
            l.rows.push(event, enrichment);
        }
    }

    fn staged_bytes(&self) -> usize {
        self.failures.rows.bytes().len() + self.logins.as_ref().map_or(0, |l| l.rows.bytes().len())
    }

    /// Writes the checkpoint describing the state after the staged rows, then the rows: the
    /// intrusion record's, then the logins record's. A failure cuts both back, so that a retry
    /// (or a restart) writes the batch whole into each.
    fn commit(&mut self, progress: &Progress) -> Result<(), StoreError> {
        // A failed write's partial rows go first (through the handle that wrote them, even if
        // the file was moved away since).
        self.cut_back()?;
        self.failures.reopen_if_moved()?;
        // The length on disk, not as last written: someone may have truncated the file.
        self.failures.csv.refresh_len();
        let len_before = self.failures.csv.len();
        let len_after = len_before + self.failures.rows.bytes().len() as u64;
        let mut logins_lens = None;
        if let Some(l) = &mut self.logins {
            l.reopen_if_moved()?;
            l.csv.refresh_len();
            let before = l.csv.len();
            logins_lens = Some((before, before + l.rows.bytes().len() as u64));
        }
        let cp = self.checkpoint(progress, (len_before, len_after), logins_lens);
        self.checkpoints.save(&cp)?;
        CrashPoint::AfterCheckpoint.here(self.crash);
        if let Err(e) = self.append() {
            // Take the partial rows back out of both, so that a retry appends them whole.
            self.cuts = [Some(len_before), logins_lens.map(|(before, _)| before)];
            if let Err(cut) = self.cut_back() {
                tracing::error!(
                    "cannot cut a failed write back (tried again before the next write): {cut}"
                );
            }
            return Err(e.into());
        }
        self.failures.rows.clear();
        if let Some(l) = &mut self.logins {
            l.rows.clear();
        }
        Ok(())
    }

    fn save_progress(&mut self, progress: &Progress) -> Result<(), StoreError> {
        let len = self.failures.csv.len();
        let logins = self.logins.as_ref().map(|l| (l.csv.len(), l.csv.len()));
        let cp = self.checkpoint(progress, (len, len), logins);
        self.checkpoints.save(&cp)?;
        Ok(())
    }

    /// Writes to `path` from now on, once a checkpoint naming it is saved (until then, and if
    /// that fails, the old record stays in use).
    fn switch_output(&mut self, path: &Path, progress: &Progress) -> Result<(), StoreError> {
        let record = Record::open(path)?;
        let old = std::mem::replace(&mut self.failures, record);
        if let Err(e) = self.save_progress(progress) {
            self.failures = old;
            return Err(e);
        }
        tracing::info!(from = %old.csv.path().display(), to = %path.display(), "output switched");
        Ok(())
    }

    fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn expire(&mut self, _before: i64) -> Result<u64, StoreError> {
        Err(StoreError::Unsupported(
            "the CSV store keeps every row (its files are only ever appended)".into(),
        ))
    }

    fn purge(&mut self, who: &super::purge::Purge) -> Result<(u64, u64), StoreError> {
        use super::purge::{RECORD_COLUMNS, rewrite_csv};
        // The checkpoint describes the last batch by the records' lengths and identities, which
        // a rewrite changes. So it is first made to say where every source stands with no batch
        // in flight (the positions a restart would decide now, the records as they are), then,
        // once the files are replaced, to name the new files: a crash in between leaves
        // positions that read nothing again and skip nothing.
        let cp = self.checkpoints.load()?;
        let mut settled = match cp {
            Some(cp) => Some(self.settle(&cp)?),
            None => None,
        };
        if let Some(cp) = &settled {
            self.checkpoints.save(cp)?;
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| {
                StoreError::Sink(SinkError::Io {
                    path,
                    op: "rewrite (purge)",
                    source,
                })
            }
        };
        let path = self.failures.csv.path().to_path_buf();
        let failures = rewrite_csv(&path, RECORD_COLUMNS, who).map_err(io(&path))?;
        let logins_path = self.logins.as_ref().map(|l| l.csv.path().to_path_buf());
        let logins = match &logins_path {
            Some(p) => rewrite_csv(p, RECORD_COLUMNS, who).map_err(io(p))?,
            None => None,
        };
        if failures.is_some() {
            self.failures = Record::open(&path)?;
        }
        if let (Some(_), Some(p)) = (logins, &logins_path) {
            self.logins = Some(Record::open(p)?);
        }
        if let Some(cp) = &mut settled {
            let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
            if cp.output.path == path {
                let n = len(&path);
                cp.output = self.failures.position((n, n));
            }
            if let (Some(out), Some(l)) = (&mut cp.logins, &self.logins)
                && out.path == l.csv.path()
            {
                let n = len(l.csv.path());
                *out = l.position((n, n));
            }
            self.checkpoints.save(cp)?;
        }
        Ok((failures.map_or(0, |r| r.rows), logins.map_or(0, |r| r.rows)))
    }

    fn imported(
        &mut self,
        _fingerprint: crate::source::fingerprint::Fingerprint,
    ) -> Result<Option<u64>, StoreError> {
        Err(StoreError::Unsupported(IMPORT_NEEDS_A_DATABASE.into()))
    }

    fn commit_import(
        &mut self,
        _fingerprint: crate::source::fingerprint::Fingerprint,
        _path: &Path,
        _offset: u64,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(IMPORT_NEEDS_A_DATABASE.into()))
    }
}

/// Why the CSV store takes no import.
pub const IMPORT_NEEDS_A_DATABASE: &str = "import records into a database store (it remembers what each file gave, so that importing again adds nothing): set [output] store = \"sqlite\" (or \"postgres\")";
