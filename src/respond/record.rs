//! The ban record, `state_dir/bans.csv`: one row per ban, unban, forgiveness and command run,
//! appended and synced before the responder goes on.
//!
//! It is what `maillogsentinel bans` lists, what a start reconciles nftables with (bans still
//! running are put back, elements nobody recorded are removed), and what repeat offenders are
//! counted from. A start rewrites it without the rows no longer needed (older than `keep`,
//! except bans still running), so it stays the size of its last week.
//!
//! Attacker text (usernames, AS names) is neutralised for spreadsheets like the records'.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The record's file name in the state directory.
pub const FILE_NAME: &str = "bans.csv";

/// The record's columns.
pub const COLUMNS: [&str; 13] = [
    "time",
    "action",
    "target",
    "rule",
    "duration_secs",
    "expires",
    "ip",
    "username",
    "mode",
    "outcome",
    "country",
    "asn",
    "as_org",
];

/// What a row says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A ban started.
    Ban,
    /// A ban was lifted before its end (by hand, or by the cap on active bans).
    Unban,
    /// A successful login cleared its address's failures.
    Forgive,
    /// The `exec` command ran for a ban.
    Exec,
}

/// One row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// When, seconds since the epoch (the wall clock).
    pub time: i64,
    /// What.
    pub action: Action,
    /// The address or network concerned.
    pub target: IpNet,
    /// The rule (`manual` for `maillogsentinel ban`; why, for an unban).
    pub rule: String,
    /// The ban's length.
    pub duration_secs: u64,
    /// When the ban ends, seconds since the epoch (0 for other rows).
    pub expires: i64,
    /// The address whose failure made it.
    pub ip: Option<IpAddr>,
    /// The username it tried.
    pub username: String,
    /// `ban` or `log`.
    pub mode: super::Mode,
    /// `ok`, or what went wrong carrying it out.
    pub outcome: String,
    /// The address's country.
    pub country: String,
    /// Its AS number.
    pub asn: Option<u32>,
    /// Its AS organisation.
    pub as_org: String,
}

impl Row {
    /// A row of `action` on `target` at `time`, with nothing else known yet (`ok`, no length,
    /// no address, no enrichment): the fields that matter are set by the caller.
    pub fn new(time: i64, action: Action, target: IpNet, rule: &str, mode: super::Mode) -> Row {
        Row {
            time,
            action,
            target,
            rule: rule.to_string(),
            duration_secs: 0,
            expires: 0,
            ip: None,
            username: String::new(),
            mode,
            outcome: "ok".into(),
            country: String::new(),
            asn: None,
            as_org: String::new(),
        }
    }
}

/// What the record says now.
#[derive(Debug, Default)]
pub struct Book {
    /// Bans not ended nor lifted, by target (those carried out: a ban nftables refused is
    /// recorded, not running).
    pub active: HashMap<IpNet, Row>,
    /// When each target was banned (until when) or unbanned, oldest first (repeat offenders;
    /// a restart's replay).
    pub history: HashMap<IpNet, Vec<(i64, i64, Action)>>,
    /// Successful logins that forgave failures: (time logged, address, username), oldest
    /// first (a restart's replay forgives again where it happened).
    pub forgiven: Vec<(i64, IpAddr, String)>,
}

impl Book {
    /// Takes a row into account.
    pub fn apply(&mut self, row: &Row, now: i64) {
        match row.action {
            Action::Ban => {
                if row.expires > now && row.outcome == "ok" {
                    self.active.insert(row.target, row.clone());
                }
                self.history.entry(row.target).or_default().push((
                    row.time,
                    row.expires,
                    Action::Ban,
                ));
            }
            Action::Unban => {
                self.active.remove(&row.target);
                self.history.entry(row.target).or_default().push((
                    row.time,
                    row.time,
                    Action::Unban,
                ));
            }
            Action::Forgive => {
                if let Some(ip) = row.ip {
                    self.forgiven.push((row.time, ip, row.username.clone()));
                }
            }
            Action::Exec => {}
        }
    }

    /// Drops bans that ended by `now`.
    pub fn expire(&mut self, now: i64) -> usize {
        let before = self.active.len();
        self.active.retain(|_, r| r.expires > now);
        before - self.active.len()
    }

    /// Bans of `target` that started after `since`.
    pub fn bans_since(&self, target: &IpNet, since: i64) -> usize {
        self.history.get(target).map_or(0, |h| {
            h.iter()
                .filter(|(t, _, a)| *a == Action::Ban && *t > since)
                .count()
        })
    }

    /// Whether `target` was banned or unbanned at or after `ts`, or banned then.
    pub fn decided_since(&self, target: &IpNet, ts: i64) -> bool {
        self.history.get(target).is_some_and(|h| {
            h.iter()
                .any(|(t, until, a)| *t >= ts || (*a == Action::Ban && *t <= ts && ts < *until))
        })
    }

    /// The running ban of `target` at `now`, if any.
    pub fn running(&self, target: &IpNet, now: i64) -> Option<&Row> {
        self.active.get(target).filter(|r| r.expires > now)
    }

    /// Forgets history older than `from`.
    pub fn prune(&mut self, from: i64) {
        self.history.retain(|_, h| {
            h.retain(|(t, until, _)| *t >= from || *until >= from);
            !h.is_empty()
        });
        self.forgiven.retain(|(t, _, _)| *t >= from);
    }
}

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("ban record {}: {message}", path.display())]
pub struct RecordError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// The record's file (appended to by the responder and the `exec` thread: one at a time).
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl Record {
    /// The record in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Record {
            path: state_dir.join(FILE_NAME),
            lock: std::sync::Mutex::new(()),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> RecordError {
        RecordError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Reads every row (a row that cannot be read is skipped and counted in the second value).
    pub fn read(&self) -> Result<(Vec<Row>, usize), RecordError> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(self.err(format!("cannot read it: {e}"))),
        };
        let mut r = ::csv::ReaderBuilder::new().from_reader(std::io::BufReader::new(file));
        let (mut rows, mut bad) = (Vec::new(), 0);
        for rec in r.deserialize::<RawRow>() {
            match rec.ok().and_then(RawRow::into_row) {
                Some(row) => rows.push(row),
                None => bad += 1,
            }
        }
        Ok((rows, bad))
    }

    /// Reads the record into a [`Book`] at `now`, and rewrites it without the rows older than
    /// `keep` seconds (bans still running stay).
    pub fn load(&self, now: i64, keep: i64) -> Result<Book, RecordError> {
        let (rows, bad) = self.read()?;
        if bad > 0 {
            tracing::warn!(
                path = %self.path.display(),
                "{bad} rows of the ban record cannot be read; they are left out"
            );
        }
        let mut book = Book::default();
        for r in &rows {
            book.apply(r, now);
        }
        book.prune(now - keep);
        let kept: Vec<&Row> = rows
            .iter()
            .filter(|r| r.time >= now - keep || book.active.get(&r.target) == Some(r))
            .collect();
        if kept.len() < rows.len() || bad > 0 {
            let tmp = self.path.with_extension("csv.tmp");
            let _ = std::fs::remove_file(&tmp);
            write_rows(&tmp, kept.into_iter()).map_err(|e| self.err(e))?;
            std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e))?;
        }
        Ok(book)
    }

    /// Appends rows, synced before it returns.
    pub fn append<'a>(&self, rows: impl Iterator<Item = &'a Row>) -> Result<(), RecordError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        write_rows(&self.path, rows).map_err(|e| self.err(e))
    }
}

fn write_rows<'a>(path: &Path, rows: impl Iterator<Item = &'a Row>) -> std::io::Result<()> {
    let n = |s: &str| crate::sink::csv::neutralise(s).into_owned();
    let time = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    crate::state::append_csv(
        path,
        &COLUMNS,
        rows.map(|r| {
            [
                time(r.time),
                match r.action {
                    Action::Ban => "ban",
                    Action::Unban => "unban",
                    Action::Forgive => "forgive",
                    Action::Exec => "exec",
                }
                .to_string(),
                r.target.to_string(),
                n(&r.rule),
                r.duration_secs.to_string(),
                if r.expires > 0 {
                    time(r.expires)
                } else {
                    String::new()
                },
                r.ip.map(|i| i.to_string()).unwrap_or_default(),
                n(&r.username),
                r.mode.as_str().to_string(),
                n(&r.outcome),
                n(&r.country),
                r.asn.map(|a| a.to_string()).unwrap_or_default(),
                n(&r.as_org),
            ]
        }),
    )
}

/// A row as the file holds it.
#[derive(Debug, Deserialize)]
struct RawRow {
    time: String,
    action: Action,
    target: String,
    rule: String,
    duration_secs: u64,
    expires: String,
    ip: String,
    username: String,
    mode: super::Mode,
    outcome: String,
    country: String,
    asn: String,
    as_org: String,
}

impl RawRow {
    fn into_row(self) -> Option<Row> {
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.timestamp())
        };
        let u = |s: String| crate::report::summary::unguard(&s).to_string();
        Some(Row {
            time: t(&self.time)?,
            action: self.action,
            target: super::parse_net(&self.target)?,
            rule: u(self.rule),
            duration_secs: self.duration_secs,
            expires: if self.expires.is_empty() {
                0
            } else {
                t(&self.expires)?
            },
            ip: self.ip.parse().ok(),
            username: u(self.username),
            mode: self.mode,
            outcome: u(self.outcome),
            country: u(self.country),
            asn: self.asn.parse().ok(),
            as_org: u(self.as_org),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn ban(time: i64, target: &str, secs: u64) -> Row {
        Row {
            time,
            action: Action::Ban,
            target: target.parse().unwrap(),
            rule: "per-address".into(),
            duration_secs: secs,
            expires: time + secs as i64,
            ip: None,
            username: "=cmd|' /C calc'!A0".into(),
            mode: super::super::Mode::Ban,
            outcome: "ok".into(),
            country: "".into(),
            asn: Some(64496),
            as_org: "".into(),
        }
    }

    #[test]
    fn rows_round_trip_and_the_book_says_what_runs() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Record::new(dir.path());
        let now = 1_800_000_000;
        let rows = [
            ban(now - 7200, "203.0.113.1/32", 3600), // ended
            ban(now - 60, "203.0.113.2/32", 3600),
            ban(now - 50, "203.0.113.3/32", 3600),
            Row {
                action: Action::Unban,
                ..ban(now - 40, "203.0.113.3/32", 0)
            },
        ];
        rec.append(rows.iter()).unwrap();
        let (back, bad) = rec.read().unwrap();
        assert_eq!((back.len(), bad), (4, 0));
        assert_eq!(
            back[1], rows[1],
            "the hostile username comes back as it was"
        );
        let book = rec.load(now, 86_400).unwrap();
        let mut active: Vec<_> = book.active.keys().map(|k| k.to_string()).collect();
        active.sort();
        assert_eq!(active, ["203.0.113.2/32"]);
        assert_eq!(
            book.bans_since(&"203.0.113.1/32".parse().unwrap(), now - 86_400),
            1
        );
        assert!(book.decided_since(&"203.0.113.3/32".parse().unwrap(), now - 45));
        // The file holds the neutralised text.
        let text = std::fs::read_to_string(rec.path()).unwrap();
        assert!(text.contains("'=cmd"), "{text}");
    }

    #[test]
    fn a_failure_during_a_ban_was_decided_and_a_refused_ban_is_not_running() {
        let mut book = Book::default();
        let t: IpNet = "203.0.113.5/32".parse().unwrap();
        book.apply(&ban(100, "203.0.113.5/32", 100), 150);
        assert!(book.decided_since(&t, 150), "inside the ban");
        assert!(book.decided_since(&t, 90), "banned after");
        assert!(!book.decided_since(&t, 250), "after it ended");
        let refused = Row {
            outcome: "nftables: Error".into(),
            ..ban(300, "203.0.113.6/32", 100)
        };
        book.apply(&refused, 310);
        assert!(
            book.running(&"203.0.113.6/32".parse().unwrap(), 310)
                .is_none()
        );
        assert!(book.running(&t, 199).is_some());
        assert!(book.running(&t, 200).is_none());
    }

    #[test]
    fn a_start_drops_rows_no_longer_needed_and_keeps_running_bans() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Record::new(dir.path());
        let now = 1_800_000_000;
        rec.append(
            [
                ban(now - 30 * 86_400, "203.0.113.1/32", 3600),
                ban(now - 30 * 86_400, "203.0.113.9/32", 60 * 86_400),
                ban(now - 10, "203.0.113.2/32", 3600),
            ]
            .iter(),
        )
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(rec.path())
            .unwrap()
            .write_all(b"garbage,row\n")
            .unwrap();
        let book = rec.load(now, 7 * 86_400).unwrap();
        assert_eq!(book.active.len(), 2);
        let (rows, bad) = rec.read().unwrap();
        assert_eq!((rows.len(), bad), (2, 0));
    }
}
