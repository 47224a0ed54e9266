//! The intrusion CSV: RFC 4180, UTF-8, a header row written once when the file is new, one row
//! per failed login, appended and never rewritten.
//!
//! Lines end in CRLF as RFC 4180 says; fields with a comma, quote or line break are quoted.
//! Text an attacker controls (username, mechanism, reason, hostnames, AS names) that starts
//! with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`, so a spreadsheet
//! shows it as text instead of running it as a formula (OWASP's advice on CSV injection).
//! The IP, timestamp and numbers cannot start with those and are written as they are.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::enrich::Enrichment;
use crate::parse::AuthEvent;

/// The columns, in order. Part of the public interface: documented in the README.
pub const COLUMNS: [&str; 13] = [
    "timestamp",
    "server",
    "service",
    "ip",
    "username",
    "mechanism",
    "reason",
    "client_hostname",
    "reverse_dns",
    "dns_status",
    "country",
    "asn",
    "as_org",
];

/// Mode of a CSV file this program creates: the record names targeted accounts, so it is not
/// for every local user to read.
pub const FILE_MODE: u32 = 0o640;

/// Why the CSV could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Opening, reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The CSV file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file exists and holds something else than this program's CSV.
    #[error(
        "{path}: exists but does not start with the expected header ({expected}); it is not an intrusion CSV of this version: move it aside or choose another output"
    )]
    ForeignFile {
        /// The CSV file.
        path: PathBuf,
        /// The header this program writes.
        expected: String,
    },
    /// Another process holds the file's lock.
    #[error(
        "{path}: locked by another process (is a maillogsentinel daemon writing it? stop it or write elsewhere with -o)"
    )]
    Locked {
        /// The CSV file.
        path: PathBuf,
    },
}

/// Formats rows into a reusable byte buffer, so that a caller knows exactly how many bytes a
/// batch adds before it writes them (the daemon's checkpoint records that length).
pub struct RowFormatter {
    writer: ::csv::Writer<Vec<u8>>,
}

impl Default for RowFormatter {
    fn default() -> Self {
        RowFormatter {
            writer: csv_writer(Vec::with_capacity(64 * 1024)),
        }
    }
}

fn csv_writer(buf: Vec<u8>) -> ::csv::Writer<Vec<u8>> {
    ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(buf)
}

impl RowFormatter {
    /// Formats one row after the ones already buffered; `enrichment` fills the last five
    /// columns (empty without it).
    pub fn push(&mut self, f: &AuthEvent, enrichment: Option<&Enrichment>) {
        let timestamp = f.timestamp.to_rfc3339();
        let ip = f.ip.to_string();
        let e = enrichment.cloned().unwrap_or_default();
        let asn = e.asn.map(|a| a.to_string()).unwrap_or_default();
        let record: [Cow<'_, str>; 13] = [
            timestamp.as_str().into(),
            neutralise(&f.server),
            neutralise(&f.service),
            ip.as_str().into(),
            neutralise(f.username.as_deref().unwrap_or("")),
            neutralise(&f.mechanism),
            neutralise(&f.reason),
            neutralise(f.client_hostname.as_deref().unwrap_or("")),
            neutralise(e.reverse_dns.as_deref().unwrap_or("")),
            e.dns_status.map_or("", |s| s.as_str()).into(),
            neutralise(e.country.as_deref().unwrap_or("")),
            asn.as_str().into(),
            neutralise(e.as_org.as_deref().unwrap_or("")),
        ];
        self.writer
            .write_record(record.iter().map(|c| c.as_bytes()))
            .expect("writing CSV into memory cannot fail");
    }

    /// The header row.
    fn push_header(&mut self) {
        self.writer
            .write_record(COLUMNS)
            .expect("writing CSV into memory cannot fail");
    }

    /// The formatted bytes so far.
    pub fn bytes(&mut self) -> &[u8] {
        self.writer
            .flush()
            .expect("flushing into memory cannot fail");
        self.writer.get_ref()
    }

    /// Forgets the formatted bytes (keeping the buffer's memory).
    pub fn clear(&mut self) {
        let old = std::mem::replace(&mut self.writer, csv_writer(Vec::new()));
        let mut buf = old.into_inner().expect("flushing into memory cannot fail");
        buf.clear();
        self.writer = csv_writer(buf);
    }
}

/// The intrusion CSV file (or stdout), opened for appending, with its current length.
pub struct CsvFile {
    path: PathBuf,
    out: Output,
    len: u64,
    /// Device and inode of the file opened ((0, 0) for standard output).
    id: (u64, u64),
}

enum Output {
    /// A file; `regular` is false for a device such as /dev/null (nothing to fsync), known
    /// from when it was opened.
    File {
        file: File,
        regular: bool,
    },
    Stdout(io::Stdout),
}

impl CsvFile {
    /// Opens `path` for appending, creating it (mode 0640) with a header row when it is new.
    /// An existing non-empty file must start with this program's header. A torn last row (the
    /// writer died mid-row) is cut off, with a warning, so that new rows start on a line of
    /// their own. The file is locked (`flock`) while open, so two writers never interleave rows.
    pub fn open_append(path: &Path) -> Result<Self, SinkError> {
        let io_err = |source| SinkError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(path)
            .map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        let regular = meta.is_file();
        let id = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        if regular {
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(SinkError::Locked {
                        path: path.to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
            }
        }
        let mut len = if regular { meta.len() } else { 0 };
        if len > 0 {
            check_header(&mut file, path)?;
            len = repair_torn_tail(&file, len, path).map_err(io_err)?;
        }
        let mut csv = CsvFile {
            path: path.to_path_buf(),
            out: Output::File { file, regular },
            len,
            id,
        };
        if len == 0 {
            csv.write_header()?;
        }
        Ok(csv)
    }

    /// Standard output, header first.
    pub fn stdout() -> Result<Self, SinkError> {
        let mut csv = CsvFile {
            path: PathBuf::from("-"),
            out: Output::Stdout(io::stdout()),
            len: 0,
            id: (0, 0),
        };
        csv.write_header()?;
        Ok(csv)
    }

    fn write_header(&mut self) -> Result<(), SinkError> {
        let mut f = RowFormatter::default();
        f.push_header();
        self.append(f.bytes())
    }

    /// Appends bytes (whole rows). Not durable until [`CsvFile::sync`].
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let r = match &mut self.out {
            Output::File { file, .. } => file.write_all(bytes),
            Output::Stdout(s) => s.write_all(bytes),
        };
        r.map_err(|source| SinkError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes appended rows durable (fsync of a regular file; a flush of stdout).
    pub fn sync(&mut self) -> Result<(), SinkError> {
        let r = match &mut self.out {
            Output::File {
                file,
                regular: true,
            } => file.sync_data(),
            Output::File { .. } => Ok(()),
            Output::Stdout(s) => s.flush(),
        };
        r.map_err(|source| SinkError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Cuts the file back to `len` bytes (a failed append's partial rows).
    pub fn truncate_to(&mut self, len: u64) -> Result<(), SinkError> {
        if let Output::File { file: f, .. } = &self.out {
            f.set_len(len).map_err(|source| SinkError::Io {
                path: self.path.clone(),
                source,
            })?;
            self.len = len;
        }
        Ok(())
    }

    /// Whether the path no longer names the file being written (it was moved away, e.g. to be
    /// archived, or deleted). Standard output never is.
    pub fn moved_away(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Output::File { file: f, .. } = &self.out else {
            return false;
        };
        let (Ok(open), on_disk) = (f.metadata(), std::fs::metadata(&self.path)) else {
            return false;
        };
        match on_disk {
            Ok(m) => (m.dev(), m.ino()) != (open.dev(), open.ino()),
            Err(_) => open.is_file(),
        }
    }

    /// Takes the length from the file itself (an append-only writer's own count goes stale
    /// when someone truncates the file, e.g. logrotate's copytruncate).
    pub fn refresh_len(&mut self) {
        if let Output::File {
            file,
            regular: true,
        } = &self.out
            && let Ok(m) = file.metadata()
        {
            self.len = m.len();
        }
    }

    /// Device and inode of the file being written ((0, 0) for standard output), recorded in
    /// checkpoints so that a restart knows the output at the path is the same file.
    pub fn identity(&self) -> (u64, u64) {
        self.id
    }

    /// Length of the file in bytes as this writer knows it (header included).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing at all has been written (not even a header).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The output's name for messages (`-` for stdout).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Appends rows to an intrusion CSV in large writes: the one-shot `scan` sink.
pub struct CsvSink {
    file: CsvFile,
    rows: RowFormatter,
    written: u64,
}

/// Buffered rows are written out once they reach this many bytes.
const SINK_BUFFER: usize = 256 * 1024;

impl CsvSink {
    /// Appends to `path`; see [`CsvFile::open_append`].
    pub fn append(path: &Path) -> Result<Self, SinkError> {
        Ok(CsvSink {
            file: CsvFile::open_append(path)?,
            rows: RowFormatter::default(),
            written: 0,
        })
    }

    /// Writes to standard output, header first.
    pub fn stdout() -> Result<Self, SinkError> {
        Ok(CsvSink {
            file: CsvFile::stdout()?,
            rows: RowFormatter::default(),
            written: 0,
        })
    }

    /// Appends one row (buffered: see [`CsvSink::flush`]).
    pub fn write(
        &mut self,
        f: &AuthEvent,
        enrichment: Option<&Enrichment>,
    ) -> Result<(), SinkError> {
        self.rows.push(f, enrichment);
        self.written += 1;
        if self.rows.bytes().len() >= SINK_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.written
    }

    /// Hands buffered rows to the operating system.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        let bytes = self.rows.bytes();
        if !bytes.is_empty() {
            self.file.append(bytes)?;
            self.rows.clear();
        }
        Ok(())
    }

    /// Flushes and makes the rows durable (fsync) when the output is a regular file.
    pub fn sync(&mut self) -> Result<(), SinkError> {
        self.flush()?;
        self.file.sync()
    }

    /// The output's name for messages (`-` for stdout).
    pub fn name(&self) -> &Path {
        self.file.path()
    }
}

/// The header line as this program writes it.
fn header_line() -> String {
    COLUMNS.join(",")
}

fn check_header(file: &mut File, path: &Path) -> Result<(), SinkError> {
    let expected = header_line();
    let mut head = vec![0u8; expected.len() + 2];
    file.seek(SeekFrom::Start(0))
        .and_then(|_| read_up_to(file, &mut head))
        .map_err(|source| SinkError::Io {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|n| {
            let head = &head[..n];
            let ok = head.starts_with(expected.as_bytes())
                && matches!(&head[expected.len()..], b"\r\n" | [b'\n', ..]);
            if ok {
                Ok(())
            } else {
                Err(SinkError::ForeignFile {
                    path: path.to_path_buf(),
                    expected,
                })
            }
        })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// If the file does not end in a newline, the last row was torn by a crash: cut it off so the
/// next row does not merge into it.
fn repair_torn_tail(file: &File, len: u64, path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    // Look back for the end of the last whole row.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    let cut = loop {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    tracing::warn!(
        path = %path.display(),
        bytes = len - cut,
        "the CSV ended in a torn row (a writer stopped mid-row); cutting it off"
    );
    file.set_len(cut)?;
    Ok(cut)
}

/// Neutralises spreadsheet formula injection: text starting with `= + - @ \t \r` gets a `'`.
pub fn neutralise(s: &str) -> Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_injection_is_neutralised() {
        for (s, want) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("alice", "alice"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(neutralise(s), want);
        }
    }

    #[test]
    fn foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "name,age\r\nbob,3\r\n").unwrap();
        let err = CsvSink::append(&p).err().expect("refused");
        assert!(matches!(err, SinkError::ForeignFile { .. }), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"name,age\r\nbob,3\r\n");
    }

    #[test]
    fn torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        let mut content = header_line();
        content.push_str("\r\nrow1\r\nrow2-torn");
        std::fs::write(&p, &content).unwrap();
        let mut sink = CsvSink::append(&p).unwrap();
        sink.sync().unwrap();
        let got = std::fs::read_to_string(&p).unwrap();
        assert_eq!(got, format!("{}\r\nrow1\r\n", header_line()));
    }

    #[test]
    fn new_file_has_header_and_mode_0640() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.csv");
        let mut sink = CsvSink::append(&p).unwrap();
        sink.sync().unwrap();
        drop(sink);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{}\r\n", header_line())
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
        // Reopening does not write a second header.
        CsvSink::append(&p).unwrap().sync().unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{}\r\n", header_line())
        );
    }
}
