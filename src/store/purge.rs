//! `maillogsentinel purge`: one person's data removed on request (the GDPR's right to erasure),
//! by address, username or both, optionally only before a time.
//!
//! The databases delete in batches ([`super::Store::purge`]); CSV files are rewritten without
//! the rows ([`rewrite_csv`]): copied to a temporary file beside them except for those rows,
//! synced, given the original's owner and mode, and renamed over it, so that a crash leaves the
//! old file or the new one, never half of either. Runs of kept rows are copied as bytes, so
//! every other row stays exactly as it was written. The state directory's CSV files (Dovecot's
//! verdicts, the alerts' record, auth-backend failures) hold addresses and usernames too and are
//! purged the same way ([`purge_state_files`]).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whose rows to delete: every condition given must hold (at least an address or a username).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// Rows from this address.
    pub ip: Option<IpAddr>,
    /// Rows for this username (compared without regard to ASCII case: mail servers take
    /// `Alice@example.org` and `alice@example.org` for one account).
    pub username: Option<String>,
    /// Only rows older than this (seconds since the epoch).
    pub before: Option<i64>,
}

impl Purge {
    /// Whether a row with this time, address and username (as CSV cells; the username as
    /// written, with the spreadsheet guard) is to be deleted. A condition on a column the
    /// row does not have (`None`), or cannot be read, does not hold.
    pub fn matches(&self, ts: Option<&[u8]>, ip: Option<&[u8]>, username: Option<&[u8]>) -> bool {
        if let Some(want) = self.ip {
            let found = ip
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.parse::<IpAddr>().ok());
            if found != Some(want) {
                return false;
            }
        }
        if let Some(want) = &self.username {
            let Some(cell) = username.and_then(|c| std::str::from_utf8(c).ok()) else {
                return false;
            };
            if !crate::report::summary::unguard(cell).eq_ignore_ascii_case(want) {
                return false;
            }
        }
        if let Some(before) = self.before {
            match ts.and_then(crate::report::index::parse_ts) {
                Some(t) if t < before => {}
                _ => return false,
            }
        }
        true
    }

    /// For people: `address 192.0.2.7 and username "bob", before 2026-01-01T00:00:00+00:00`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ip) = self.ip {
            parts.push(format!("address {ip}"));
        }
        if let Some(u) = &self.username {
            parts.push(format!("username {u:?}"));
        }
        let mut s = parts.join(" and ");
        if let Some(t) = self
            .before
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        {
            s.push_str(&format!(", before {}", t.to_rfc3339()));
        }
        s
    }
}

/// Which columns of a CSV file hold what [`Purge`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Columns {
    /// The RFC 3339 time.
    pub ts: usize,
    /// The address (`None`: the file has none).
    pub ip: Option<usize>,
    /// The username (`None`: the file has none).
    pub username: Option<usize>,
    /// The first row is a header.
    pub header: bool,
}

/// The intrusion and logins records' columns (see [`crate::sink::COLUMNS`]).
pub const RECORD_COLUMNS: Columns = Columns {
    ts: 0,
    ip: Some(3),
    username: Some(4),
    header: true,
};

/// What [`rewrite_csv`] did to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Rows removed.
    pub rows: u64,
    /// The new file's device and inode.
    pub identity: (u64, u64),
    /// Its length.
    pub len: u64,
}

/// Rewrites the CSV file at `path` without the rows `who` picks. `None` when there is no file
/// or no row to remove (the file is then left as it is).
pub fn rewrite_csv(path: &Path, cols: Columns, who: &Purge) -> io::Result<Option<Rewritten>> {
    let mut source = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = source.metadata()?;
    let len = meta.len();
    // Ranges of rows to remove, found in one reading pass.
    let mut cut: Vec<(u64, u64)> = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::new((&source).take(len)));
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    loop {
        let start = reader.position().byte();
        if !reader
            .read_byte_record(&mut record)
            .map_err(io::Error::other)?
        {
            break;
        }
        let end = reader.position().byte();
        if std::mem::take(&mut first) && cols.header {
            continue;
        }
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i));
        if who.matches(record.get(cols.ts), cell(cols.ip), cell(cols.username)) {
            match cut.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => cut.push((start, end)),
            }
        }
    }
    drop(reader);
    if cut.is_empty() {
        return Ok(None);
    }
    // The reader stops after a CRLF's CR, so its LF reads as the start of the next row: each
    // range is moved to whole lines (its leading LF is the previous row's, its trailing one
    // its own).
    let byte = |at: u64| {
        let mut b = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&source, &mut b, at).map(|_| b[0])
    };
    for range in &mut cut {
        if range.0 > 0 && byte(range.0)? == b'\n' && byte(range.0 - 1)? == b'\r' {
            range.0 += 1;
        }
        if range.1 < len && range.1 > 0 && byte(range.1)? == b'\n' && byte(range.1 - 1)? == b'\r' {
            range.1 += 1;
        }
    }
    let rows = count_rows(&source, &cut)?;
    let tmp = temp_beside(path);
    let result = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut at = 0;
        for &(from, to) in cut.iter().chain(std::iter::once(&(len, len))) {
            source.seek(SeekFrom::Start(at))?;
            io::copy(&mut (&source).take(from - at), &mut out)?;
            at = to;
        }
        out.flush()?;
        // The daemon (another user) must go on appending to it, readers reading it.
        std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid()))?;
        out.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        out.sync_all()?;
        let new = out.metadata()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(path)?;
        Ok(Rewritten {
            rows,
            identity: (new.dev(), new.ino()),
            len: new.len(),
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(Some)
}

/// Rows in the byte ranges `cut` of `file` (a row may hold quoted newlines, so they are counted
/// by reading the ranges as CSV again).
fn count_rows(file: &File, cut: &[(u64, u64)]) -> io::Result<u64> {
    let mut n = 0;
    for &(from, to) in cut {
        let mut f = file;
        f.seek(SeekFrom::Start(from))?;
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(f.take(to - from));
        let mut rec = csv::ByteRecord::new();
        while r.read_byte_record(&mut rec).map_err(io::Error::other)? {
            n += 1;
        }
    }
    Ok(n)
}

fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".purge-{}.tmp", std::process::id()));
    path.with_file_name(name)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Rows removed from each of the state directory's files, by file.
pub type StatePurged = Vec<(PathBuf, u64)>;

/// Purges the state directory's CSV files that name addresses or usernames: Dovecot's verdicts
/// (time, address, username), the alerts' record and the auth-backend failures (time, program,
/// client or relay: by address only).
pub fn purge_state_files(state_dir: &Path, who: &Purge) -> io::Result<StatePurged> {
    use crate::state;
    let files = [
        (
            state::VERDICT_LOG,
            Columns {
                ts: 0,
                ip: Some(1),
                username: Some(2),
                header: false,
            },
        ),
        (
            state::ALERTS_CSV,
            Columns {
                ts: 0,
                ip: Some(3),
                username: Some(4),
                header: true,
            },
        ),
        (
            state::BACKEND_LOG,
            Columns {
                ts: 0,
                ip: Some(2),
                username: None,
                header: false,
            },
        ),
        (
            crate::respond::record::FILE_NAME,
            Columns {
                ts: 0,
                ip: Some(6),
                username: Some(7),
                header: true,
            },
        ),
    ];
    let mut done = Vec::new();
    for (name, cols) in files {
        let path = state::path(state_dir, name);
        let rewritten = rewrite_csv(&path, cols, who)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        if let Some(r) = rewritten {
            done.push((path, r.rows));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "timestamp,server,service,ip,username,mechanism\r\n";

    fn rows(text: &str) -> String {
        format!("{HEADER}{text}")
    }

    #[test]
    fn rows_of_the_address_or_username_go_and_every_other_byte_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let kept_a = "2026-01-01T00:00:00+00:00,mx,smtpd,192.0.2.1,alice,PLAIN\r\n";
        let bob_1 = "2026-01-02T00:00:00+00:00,mx,smtpd,192.0.2.2,Bob,LOGIN\r\n";
        let quoted = "2026-01-03T00:00:00+00:00,mx,smtpd,192.0.2.3,\"carol,\nx\",PLAIN\r\n";
        let bob_2 = "2026-01-04T00:00:00+00:00,mx,smtpd,2001:db8::1,'=bob,PLAIN\r\n";
        let bob_3 = "2026-01-05T00:00:00+00:00,mx,smtpd,192.0.2.9,bob,PLAIN\r\n";
        std::fs::write(&path, rows(&[kept_a, bob_1, quoted, bob_3].concat())).unwrap();
        let who = Purge {
            ip: None,
            username: Some("bob".into()),
            before: None,
        };
        let r = rewrite_csv(&path, RECORD_COLUMNS, &who).unwrap().unwrap();
        assert_eq!(r.rows, 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            rows(&[kept_a, quoted].concat())
        );
        // Nothing left to remove: the file is not touched.
        let before = std::fs::metadata(&path).unwrap().ino();
        assert_eq!(rewrite_csv(&path, RECORD_COLUMNS, &who).unwrap(), None);
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), before);
        // The guarded username is the username; an address in another spelling is the address.
        std::fs::write(&path, rows(&[bob_2, kept_a].concat())).unwrap();
        let who = Purge {
            ip: Some("2001:db8:0::1".parse().unwrap()),
            username: Some("=BOB".into()),
            before: None,
        };
        assert_eq!(
            rewrite_csv(&path, RECORD_COLUMNS, &who)
                .unwrap()
                .unwrap()
                .rows,
            1
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), rows(kept_a));
    }

    #[test]
    fn before_keeps_later_rows_and_both_conditions_must_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let old = "2026-01-01T00:00:00+00:00,mx,smtpd,192.0.2.2,bob,PLAIN\r\n";
        let new = "2026-03-01T00:00:00+00:00,mx,smtpd,192.0.2.2,bob,PLAIN\r\n";
        let other = "2026-01-01T00:00:00+00:00,mx,smtpd,192.0.2.3,bob,PLAIN\r\n";
        std::fs::write(&path, rows(&[old, new, other].concat())).unwrap();
        let who = Purge {
            ip: Some("192.0.2.2".parse().unwrap()),
            username: Some("bob".into()),
            before: Some(
                chrono::DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
                    .unwrap()
                    .timestamp(),
            ),
        };
        assert_eq!(
            rewrite_csv(&path, RECORD_COLUMNS, &who)
                .unwrap()
                .unwrap()
                .rows,
            1
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            rows(&[new, other].concat())
        );
    }

    #[test]
    fn the_first_and_last_rows_of_a_headerless_file_go_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.csv");
        let bob = "2026-01-01T00:00:00+00:00,192.0.2.2,bob,known\r\n";
        let alice = "2026-01-01T00:00:01+00:00,192.0.2.1,alice,known\r\n";
        std::fs::write(&path, [bob, alice, bob].concat()).unwrap();
        let cols = Columns {
            ts: 0,
            ip: Some(1),
            username: Some(2),
            header: false,
        };
        let who = Purge {
            ip: None,
            username: Some("bob".into()),
            before: None,
        };
        assert_eq!(rewrite_csv(&path, cols, &who).unwrap().unwrap().rows, 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), alice);
    }

    #[test]
    fn the_header_is_never_a_row_to_purge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, HEADER).unwrap();
        let who = Purge {
            ip: None,
            username: Some("username".into()),
            before: None,
        };
        assert_eq!(rewrite_csv(&path, RECORD_COLUMNS, &who).unwrap(), None);
        assert_eq!(
            rewrite_csv(&dir.path().join("none.csv"), RECORD_COLUMNS, &who).unwrap(),
            None
        );
    }
}
