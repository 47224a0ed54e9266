//! The journal source: Postfix and Dovecot entries read from the systemd journal, for hosts
//! where nothing writes a mail.log (Debian 12 and later install no syslog daemon).
//!
//! Entries are read with libsystemd (through the `systemd` crate), the same reader
//! `journalctl` uses: it knows every version of the file format (compact, compressed, keyed
//! hashes), follows rotation and vacuum, and skips over corrupt parts as journalctl does. Why
//! not the alternatives is in docs/architecture.md ("Journal source").
//!
//! A journal entry is never turned into a text line and parsed back: its fields go straight
//! into the parser's [`Entry`] (host from `_HOSTNAME`, program from `SYSLOG_IDENTIFIER`, the
//! instant from `_SOURCE_REALTIME_TIMESTAMP` or the entry's own), so the timestamp carries its
//! true year, zone and microseconds. As in a file, almost every entry is something else: only
//! `MESSAGE` is looked at first, and only entries whose message holds the prefilter's phrase
//! have their other fields read.
//!
//! The position is the journal cursor of the last entry read, with its timestamp. It is
//! committed with the rows by the same protocol as file offsets (see [`crate::checkpoint`]).
//! Resuming seeks the cursor and checks that the entry is still there (`sd_journal_test_cursor`);
//! when it is not (vacuumed), reading resumes at the first entry after its timestamp, and a
//! warning says how much time may be missing.

pub mod follow;

use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{Local, TimeZone};
use systemd::journal::{Journal, OpenDirectoryOptions, OpenFilesOptions, OpenOptions};

use crate::parse::{self, Entry, Prefilter, Timestamp};
use crate::pipeline::Events;
use crate::stats::Stats;

/// The entries rsyslog's stock configuration writes to mail.log: facility mail. It covers
/// Postfix (whatever its `syslog_name`, every instance) and Dovecot.
pub const DEFAULT_MATCH: &str = "SYSLOG_FACILITY=2";

/// Where journald keeps the system journal: persistent, then volatile.
pub const SYSTEM_JOURNAL_DIRS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

/// Messages longer than this are not parsed (a journal entry has no line limit; a mail log
/// line that long is not one Postfix wrote). Counted as too long.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// One `FIELD=value` term of `journal_match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The field name (`SYSLOG_IDENTIFIER`, `_SYSTEMD_UNIT`, ...).
    pub field: String,
    /// The exact value.
    pub value: String,
}

impl Match {
    /// Reads a term as `journalctl` takes it: a field name of upper-case letters, digits and
    /// `_`, not starting with a digit, then `=` and the value.
    pub fn parse(term: &str) -> Result<Match, String> {
        let Some((field, value)) = term.split_once('=') else {
            return Err(format!(
                "{term:?} is not a match: write FIELD=value, e.g. \"SYSLOG_IDENTIFIER=postfix/smtpd\""
            ));
        };
        let valid = !field.is_empty()
            && !field.starts_with(|c: char| c.is_ascii_digit())
            && field
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(format!(
                "{field:?} in {term:?} is not a journal field name: field names are upper-case letters, digits and _, like SYSLOG_FACILITY or _SYSTEMD_UNIT"
            ));
        }
        Ok(Match {
            field: field.to_string(),
            value: value.to_string(),
        })
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.field, self.value)
    }
}

/// Whether the journal is read (`sources.journal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalUse {
    /// `"auto"`: instead of the files when none of them exists at start and a journal does.
    Auto,
    /// `true`: beside the files.
    Always,
    /// `false`: never.
    Never,
}

/// What `[sources]` says about the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSettings {
    /// Whether to read it.
    pub mode: JournalUse,
    /// Which entries (never empty: [`DEFAULT_MATCH`] when the configuration names none).
    pub matches: Vec<Match>,
    /// A journal directory or file to read instead of the system journal.
    pub path: Option<PathBuf>,
}

/// Whether the journal is read, and why (for the start-up line and `check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Read the journal.
    pub journal: bool,
    /// Read the configured files.
    pub files: bool,
    /// Why, in a sentence.
    pub why: String,
}

impl JournalSettings {
    /// The name of this journal's position in the checkpoint: `system`, or the path read.
    pub fn source_id(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "system".to_string(),
        }
    }

    /// The journal, for people: "the system journal" or "the journal in PATH".
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("the journal in {}", p.display()),
            None => "the system journal".to_string(),
        }
    }

    /// Whether there is a journal to read: the configured path exists, or journald keeps
    /// files in one of [`SYSTEM_JOURNAL_DIRS`].
    pub fn present(&self) -> bool {
        match &self.path {
            Some(p) => p.exists(),
            None => SYSTEM_JOURNAL_DIRS
                .iter()
                .any(|d| holds_journal_files(Path::new(d))),
        }
    }

    /// Decides which sources a start reads, given the configured files.
    pub fn choose(&self, files: &[PathBuf]) -> Choice {
        let list = || {
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.mode {
            JournalUse::Never => Choice {
                journal: false,
                files: true,
                why: "sources.journal = false".into(),
            },
            JournalUse::Always => Choice {
                journal: true,
                files: true,
                why: "sources.journal = true: the journal is read beside the files".into(),
            },
            JournalUse::Auto => {
                if files.iter().any(|p| p.exists()) {
                    Choice {
                        journal: false,
                        files: true,
                        why: format!("the configured log file exists ({})", list()),
                    }
                } else if self.present() {
                    Choice {
                        journal: true,
                        files: false,
                        why: format!(
                            "none of the configured log files exists ({}) and {} does (sources.journal = \"auto\"; the choice holds until restart)",
                            list(),
                            self.describe()
                        ),
                    }
                } else {
                    Choice {
                        journal: false,
                        files: true,
                        why: format!(
                            "none of the configured log files exists yet ({}) and there is no journal either: waiting for the files",
                            list()
                        ),
                    }
                }
            }
        }
    }
}

/// Whether `dir` (or a machine directory in it) holds a `.journal` file.
fn holds_journal_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        p.extension().is_some_and(|x| x == "journal")
            || (p.is_dir()
                && std::fs::read_dir(&p).is_ok_and(|mut d| {
                    d.any(|f| f.is_ok_and(|f| f.path().extension().is_some_and(|x| x == "journal")))
                }))
    })
}

pub use crate::pipeline::JournalPos;

/// Where reading starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalStart {
    /// Just after this entry (a restart).
    After(JournalPos),
    /// At the oldest entry retained (backfill).
    Head,
    /// After the newest entry: only what comes next.
    Tail,
    /// At the first entry at or after this instant (microseconds since the epoch).
    Since(u64),
}

/// Where [`JournalReader::seek`] left the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeked {
    /// Ready to read on.
    Ready,
    /// At the newest entry ([`JournalStart::Tail`]), which counts as read: a first start
    /// without backfill records it so that a restart does not read that history after all.
    AtNewest(JournalPos),
    /// The journal holds no matching entry yet ([`JournalStart::Tail`]): reading starts at its
    /// head, so a reopen must start there too (every entry in it is new).
    Empty,
}

/// Why the journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Opening failed.
    #[error("cannot open {what}: {source}{}", hint(source))]
    Open {
        /// The journal, for people.
        what: String,
        /// What libsystemd said.
        source: systemd::Error,
    },
    /// The system journal's files exist but none is readable by this user.
    #[error(
        "{what} exists but this user cannot read it: add the user to group systemd-journal (or adm), or run as root"
    )]
    Unreadable {
        /// The journal, for people.
        what: String,
    },
    /// Reading failed (a corrupt or vanished file, say).
    #[error("reading {what}: {source}")]
    Read {
        /// The journal, for people.
        what: String,
        /// What libsystemd said.
        source: systemd::Error,
    },
}

fn hint(e: &systemd::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        " (the user needs to be in group systemd-journal or adm to read the system journal)"
    } else {
        ""
    }
}

/// What one [`JournalReader::read`] call found.
#[derive(Debug, Default)]
pub struct Read {
    /// Rows and backend failures, in journal order.
    pub events: Events,
    /// Counters (`lines` are entries).
    pub stats: Stats,
    /// The position after the last entry read (`None`: nothing was read).
    pub end: Option<JournalPos>,
    /// No entry is left for now (or the window's end was reached).
    pub at_end: bool,
}

/// Reads entries from one journal: opened with its matches, positioned, then read in runs.
pub struct JournalReader {
    journal: Journal,
    what: String,
    /// The matches, by field: an entry is read when, for every field, its value is one of
    /// the field's values (OR within a field, AND across fields).
    filter: Vec<(CString, Vec<Vec<u8>>)>,
    prefilter: Prefilter,
    /// Entries after this instant (microseconds) end the read (a `scan` window).
    until: Option<u64>,
    /// The message of the entry being parsed (libsystemd's data is only valid until the next
    /// field is read).
    message: Vec<u8>,
    program: Vec<u8>,
    host: Vec<u8>,
}

impl JournalReader {
    /// Opens the journal the settings name, with their matches.
    pub fn open(settings: &JournalSettings) -> Result<Self, JournalError> {
        let what = settings.describe();
        let open_err = |source: systemd::Error| JournalError::Open {
            what: what.clone(),
            source,
        };
        let mut journal = match &settings.path {
            None => OpenOptions::default().system(true).open(),
            Some(p) if p.is_dir() => {
                OpenDirectoryOptions::default().open_directory(p.as_os_str().as_encoded_bytes())
            }
            Some(p) => {
                // Checked here: libsystemd opens a missing file as an empty journal.
                std::fs::File::open(p).map_err(|e| open_err(e.into()))?;
                OpenFilesOptions::default().open_files([p.as_os_str().as_encoded_bytes()])
            }
        }
        .map_err(open_err)?;
        // The default (64 KiB) would cut longer messages without saying so.
        journal
            .set_data_threshold(MAX_MESSAGE_BYTES + 64)
            .map_err(open_err)?;
        // libsystemd opens the system journal for anyone, showing only the files the user may
        // read: none while some exist means the user lacks the group.
        if settings.path.is_none()
            && !journal.has_persistent_files().unwrap_or(false)
            && !journal.has_runtime_files().unwrap_or(false)
            && settings.present()
        {
            return Err(JournalError::Unreadable { what: what.clone() });
        }
        let mut filter: Vec<(CString, Vec<Vec<u8>>)> = Vec::new();
        for m in &settings.matches {
            let field = CString::new(m.field.as_str()).expect("field names are validated");
            match filter.iter_mut().find(|(f, _)| *f == field) {
                Some((_, values)) => values.push(m.value.as_bytes().to_vec()),
                None => filter.push((field, vec![m.value.as_bytes().to_vec()])),
            }
        }
        Ok(JournalReader {
            journal,
            what,
            filter,
            prefilter: Prefilter::default(),
            until: None,
            message: Vec::new(),
            program: Vec::new(),
            host: Vec::new(),
        })
    }

    /// Whether the user running this may read the journal the settings name: `Err` says what
    /// is wrong and what to do. libsystemd opens the system journal for anyone, showing only
    /// the files the user may read, so "none readable while some exist" is the check.
    pub fn check_readable(settings: &JournalSettings) -> Result<(), String> {
        JournalReader::open(settings)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Ends reads at the first entry after `usec` (microseconds since the epoch).
    pub fn set_until(&mut self, usec: u64) {
        self.until = Some(usec);
    }

    fn err(&self, source: systemd::Error) -> JournalError {
        JournalError::Read {
            what: self.what.clone(),
            source,
        }
    }

    /// Positions the reader. Returns the position reached when it is an entry already
    /// accounted for (the newest one, for [`JournalStart::Tail`]), which a first start without
    /// backfill records so that a restart does not read that history after all.
    pub fn seek(&mut self, start: &JournalStart) -> Result<Seeked, JournalError> {
        match start {
            JournalStart::Head => self.journal.seek_head().map_err(|e| self.err(e))?,
            JournalStart::Since(usec) => self
                .journal
                .seek_realtime_usec(*usec)
                .map_err(|e| self.err(e))?,
            JournalStart::Tail => {
                self.journal.seek_tail().map_err(|e| self.err(e))?;
                // Step onto the newest entry: what follows it is new.
                if self.journal.previous().map_err(|e| self.err(e))? > 0 {
                    return self.position().map(Seeked::AtNewest);
                }
                // No entry matches yet: after `seek_tail`, libsystemd's next `next` would
                // return the newest entry only, skipping all others that arrive meanwhile.
                // From the head, every one of them is read (and none older exists).
                self.journal.seek_head().map_err(|e| self.err(e))?;
                return Ok(Seeked::Empty);
            }
            JournalStart::After(pos) => {
                let found = self.journal.seek_cursor(&pos.cursor).is_ok()
                    && self.journal.next().map_err(|e| self.err(e))? > 0
                    && self.journal.test_cursor(&pos.cursor).unwrap_or(false);
                if !found {
                    self.warn_gap(pos);
                    // libsystemd places a cursor whose entry is gone (or no longer matches)
                    // where it was: by sequence number within the same journal, else by boot
                    // and clock. The next entry read is the first after it.
                    if self.journal.seek_cursor(&pos.cursor).is_err() {
                        self.journal
                            .seek_realtime_usec(pos.realtime_usec.saturating_add(1))
                            .map_err(|e| self.err(e))?;
                    }
                }
            }
        }
        Ok(Seeked::Ready)
    }

    /// The saved entry was not found: says how much time may be missing when the journal now
    /// starts after it (vacuumed), or that the entry is not among those read any more.
    fn warn_gap(&self, pos: &JournalPos) {
        let saved = show_usec(pos.realtime_usec);
        match self.journal.cutoff_realtime_usec() {
            Ok(Some((oldest, _))) if oldest > pos.realtime_usec => {
                let gap = Duration::from_micros(oldest - pos.realtime_usec);
                tracing::warn!(
                    journal = %self.what,
                    "the saved journal position (an entry at {saved}) is no longer in the journal (vacuumed or rotated away while the daemon was stopped): resuming at the oldest entry, at {}; entries from up to {} before it may be missing",
                    show_usec(oldest),
                    humantime::format_duration(Duration::from_millis(gap.as_millis() as u64))
                );
            }
            _ => tracing::info!(
                journal = %self.what,
                "the saved journal position (an entry at {saved}) is not among the entries read now (journal_match changed?): resuming just after its place"
            ),
        }
    }

    /// The current entry's position.
    fn position(&self) -> Result<JournalPos, JournalError> {
        Ok(JournalPos {
            cursor: self.journal.cursor().map_err(|e| self.err(e))?,
            realtime_usec: self.journal.timestamp_usec().map_err(|e| self.err(e))?,
        })
    }

    /// Reads up to `max_entries` entries (fewer when no more are there for now), parsing those
    /// whose message holds a SASL failure.
    pub fn read(&mut self, max_entries: usize) -> Result<Read, JournalError> {
        let mut out = Read::default();
        let mut read_any = false;
        for _ in 0..max_entries {
            if self.journal.next().map_err(|e| self.err(e))? == 0 {
                out.at_end = true;
                break;
            }
            if let Some(until) = self.until {
                let t = self.journal.timestamp_usec().map_err(|e| self.err(e))?;
                if t > until {
                    // Step back: this entry is not read (nor accounted for).
                    let _ = self.journal.previous();
                    out.at_end = true;
                    break;
                }
            }
            read_any = true;
            if !self.selected() {
                continue;
            }
            out.stats.lines += 1;
            self.entry(&mut out);
        }
        if read_any {
            out.end = Some(self.position()?);
        }
        Ok(out)
    }

    /// Whether the current entry passes the matches. The entries are filtered here rather
    /// than by libsystemd's own matches: those follow per-value entry arrays, which end
    /// silently at a damaged region of a file (journalctl with a match stops there too),
    /// while stepping through every entry skips only the damaged ones.
    fn selected(&mut self) -> bool {
        for (field, values) in &self.filter {
            let Ok(Some(f)) = self.journal.get_data(field.as_c_str()) else {
                return false;
            };
            let value = f.value().unwrap_or_default();
            if !values.iter().any(|v| v == value) {
                return false;
            }
        }
        true
    }

    /// Looks at the current entry. Nothing is copied unless its message holds the phrase.
    fn entry(&mut self, out: &mut Read) {
        self.message.clear();
        match self.journal.get_data(c"MESSAGE") {
            Ok(Some(field)) => match field.value() {
                // A binary MESSAGE (NUL bytes) is no text a mail server logged.
                Some(m) if memchr::memchr(0, m).is_none() => {
                    out.stats.bytes += m.len() as u64;
                    if !self.prefilter.matches(m) {
                        return;
                    }
                    if m.len() > MAX_MESSAGE_BYTES {
                        out.stats.too_long += 1;
                        return;
                    }
                    self.message.extend_from_slice(m);
                }
                _ => {
                    out.stats.unreadable += 1;
                    return;
                }
            },
            Ok(None) => {
                out.stats.unreadable += 1;
                return;
            }
            Err(e) => {
                tracing::warn!(journal = %self.what, "a journal entry could not be read: {e}");
                out.stats.unreadable += 1;
                return;
            }
        }
        self.program.clear();
        self.host.clear();
        for (field, buf) in [
            (c"SYSLOG_IDENTIFIER", &mut self.program),
            (c"_HOSTNAME", &mut self.host),
        ] {
            if let Ok(Some(f)) = self.journal.get_data(field) {
                buf.extend_from_slice(f.value().unwrap_or_default());
            }
        }
        if self.program.is_empty()
            && let Ok(Some(f)) = self.journal.get_data(c"_COMM")
        {
            self.program
                .extend_from_slice(f.value().unwrap_or_default());
        }
        let usec = self.source_time();
        let Some(timestamp) = timestamp(usec) else {
            out.stats.unrecognised += 1;
            return;
        };
        let parsed = parse::parse_entry(&Entry {
            timestamp,
            host: &self.host,
            program: &self.program,
            message: &self.message,
        });
        super::collect(
            parsed,
            1,
            false,
            &format_args!("{} at {}", self.what, timestamp.to_rfc3339()),
            &mut out.events,
            &mut out.stats,
        );
    }

    /// When the program logged the entry: `_SOURCE_REALTIME_TIMESTAMP` (set by journald from
    /// the sender's own clock reading), else when journald received it.
    fn source_time(&mut self) -> u64 {
        if let Ok(Some(f)) = self.journal.get_data(c"_SOURCE_REALTIME_TIMESTAMP")
            && let Some(v) = f.value()
            && let Some(usec) = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok())
        {
            return usec;
        }
        self.journal.timestamp_usec().unwrap_or(0)
    }

    /// Waits up to `timeout` for the journal to change (new entries, a rotation).
    pub fn wait(&mut self, timeout: Duration) -> Result<(), JournalError> {
        self.journal
            .wait(Some(timeout))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

/// Microseconds since the epoch as a timestamp in the local zone, with microseconds.
fn timestamp(usec: u64) -> Option<Timestamp> {
    let t = Local.timestamp_micros(i64::try_from(usec).ok()?).single()?;
    Some(Timestamp {
        time: t.fixed_offset(),
        frac_digits: 6,
    })
}

/// An instant in microseconds, for people.
fn show_usec(usec: u64) -> String {
    timestamp(usec).map_or_else(|| format!("{usec} µs"), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_are_journalctl_terms() {
        let m = Match::parse("SYSLOG_IDENTIFIER=postfix/smtpd").unwrap();
        assert_eq!(
            (m.field.as_str(), m.value.as_str()),
            ("SYSLOG_IDENTIFIER", "postfix/smtpd")
        );
        assert_eq!(Match::parse("_SYSTEMD_UNIT=a=b").unwrap().value, "a=b");
        assert_eq!(Match::parse("MESSAGE=").unwrap().value, "");
        for bad in [
            "SYSLOG_FACILITY",
            "syslog_facility=2",
            "=2",
            "2X=1",
            "A B=1",
        ] {
            let e = Match::parse(bad).unwrap_err();
            assert!(e.contains(bad.split('=').next().unwrap()), "{bad}: {e}");
        }
    }

    #[test]
    fn auto_reads_the_journal_only_when_no_file_exists_and_a_journal_does() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mail.log");
        let jdir = dir.path().join("journal");
        let mut s = JournalSettings {
            mode: JournalUse::Auto,
            matches: vec![Match::parse(DEFAULT_MATCH).unwrap()],
            path: Some(jdir.clone()),
        };
        let c = s.choose(std::slice::from_ref(&log));
        assert!(
            !c.journal && c.files && c.why.contains("no journal"),
            "{c:?}"
        );
        std::fs::create_dir(&jdir).unwrap();
        let c = s.choose(std::slice::from_ref(&log));
        assert!(c.journal && !c.files && c.why.contains("mail.log"), "{c:?}");
        std::fs::write(&log, "").unwrap();
        let c = s.choose(std::slice::from_ref(&log));
        assert!(!c.journal && c.files, "{c:?}");
        s.mode = JournalUse::Always;
        let c = s.choose(std::slice::from_ref(&log));
        assert!(c.journal && c.files, "{c:?}");
        s.mode = JournalUse::Never;
        std::fs::remove_file(&log).unwrap();
        assert!(!s.choose(&[log]).journal);
    }

    #[test]
    fn journal_timestamps_keep_their_microseconds() {
        let t = timestamp(1_795_000_000_123_456).unwrap();
        assert_eq!(t.time.timestamp_micros(), 1_795_000_000_123_456);
        assert!(t.to_rfc3339().contains(".123456"), "{}", t.to_rfc3339());
    }
}
