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
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::parse::AuthFailure;

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
    /// Serialising a row failed.
    #[error("{path}: {source}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// What the CSV writer said.
        source: ::csv::Error,
    },
}

/// Appends rows to an intrusion CSV.
pub struct CsvSink {
    name: PathBuf,
    writer: ::csv::Writer<BufWriter<Box<dyn Write + Send>>>,
    /// The file, when the output is a regular file (synced on [`CsvSink::sync`]).
    file: Option<File>,
    rows: u64,
}

impl CsvSink {
    /// Opens `path` for appending, creating it (mode 0640) with a header row when it is new.
    /// An existing non-empty file must start with this program's header. A torn last row (the
    /// writer died mid-row) is cut off, with a warning, so that new rows start on a line of
    /// their own.
    pub fn append(path: &Path) -> Result<Self, SinkError> {
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
        let is_new = !regular || meta.len() == 0;
        if !is_new {
            check_header(&mut file, path)?;
            repair_torn_tail(&file, meta.len(), path).map_err(io_err)?;
        }
        let sync_handle = if regular {
            Some(file.try_clone().map_err(io_err)?)
        } else {
            None
        };
        let mut sink = CsvSink::from_writer(path.to_path_buf(), Box::new(file));
        sink.file = sync_handle;
        if is_new {
            sink.write_header()?;
        }
        Ok(sink)
    }

    /// Writes to standard output, header first.
    pub fn stdout() -> Result<Self, SinkError> {
        let mut sink = CsvSink::from_writer(PathBuf::from("-"), Box::new(io::stdout()));
        sink.write_header()?;
        Ok(sink)
    }

    fn from_writer(name: PathBuf, out: Box<dyn Write + Send>) -> Self {
        let writer = ::csv::WriterBuilder::new()
            .terminator(::csv::Terminator::CRLF)
            .from_writer(BufWriter::with_capacity(256 * 1024, out));
        CsvSink {
            name,
            writer,
            file: None,
            rows: 0,
        }
    }

    fn write_header(&mut self) -> Result<(), SinkError> {
        self.writer
            .write_record(COLUMNS)
            .map_err(|source| self.csv_err(source))
    }

    fn csv_err(&self, source: ::csv::Error) -> SinkError {
        SinkError::Csv {
            path: self.name.clone(),
            source,
        }
    }

    /// Appends one row (buffered: see [`CsvSink::flush`]).
    pub fn write(&mut self, f: &AuthFailure) -> Result<(), SinkError> {
        let timestamp = f.timestamp.to_rfc3339();
        let ip = f.ip.to_string();
        let record: [Cow<'_, str>; 13] = [
            timestamp.as_str().into(),
            neutralise(&f.server),
            neutralise(&f.service),
            ip.as_str().into(),
            neutralise(f.username.as_deref().unwrap_or("")),
            neutralise(&f.mechanism),
            neutralise(&f.reason),
            neutralise(f.client_hostname.as_deref().unwrap_or("")),
            // Enrichment columns: filled by the enrichment stage, empty until then.
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
        ];
        self.writer
            .write_record(record.iter().map(|c| c.as_bytes()))
            .map_err(|source| self.csv_err(source))?;
        self.rows += 1;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Hands buffered rows to the operating system.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.writer.flush().map_err(|source| SinkError::Io {
            path: self.name.clone(),
            source,
        })
    }

    /// Flushes and makes the rows durable (fsync) when the output is a regular file.
    pub fn sync(&mut self) -> Result<(), SinkError> {
        self.flush()?;
        if let Some(file) = &self.file {
            file.sync_data().map_err(|source| SinkError::Io {
                path: self.name.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The output's name for messages (`-` for stdout).
    pub fn name(&self) -> &Path {
        &self.name
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
fn repair_torn_tail(file: &File, len: u64, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(());
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
    file.set_len(cut)
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
