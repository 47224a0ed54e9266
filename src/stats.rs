//! The counters every stage reports into: one place that says what was read, found and
//! skipped, so a summary or a periodic statistics line never has to be pieced together.

use std::fmt;

/// What reading some input produced. Plain counters: one owner adds to them, and summaries
/// add them up with [`Stats::add`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Bytes read (after decompression).
    pub bytes: u64,
    /// Lines read.
    pub lines: u64,
    /// Failed logins found (rows written).
    pub failures: u64,
    /// Failures of the server's own SASL backend (not attacks).
    pub backend_failures: u64,
    /// Lines that look like SASL failures but could not be placed; each was warned about.
    pub unrecognised: u64,
    /// Lines skipped for being longer than `max_line_bytes`.
    pub too_long: u64,
}

impl Stats {
    /// Adds another set of counters to this one.
    pub fn add(&mut self, other: &Stats) {
        self.bytes += other.bytes;
        self.lines += other.lines;
        self.failures += other.failures;
        self.backend_failures += other.backend_failures;
        self.unrecognised += other.unrecognised;
        self.too_long += other.too_long;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lines ({} bytes), {} failed logins, {} auth-backend failures, {} unrecognised, {} too long",
            self.lines,
            self.bytes,
            self.failures,
            self.backend_failures,
            self.unrecognised,
            self.too_long
        )
    }
}
