//! The counters every stage reports into: one place that says what was read, found and
//! skipped, so a summary or a periodic statistics line never has to be pieced together.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

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
    /// Successful logins found (rows of the logins record).
    pub logins: u64,
    /// Dovecot connections that ended without an authentication attempt.
    pub no_auth_attempts: u64,
    /// Dovecot clients refused for trying plaintext authentication where it is disallowed.
    pub plaintext_refused: u64,
    /// Dovecot's verdicts: attempts on usernames that exist (wrong password).
    pub known_user_attempts: u64,
    /// Dovecot's verdicts: attempts on usernames that do not exist.
    pub unknown_user_attempts: u64,
    /// Failures of the server's own SASL backend (not attacks).
    pub backend_failures: u64,
    /// Logins of this server's SMTP/LMTP client refused by a relay (not attacks).
    pub relay_auth_failures: u64,
    /// Lines that look like SASL failures but could not be placed; each was warned about.
    pub unrecognised: u64,
    /// Lines skipped for being longer than `max_line_bytes`.
    pub too_long: u64,
    /// rsyslog `message repeated N times` lines whose N was over
    /// [`crate::parse::MAX_REPEAT`]: each stood for more lines than were counted.
    pub repeats_capped: u64,
    /// Journal entries without a readable text `MESSAGE` (missing, binary, or damaged),
    /// skipped.
    pub unreadable: u64,
}

impl Stats {
    /// Adds another set of counters to this one.
    pub fn add(&mut self, other: &Stats) {
        self.bytes += other.bytes;
        self.lines += other.lines;
        self.failures += other.failures;
        self.logins += other.logins;
        self.no_auth_attempts += other.no_auth_attempts;
        self.plaintext_refused += other.plaintext_refused;
        self.known_user_attempts += other.known_user_attempts;
        self.unknown_user_attempts += other.unknown_user_attempts;
        self.backend_failures += other.backend_failures;
        self.relay_auth_failures += other.relay_auth_failures;
        self.unrecognised += other.unrecognised;
        self.too_long += other.too_long;
        self.repeats_capped += other.repeats_capped;
        self.unreadable += other.unreadable;
    }
}

impl Stats {
    /// Counts `n` lines that are only counted.
    pub fn count(&mut self, what: crate::parse::Counted, n: u64) {
        match what {
            crate::parse::Counted::NoAuthAttempts => self.no_auth_attempts += n,
            crate::parse::Counted::PlaintextRefused => self.plaintext_refused += n,
        }
    }

    /// Counts `n` of Dovecot's verdicts on an existing (`known_user`) or unknown username.
    pub fn verdict(&mut self, known_user: bool, n: u64) {
        if known_user {
            self.known_user_attempts += n;
        } else {
            self.unknown_user_attempts += n;
        }
    }

    /// Counts `n` failures of this kind on the server's side (its own authentication, or a
    /// relay refusing its login); returns that kind's count so far.
    pub fn backend(&mut self, kind: &crate::parse::BackendKind, n: u64) -> u64 {
        use crate::parse::BackendKind;
        let seen = match kind {
            BackendKind::AuthServer { .. } | BackendKind::AuthProcess { .. } => {
                &mut self.backend_failures
            }
            BackendKind::Relay { .. } => &mut self.relay_auth_failures,
        };
        *seen += n;
        *seen
    }
}

/// The Dovecot-only counts, said when there are any.
fn dovecot_counts(f: &mut fmt::Formatter<'_>, no_attempts: u64, plaintext: u64) -> fmt::Result {
    if no_attempts > 0 {
        write!(f, ", {no_attempts} connections without auth attempts")?;
    }
    if plaintext > 0 {
        write!(f, ", {plaintext} refused plaintext logins")?;
    }
    Ok(())
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lines ({} bytes), {} failed logins, {} logins, {} auth-backend failures, {} relay login failures, {} unrecognised, {} too long",
            self.lines,
            self.bytes,
            self.failures,
            self.logins,
            self.backend_failures,
            self.relay_auth_failures,
            self.unrecognised,
            self.too_long
        )?;
        dovecot_counts(f, self.no_auth_attempts, self.plaintext_refused)?;
        if self.known_user_attempts + self.unknown_user_attempts > 0 {
            write!(
                f,
                ", Dovecot's verdicts: {} on existing usernames, {} on unknown ones",
                self.known_user_attempts, self.unknown_user_attempts
            )?;
        }
        if self.repeats_capped > 0 {
            write!(f, ", {} repeat counts capped", self.repeats_capped)?;
        }
        if self.unreadable > 0 {
            write!(
                f,
                ", {} journal entries without a text message skipped",
                self.unreadable
            )?;
        }
        Ok(())
    }
}

/// Counters shared by the daemon's actors (atomics: many writers, one reader), with the few
/// notable events that are not per-input statistics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lines read.
    pub lines: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
    /// Rows durably written.
    pub failures: AtomicU64,
    /// Login rows durably written.
    pub logins: AtomicU64,
    /// Dovecot connections without an authentication attempt.
    pub no_auth_attempts: AtomicU64,
    /// Dovecot plaintext logins refused.
    pub plaintext_refused: AtomicU64,
    /// Auth-backend failures seen.
    pub backend_failures: AtomicU64,
    /// Relay login failures seen.
    pub relay_auth_failures: AtomicU64,
    /// Unrecognised SASL failure lines.
    pub unrecognised: AtomicU64,
    /// Lines skipped for length.
    pub too_long: AtomicU64,
    /// Repeated-message counts over the cap.
    pub repeats_capped: AtomicU64,
    /// Journal entries without a readable text message.
    pub unreadable: AtomicU64,
    /// Files rotated away (renamed, replaced or deleted) while followed.
    pub rotations: AtomicU64,
    /// Files truncated while followed.
    pub truncations: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Bytes in followed files not read yet, summed over files at their last check.
    pub lag_bytes: AtomicU64,
    /// The store's write failure being retried, as logged (`None`: writing works).
    pub store_problem: std::sync::Mutex<Option<String>>,
    /// When rows or positions were last committed (seconds since the epoch; 0: not yet).
    pub last_commit_unix: AtomicU64,
    /// Rows committed by (service, mechanism, outcome): labels of low cardinality (see
    /// [`Counters::add_kinds`]).
    pub by_kind: std::sync::Mutex<std::collections::BTreeMap<Kind, u64>>,
}

/// What a row is, as counted for `status` and the metrics: the service that logged it, the
/// mechanism tried, and `failure` or `login`.
pub type Kind = (String, String, &'static str);

/// Distinct kinds counted at most; more are counted under `other` (a service name or a
/// mechanism is text from the log: it must never grow the metrics without bound).
pub const MAX_KINDS: usize = 64;

/// `s` as a label value: short, plain (letters, digits, `/._-`), else `other`.
pub fn label_value(s: &str, upper: bool) -> String {
    let plain = !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
    match (plain, upper) {
        (false, _) => "other".into(),
        (true, true) => s.to_ascii_uppercase(),
        (true, false) => s.to_string(),
    }
}

impl Counters {
    /// Adds committed rows by kind; a kind not seen before once [`MAX_KINDS`] are known is
    /// counted as (`other`, `other`, outcome).
    pub fn add_kinds(&self, kinds: &std::collections::BTreeMap<Kind, u64>) {
        let mut by = self.by_kind.lock().expect("kinds lock");
        for (k, n) in kinds {
            let key = if by.contains_key(k) || by.len() < MAX_KINDS {
                k.clone()
            } else {
                ("other".into(), "other".into(), k.2)
            };
            *by.entry(key).or_default() += n;
        }
    }

    /// Adds a reader's statistics (not `failures`: those count when written).
    pub fn add_read(&self, s: &Stats) {
        self.lines.fetch_add(s.lines, Relaxed);
        self.bytes.fetch_add(s.bytes, Relaxed);
        self.backend_failures.fetch_add(s.backend_failures, Relaxed);
        self.no_auth_attempts.fetch_add(s.no_auth_attempts, Relaxed);
        self.plaintext_refused
            .fetch_add(s.plaintext_refused, Relaxed);
        self.relay_auth_failures
            .fetch_add(s.relay_auth_failures, Relaxed);
        self.unrecognised.fetch_add(s.unrecognised, Relaxed);
        self.too_long.fetch_add(s.too_long, Relaxed);
        self.repeats_capped.fetch_add(s.repeats_capped, Relaxed);
        self.unreadable.fetch_add(s.unreadable, Relaxed);
    }

    /// A consistent-enough copy for a statistics line.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            lines: self.lines.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            failures: self.failures.load(Relaxed),
            logins: self.logins.load(Relaxed),
            no_auth_attempts: self.no_auth_attempts.load(Relaxed),
            plaintext_refused: self.plaintext_refused.load(Relaxed),
            backend_failures: self.backend_failures.load(Relaxed),
            relay_auth_failures: self.relay_auth_failures.load(Relaxed),
            unrecognised: self.unrecognised.load(Relaxed),
            too_long: self.too_long.load(Relaxed),
            repeats_capped: self.repeats_capped.load(Relaxed),
            unreadable: self.unreadable.load(Relaxed),
            rotations: self.rotations.load(Relaxed),
            truncations: self.truncations.load(Relaxed),
            checkpoints: self.checkpoints.load(Relaxed),
            lag_bytes: self.lag_bytes.load(Relaxed),
        }
    }
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Rows written.
    pub failures: u64,
    /// Login rows written.
    pub logins: u64,
    /// Dovecot connections without an authentication attempt.
    pub no_auth_attempts: u64,
    /// Dovecot plaintext logins refused.
    pub plaintext_refused: u64,
    /// Auth-backend failures.
    pub backend_failures: u64,
    /// Relay login failures.
    pub relay_auth_failures: u64,
    /// Unrecognised SASL failure lines.
    pub unrecognised: u64,
    /// Lines skipped for length.
    pub too_long: u64,
    /// Repeated-message counts over the cap.
    pub repeats_capped: u64,
    /// Journal entries without a readable text message.
    pub unreadable: u64,
    /// Rotations seen.
    pub rotations: u64,
    /// Truncations seen.
    pub truncations: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Unread bytes in followed files.
    pub lag_bytes: u64,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lines read, {} failed logins recorded, {} logins recorded, {} auth-backend failures, {} relay login failures, {} unrecognised, {} skipped as too long, lag {} bytes",
            self.lines,
            self.failures,
            self.logins,
            self.backend_failures,
            self.relay_auth_failures,
            self.unrecognised,
            self.too_long,
            self.lag_bytes
        )?;
        dovecot_counts(f, self.no_auth_attempts, self.plaintext_refused)?;
        if self.repeats_capped > 0 {
            write!(f, ", {} repeat counts capped", self.repeats_capped)?;
        }
        if self.unreadable > 0 {
            write!(
                f,
                ", {} journal entries without a text message skipped",
                self.unreadable
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_capped_and_label_values_plain() {
        assert_eq!(
            label_value("postfix/submission/smtpd", false),
            "postfix/submission/smtpd"
        );
        assert_eq!(label_value("login", true), "LOGIN");
        assert_eq!(label_value("EVIL\u{1b}[2J", true), "other");
        assert_eq!(label_value(&"x".repeat(41), false), "other");
        let c = Counters::default();
        let many: std::collections::BTreeMap<Kind, u64> = (0..MAX_KINDS + 10)
            .map(|i| ((format!("s{i:03}"), "PLAIN".to_string(), "failure"), 1))
            .collect();
        c.add_kinds(&many);
        let by = c.by_kind.lock().unwrap();
        assert_eq!(by.len(), MAX_KINDS + 1);
        assert_eq!(by[&("other".into(), "other".into(), "failure")], 10);
    }
}
