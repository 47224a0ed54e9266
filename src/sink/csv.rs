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

/// The columns, in order. Part of the public interface: documented in docs/guide.md.
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
    #[error(
        "{path}: cannot {op}: {source}{}",
        crate::state::access_hint(path, source)
    )]
    Io {
        /// The CSV file.
        path: PathBuf,
        /// What was being done to it ("open for appending", "append to", ...).
        op: &'static str,
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
///
/// Fields go straight into the buffer, quoted when `csv_core` (the `csv` crate's own engine)
/// says they must be and by its quoting function: `csv::Writer` would stage each row in a
/// buffer of its own, copy it out on every flush and run its state machine per field, and the
/// timestamp, address and numbers are written as bytes in place, not as `String`s. A scan of a
/// busy log formats a row for one line in eight. A unit test holds the rows to what
/// `csv::Writer` writes.
pub struct RowFormatter {
    buf: Vec<u8>,
    /// Only asked which fields need quotes (a comma, quote or line break).
    writer: csv_core::Writer,
    /// Room for a field built before it is written (a neutralised text, a timestamp).
    scratch: Vec<u8>,
    /// A field of the current row was written: the next needs a delimiter.
    in_row: bool,
}

impl Default for RowFormatter {
    fn default() -> Self {
        RowFormatter {
            buf: Vec::with_capacity(64 * 1024),
            writer: csv_core::WriterBuilder::new()
                .terminator(csv_core::Terminator::CRLF)
                .build(),
            scratch: Vec::with_capacity(64),
            in_row: false,
        }
    }
}

impl RowFormatter {
    /// Formats one row after the ones already buffered; `enrichment` fills the last five
    /// columns (empty without it).
    pub fn push(&mut self, f: &AuthEvent, enrichment: Option<&Enrichment>) {
        self.scratch.clear();
        f.timestamp.write_rfc3339(&mut self.scratch);
        self.scratch_field();
        self.text(&f.server);
        self.text(&f.service);
        self.scratch.clear();
        write_ip(&mut self.scratch, f.ip);
        self.scratch_field();
        self.text(f.username.as_deref().unwrap_or(""));
        self.text(&f.mechanism);
        self.text(&f.reason);
        self.text(f.client_hostname.as_deref().unwrap_or(""));
        let e = enrichment;
        self.text(e.and_then(|e| e.reverse_dns.as_deref()).unwrap_or(""));
        self.field(
            e.and_then(|e| e.dns_status)
                .map_or("", |s| s.as_str())
                .as_bytes(),
        );
        self.text(e.and_then(|e| e.country.as_deref()).unwrap_or(""));
        match e.and_then(|e| e.asn) {
            Some(asn) => self.field(itoa::Buffer::new().format(asn).as_bytes()),
            None => self.field(b""),
        }
        self.text(e.and_then(|e| e.as_org.as_deref()).unwrap_or(""));
        self.end_row();
    }

    /// Formats one row from its fields as text, in [`COLUMNS`]' order (a row read back from
    /// a database): the client's texts are neutralised as [`RowFormatter::push`] does.
    pub fn push_fields(&mut self, fields: &[&str; 13]) {
        for (i, f) in fields.iter().enumerate() {
            match COLUMNS[i] {
                // Written by this program, never by a client.
                "timestamp" | "ip" | "dns_status" | "asn" => self.field(f.as_bytes()),
                _ => self.text(f),
            }
        }
        self.end_row();
    }

    /// The header row.
    fn push_header(&mut self) {
        for c in COLUMNS {
            self.field(c.as_bytes());
        }
        self.end_row();
    }

    /// Text a client may have chosen: neutralised (see [`neutralise`]), then written.
    fn text(&mut self, s: &str) {
        if needs_neutralising(s) {
            self.scratch.clear();
            self.scratch.push(b'\'');
            self.scratch.extend_from_slice(s.as_bytes());
            self.scratch_field();
        } else {
            self.field(s.as_bytes());
        }
    }

    /// Writes the field built in `scratch`.
    fn scratch_field(&mut self) {
        let scratch = std::mem::take(&mut self.scratch);
        self.field(&scratch);
        self.scratch = scratch;
    }

    /// Writes one field (with the comma before it unless it is the row's first), quoted when
    /// csv_core says it must be.
    fn field(&mut self, bytes: &[u8]) {
        if self.in_row {
            self.buf.push(b',');
        }
        self.in_row = true;
        if !self.writer.should_quote(bytes) {
            self.buf.extend_from_slice(bytes);
            return;
        }
        self.buf.push(b'"');
        // Quoted, a field takes at most twice its length: every byte a doubled quote.
        let len = self.buf.len();
        self.buf.resize(len + 2 * bytes.len(), 0);
        let (_, read, n) = csv_core::quote(bytes, &mut self.buf[len..], b'"', b'"', true);
        debug_assert_eq!(read, bytes.len(), "csv_core had room for the whole field");
        self.buf.truncate(len + n);
        self.buf.push(b'"');
    }

    /// Ends the row.
    fn end_row(&mut self) {
        self.buf.extend_from_slice(b"\r\n");
        self.in_row = false;
    }

    /// The formatted bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the formatted bytes (keeping the buffer's memory).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// An address as text: IPv4 by hand from its four numbers (the standard formatter goes through
/// `fmt` machinery costing more than parsing the whole line), IPv6 by the standard formatter.
fn write_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
            }
        }
        std::net::IpAddr::V6(v6) => {
            write!(out, "{v6}").expect("writing into memory cannot fail");
        }
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
            op: "open for appending",
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
            op: "append to",
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
            op: "sync",
            path: self.path.clone(),
            source,
        })
    }

    /// Cuts the file back to `len` bytes (a failed append's partial rows).
    pub fn truncate_to(&mut self, len: u64) -> Result<(), SinkError> {
        if let Output::File { file: f, .. } = &self.out {
            f.set_len(len).map_err(|source| SinkError::Io {
                op: "cut back",
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
            op: "read the header of",
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
    if needs_neutralising(s) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Whether `s` starts like a spreadsheet formula: see [`neutralise`].
fn needs_neutralising(s: &str) -> bool {
    matches!(
        s.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
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

    /// Rows are what the `csv` crate's own writer makes of the same fields (quoting, doubled
    /// quotes, line breaks, empty fields), with formula text neutralised first.
    #[test]
    fn rows_are_the_csv_crate_s() {
        use crate::enrich::DnsStatus;
        use crate::parse::{Timestamp, YearContext};
        let years = YearContext::at_naive(
            chrono::NaiveDateTime::parse_from_str("2026-11-22 12:00:00", "%Y-%m-%d %H:%M:%S")
                .unwrap(),
        );
        let (timestamp, _) =
            crate::parse::timestamp::parse_prefix(b"2026-11-22T08:01:02.5+01:00 x", &years)
                .unwrap();
        let hostile = [
            "alice",
            "a,b",
            "say \"hi\"",
            "two\r\nlines",
            "=cmd|' /C calc'!A0",
            "-\"quoted, formula\"",
            "",
            "\u{1b}[31mred",
            "caf\u{e9}",
        ];
        for (i, text) in hostile.iter().enumerate() {
            let event = AuthEvent {
                timestamp: Timestamp {
                    frac_digits: 1,
                    ..timestamp
                },
                server: (*text).into(),
                service: "dovecot/imap-login".into(),
                ip: if i % 2 == 0 {
                    "192.0.2.255".parse().unwrap()
                } else {
                    "2001:db8::ffff:1".parse().unwrap()
                },
                username: Some((*text).into()),
                mechanism: "PLAIN".into(),
                reason: (*text).into(),
                client_hostname: (i % 3 == 0).then(|| (*text).into()),
            };
            let enrichment = Enrichment {
                reverse_dns: Some(text.to_string()),
                dns_status: Some(DnsStatus::Ok),
                country: Some("FR".into()),
                asn: Some(4_294_967_295),
                as_org: Some(text.to_string()),
            };
            for e in [None, Some(&enrichment)] {
                let mut ours = RowFormatter::default();
                ours.push(&event, e);
                ours.push(&event, e);
                let mut theirs = ::csv::WriterBuilder::new()
                    .terminator(::csv::Terminator::CRLF)
                    .from_writer(Vec::new());
                let ip = event.ip.to_string();
                let asn = e
                    .and_then(|e| e.asn)
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let opt = |s: Option<&str>| neutralise(s.unwrap_or("")).into_owned();
                let row = [
                    timestamp.to_rfc3339(),
                    neutralise(&event.server).into_owned(),
                    event.service.to_string(),
                    ip,
                    opt(event.username.as_deref()),
                    event.mechanism.to_string(),
                    neutralise(&event.reason).into_owned(),
                    opt(event.client_hostname.as_deref()),
                    opt(e.and_then(|e| e.reverse_dns.as_deref())),
                    e.and_then(|e| e.dns_status)
                        .map_or("", |s| s.as_str())
                        .to_owned(),
                    opt(e.and_then(|e| e.country.as_deref())),
                    asn,
                    opt(e.and_then(|e| e.as_org.as_deref())),
                ];
                theirs.write_record(&row).unwrap();
                theirs.write_record(&row).unwrap();
                let theirs = theirs.into_inner().unwrap();
                assert_eq!(
                    String::from_utf8_lossy(ours.bytes()),
                    String::from_utf8_lossy(&theirs),
                    "{text:?}"
                );
            }
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
