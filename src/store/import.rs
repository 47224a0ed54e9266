//! `maillogsentinel import`: history from CSV files into the configured database store, once.
//!
//! Two forms are read, told apart by their first line: this program's intrusion CSV (its
//! header), and the original MailLogSentinel's `;`-separated file (`server;date;ip;user;
//! hostname;reverse_dns_status[;country_code;asn;aso]`, dates `DD/MM/YYYY HH:MM` in local time,
//! `null` and `N/A` for nothing, reverse DNS statuses such as `OK`, `Timeout`, `Errno -2 (Name
//! or service not known)` or `Failed: ...`), so that its users keep their history.
//!
//! Importing is idempotent: each file is known by the fingerprint of its first two lines (a
//! header alone is the same in every file), and how far it was imported is committed with its
//! rows (the store's `imports` table), so importing it again adds nothing, and a file that grew
//! since adds only its new rows. Only whole lines are taken (a file still being written ends in
//! a partial one). A row that cannot be read is reported with its file and line and skipped;
//! the import goes on. A file that cannot be read, or a store that cannot be written, stops it.

use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime};

use crate::enrich::{DnsStatus, Enrichment};
use crate::parse::{AuthEvent, Timestamp};
use crate::source::fingerprint::Fingerprint;

use super::{Store, StoreError};

/// Rows committed together (with the position after the last of them).
const ROWS_PER_COMMIT: usize = 10_000;

/// Why a file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// It changed since it was imported: it does not go on where the import stopped.
    #[error(
        "{path}: it does not go on where its import stopped at byte {offset} (edited or replaced since?): not imported again, so that no row is recorded twice"
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// Where the earlier import stopped.
        offset: u64,
    },
    /// Its first line is neither form's.
    #[error(
        "{path}: not a file import reads (its first line is neither this program's CSV header nor the original MailLogSentinel's `server;date;ip;user;...` rows)"
    )]
    Unknown {
        /// The file.
        path: PathBuf,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What importing one file did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Rows added.
    pub rows: u64,
    /// Rows that could not be read (reported, skipped).
    pub bad: u64,
    /// Bytes an earlier import had taken already (skipped).
    pub already: u64,
    /// Which form the file was in.
    pub form: &'static str,
}

/// The two forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// This program's intrusion CSV.
    Ours,
    /// The original tool's `;`-separated file.
    Legacy,
}

/// Which form a first line says, if any.
fn form_of(first: &str) -> Option<Form> {
    let first = first.trim_end_matches(['\r', '\n']);
    if first == crate::sink::COLUMNS.join(",") {
        return Some(Form::Ours);
    }
    let fields = first.split(';').count();
    (fields == 6 || fields == 9).then_some(Form::Legacy)
}

/// `null`, `N/A` and nothing, as nothing.
fn value(s: &str) -> &str {
    let t = s.trim();
    if t.eq_ignore_ascii_case("null") || t.eq_ignore_ascii_case("n/a") || t == "-" {
        ""
    } else {
        t
    }
}

/// The original tool's reverse DNS status as this program's.
fn legacy_status(s: &str) -> Option<DnsStatus> {
    let t = value(s).to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    Some(if t == "ok" {
        DnsStatus::Ok
    } else if t.contains("timeout") || t.contains("timed out") {
        DnsStatus::Timeout
    } else if t.contains("errno 1")
        || t.contains("errno -2")
        || t.contains("not known")
        || t.contains("nxdomain")
        || t.contains("unknown host")
        || t.contains("not found")
    {
        DnsStatus::Nxdomain
    } else {
        DnsStatus::Error
    })
}

/// An AS number as the original tool wrote it (`64500`, `AS64500`).
fn asn_number(s: &str) -> Option<u32> {
    let t = value(s);
    t.strip_prefix("AS")
        .or_else(|| t.strip_prefix("as"))
        .unwrap_or(t)
        .parse()
        .ok()
}

/// A text field of this program's CSV, its spreadsheet guard undone.
fn unguarded(s: &str) -> &str {
    crate::report::summary::unguard(s)
}

/// One row of the original tool's file.
fn legacy_row(r: &csv::StringRecord) -> Result<(AuthEvent, Enrichment), String> {
    if r.len() != 6 && r.len() != 9 {
        return Err(format!("{} fields, not 6 or 9", r.len()));
    }
    let date = r[1].trim();
    let naive = [
        "%d/%m/%Y %H:%M",
        "%d/%m/%Y %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(date, f).ok())
    .ok_or_else(|| format!("date {date:?} is not DD/MM/YYYY HH:MM"))?;
    let time = crate::parse::timestamp::earliest_local(naive)
        .ok_or_else(|| format!("date {date:?} does not exist in the local time zone"))?;
    let ip: IpAddr = value(&r[2])
        .parse()
        .map_err(|_| format!("address {:?} is not an IP address", &r[2]))?;
    let user = value(&r[3]);
    let host = value(&r[4]);
    // The number and the organisation, whichever column holds which (the tool's own
    // documentation shows them both ways).
    let (asn, org) = if r.len() == 9 {
        match (asn_number(&r[7]), asn_number(&r[8])) {
            (Some(n), _) => (Some(n), value(&r[8])),
            (None, Some(n)) => (Some(n), value(&r[7])),
            (None, None) => (None, value(&r[8])),
        }
    } else {
        (None, "")
    };
    let country = if r.len() == 9 { value(&r[6]) } else { "" };
    let event = AuthEvent {
        timestamp: Timestamp {
            time,
            frac_digits: 0,
        },
        server: value(&r[0]).into(),
        service: "".into(),
        ip: ip.to_canonical(),
        username: (!user.is_empty()).then(|| user.into()),
        mechanism: "".into(),
        reason: "".into(),
        client_hostname: None,
    };
    let enrichment = Enrichment {
        reverse_dns: (!host.is_empty()).then(|| host.to_string()),
        dns_status: legacy_status(&r[5]),
        country: (!country.is_empty()).then(|| country.to_string()),
        asn,
        as_org: (!org.is_empty()).then(|| org.to_string()),
    };
    Ok((event, enrichment))
}

/// One row of this program's CSV.
fn our_row(r: &csv::StringRecord) -> Result<(AuthEvent, Enrichment), String> {
    if r.len() != crate::sink::COLUMNS.len() {
        return Err(format!(
            "{} fields, not {}",
            r.len(),
            crate::sink::COLUMNS.len()
        ));
    }
    let stamp = &r[0];
    let time = DateTime::parse_from_rfc3339(stamp)
        .map_err(|_| format!("timestamp {stamp:?} is not RFC 3339"))?;
    let frac_digits = stamp.split_once('.').map_or(0, |(_, rest)| {
        rest.bytes().take_while(u8::is_ascii_digit).count() as u8
    });
    let ip: IpAddr = r[3]
        .parse()
        .map_err(|_| format!("address {:?} is not an IP address", &r[3]))?;
    let opt = |s: &str| {
        let s = unguarded(s);
        (!s.is_empty()).then(|| s.to_string())
    };
    let status = match &r[9] {
        "" => None,
        s => Some(DnsStatus::parse(s).ok_or_else(|| format!("dns_status {s:?} is not one of ok, nxdomain, timeout, servfail, error, mismatch, disabled"))?),
    };
    let asn = match &r[11] {
        "" => None,
        s => Some(
            s.parse()
                .map_err(|_| format!("asn {s:?} is not a number"))?,
        ),
    };
    let event = AuthEvent {
        timestamp: Timestamp { time, frac_digits },
        server: unguarded(&r[1]).into(),
        service: unguarded(&r[2]).into(),
        ip,
        username: opt(&r[4]).map(Into::into),
        mechanism: unguarded(&r[5]).into(),
        reason: unguarded(&r[6]).into(),
        client_hostname: opt(&r[7]).map(Into::into),
    };
    let enrichment = Enrichment {
        reverse_dns: opt(&r[8]),
        dns_status: status,
        country: opt(&r[10]),
        asn,
        as_org: opt(&r[12]),
    };
    Ok((event, enrichment))
}

/// Imports `path` into `store`; `bad_row` is told each row skipped (`file:line: why`).
pub fn import_file(
    store: &mut dyn Store,
    path: &Path,
    bad_row: &mut dyn FnMut(&str),
) -> Result<Imported, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    // Only whole lines: up to the last newline.
    let len = {
        let all = file.metadata().map_err(io)?.len();
        let tail = all.min(64 * 1024);
        file.seek(SeekFrom::Start(all - tail)).map_err(io)?;
        let mut buf = Vec::new();
        (&mut file).take(tail).read_to_end(&mut buf).map_err(io)?;
        match memchr::memrchr(b'\n', &buf) {
            Some(i) => all - tail + i as u64 + 1,
            // (A last line longer than 64 KiB is no row of either form.)
            None if tail < all => all - tail,
            None => 0,
        }
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    // The first two lines: the form, and the file's identity.
    let mut head = Vec::new();
    (&mut file)
        .take(len.min(128 * 1024))
        .read_to_end(&mut head)
        .map_err(io)?;
    let Some(nl) = memchr::memchr(b'\n', &head) else {
        if head.is_empty() {
            return Ok(Imported {
                form: "empty",
                ..Imported::default()
            });
        }
        return Err(ImportError::Unknown {
            path: path.to_path_buf(),
        });
    };
    let form =
        form_of(&String::from_utf8_lossy(&head[..=nl])).ok_or_else(|| ImportError::Unknown {
            path: path.to_path_buf(),
        })?;
    let second = memchr::memchr(b'\n', &head[nl + 1..]).map_or(head.len(), |i| nl + 1 + i + 1);
    let fingerprint = Fingerprint::of_line(&head[..second]);
    let done = store.imported(fingerprint)?;
    if let Some(offset) = done {
        // An import stops after a newline, in a file at least that long.
        let ends_a_line = offset == 0 || {
            let mut b = [0u8];
            offset <= len
                && file.seek(SeekFrom::Start(offset - 1)).is_ok()
                && file.read_exact(&mut b).is_ok()
                && b[0] == b'\n'
        };
        if !ends_a_line {
            return Err(ImportError::Changed {
                path: path.to_path_buf(),
                offset,
            });
        }
    }
    let mut out = Imported {
        form: match form {
            Form::Ours => "this program's CSV",
            Form::Legacy => "the original MailLogSentinel's CSV",
        },
        ..Imported::default()
    };
    // Where to start: after an earlier import, or after our header (the original tool's file
    // may start with a header row of its own, skipped below).
    let start = match (done, form) {
        (Some(o), _) => o,
        (None, Form::Ours) => nl as u64 + 1,
        (None, Form::Legacy) => 0,
    };
    out.already = done.unwrap_or(0);
    if start >= len {
        return Ok(out);
    }
    // Line numbers count from the file's start (the reader counts from where it starts).
    let base = {
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut skipped = Vec::new();
        (&mut file)
            .take(start)
            .read_to_end(&mut skipped)
            .map_err(io)?;
        bytecount::count(&skipped, b'\n') as u64
    };
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(if form == Form::Legacy { b';' } else { b',' })
        .from_reader(std::io::BufReader::with_capacity(
            1 << 20,
            file.take(len - start),
        ));
    let mut record = csv::StringRecord::new();
    let mut staged = 0;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = base + record.position().map_or(1, |p| p.line());
                if form == Form::Legacy
                    && line == 1
                    && record.get(0).is_some_and(|f| f.trim() == "server")
                {
                    continue; // its header row
                }
                let row = match form {
                    Form::Ours => our_row(&record),
                    Form::Legacy => legacy_row(&record),
                };
                match row {
                    Ok((event, enrichment)) => {
                        store.stage_failure(&event, Some(&enrichment));
                        staged += 1;
                        out.rows += 1;
                    }
                    Err(why) => {
                        out.bad += 1;
                        bad_row(&format!("{}:{line}: {why}; skipped", path.display()));
                    }
                }
            }
            Err(e) if e.is_io_error() => {
                let csv::ErrorKind::Io(source) = e.into_kind() else {
                    unreachable!("checked")
                };
                return Err(io(source));
            }
            Err(e) => {
                out.bad += 1;
                let line = base + e.position().map_or(1, |p| p.line());
                bad_row(&format!("{}:{line}: {e}; skipped", path.display()));
            }
        }
        if staged >= ROWS_PER_COMMIT {
            let offset = start + reader.position().byte();
            store.commit_import(fingerprint, path, offset)?;
            staged = 0;
        }
    }
    store.commit_import(fingerprint, path, start + reader.position().byte())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_tools_placeholders_and_statuses() {
        assert_eq!(value("null"), "");
        assert_eq!(value("N/A"), "");
        assert_eq!(value(" x "), "x");
        assert_eq!(legacy_status("OK"), Some(DnsStatus::Ok));
        assert_eq!(legacy_status("Timeout"), Some(DnsStatus::Timeout));
        assert_eq!(
            legacy_status("Errno -2 (Name or service not known)"),
            Some(DnsStatus::Nxdomain)
        );
        assert_eq!(legacy_status("Errno 1"), Some(DnsStatus::Nxdomain));
        assert_eq!(legacy_status("Failed (Unknown)"), Some(DnsStatus::Error));
        assert_eq!(legacy_status("null"), None);
        assert_eq!(asn_number("AS64500"), Some(64500));
        assert_eq!(asn_number("64500"), Some(64500));
        assert_eq!(asn_number("Example Telecom"), None);
        assert_eq!(
            form_of("server;date;ip;user;hostname;reverse_dns_status\n"),
            Some(Form::Legacy)
        );
        assert_eq!(
            form_of(&format!("{}\r\n", crate::sink::COLUMNS.join(","))),
            Some(Form::Ours)
        );
        assert_eq!(
            form_of("Nov 22 08:00:00 mx postfix/smtpd[1]: connect\n"),
            None
        );
    }
}
