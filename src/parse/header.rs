//! The syslog framing around a program's message: the header a syslog daemon (or Postfix's own
//! postlogd) writes before it, and rsyslog's repeated-message wrapper around it.
//!
//! Two header forms:
//! - traditional (RFC 3164 style, any timestamp form of [`super::timestamp`]):
//!   `TIMESTAMP HOST PROGRAM[PID]: MESSAGE`, or `PROGRAM: MESSAGE` from a syslog without PIDs;
//! - RFC 5424, as rsyslog's `RSYSLOG_SyslogProtocol23Format` and syslog-ng write it:
//!   `<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID STRUCTURED-DATA MESSAGE`, where PROCID and
//!   MSGID may be `-`, STRUCTURED-DATA is `-` or `[id k="v" ...]` elements (values escape `"`,
//!   `\` and `]` with a backslash), and MESSAGE may start with a UTF-8 BOM. Its timestamp
//!   carries its year and zone, so nothing is inferred.
//!
//! Everything here borrows from the line: nothing is allocated.

use super::timestamp::{self, YearContext};
use super::{Entry, MAX_REPEAT};

/// Splits a line into its header fields and message, or `None` when it starts with no header
/// this parser knows. `local` is the host of lines that name none (Dovecot's own log file).
pub(super) fn split<'a>(line: &'a [u8], years: &YearContext, local: &'a [u8]) -> Option<Entry<'a>> {
    if line.first() == Some(&b'<') {
        rfc5424(line)
    } else {
        traditional(line, years, local)
    }
}

/// The log levels Dovecot writes after the process name in its own log file.
const DOVECOT_LEVELS: [&[u8]; 6] = [
    b"Info: ",
    b"Warning: ",
    b"Error: ",
    b"Fatal: ",
    b"Panic: ",
    b"Debug: ",
];

/// `TIMESTAMP HOST PROGRAM[PID]: MESSAGE`, or Dovecot's own log file (`log_path`):
/// `TIMESTAMP PROCESS: LEVEL: MESSAGE`, which is read as host `local`, program `dovecot` and
/// message `PROCESS: LEVEL: MESSAGE`, as syslog would have carried it. (A syslog host never
/// ends with `:`, so the two cannot be confused.)
fn traditional<'a>(line: &'a [u8], years: &YearContext, local: &'a [u8]) -> Option<Entry<'a>> {
    let (timestamp, rest) = timestamp::parse_prefix(line, years)?;
    let (host, after_host) = token(rest)?;
    if host.len() > 1
        && host.ends_with(b":")
        && DOVECOT_LEVELS.iter().any(|l| after_host.starts_with(l))
    {
        return Some(Entry {
            timestamp,
            host: local,
            program: b"dovecot",
            message: rest,
        });
    }
    let rest = after_host;
    // The program name runs to `[PID]: ` (or to `: ` for a syslog without PIDs).
    let end = rest.iter().position(|&b| matches!(b, b'[' | b':' | b' '))?;
    let (program, mut rest) = (&rest[..end], &rest[end..]);
    if program.is_empty() {
        return None;
    }
    if let Some(r) = rest.strip_prefix(b"[") {
        let close = memchr::memchr(b']', r)?;
        if close == 0 || !r[..close].iter().all(u8::is_ascii_digit) {
            return None;
        }
        rest = &r[close + 1..];
    }
    let message = rest.strip_prefix(b": ")?;
    Some(Entry {
        timestamp,
        host,
        program,
        message,
    })
}

/// The UTF-8 byte order mark RFC 5424 allows at the start of MSG.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`
fn rfc5424(line: &[u8]) -> Option<Entry<'_>> {
    let r = line.strip_prefix(b"<")?;
    let digits = r.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) {
        return None;
    }
    let pri = r[..digits]
        .iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    if pri > 191 {
        return None;
    }
    let r = r[digits..].strip_prefix(b">1 ")?;
    // Only a full timestamp places a line: `-` (no time) leaves it unplaced.
    let (timestamp, r) = timestamp::parse_rfc3339(r)?;
    let (host, r) = token(r)?;
    let (program, r) = token(r)?;
    let (_procid, r) = token(r)?;
    let (_msgid, r) = token(r)?;
    let r = skip_structured_data(r)?;
    // MSG is optional; after it the separating space, a BOM if the sender marked UTF-8, and one
    // more space when rsyslog's MSG property kept the space that followed the legacy tag.
    let message = match r.strip_prefix(b" ") {
        Some(m) => {
            let m = m.strip_prefix(BOM).unwrap_or(m);
            m.strip_prefix(b" ").unwrap_or(m)
        }
        None if r.is_empty() => r,
        None => return None,
    };
    Some(Entry {
        timestamp,
        host,
        program,
        message,
    })
}

/// `-`, or one or more `[SD-ID (SP NAME="VALUE")*]` elements; returns what follows.
fn skip_structured_data(s: &[u8]) -> Option<&[u8]> {
    if let Some(r) = s.strip_prefix(b"-") {
        return Some(r);
    }
    let mut r = s;
    if r.first() != Some(&b'[') {
        return None;
    }
    while r.first() == Some(&b'[') {
        let mut i = 1;
        let mut quoted = false;
        loop {
            match *r.get(i)? {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        if i == 1 {
            return None;
        }
        r = &r[i + 1..];
    }
    Some(r)
}

/// A non-empty field ending at a space; returns it and what follows the space.
fn token(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = memchr::memchr(b' ', s)?;
    (sp > 0).then(|| (&s[..sp], &s[sp + 1..]))
}

/// What rsyslog's repeated-message reduction made of a message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Repeat<'a> {
    /// An ordinary message.
    No,
    /// `message repeated N times: [ MESSAGE]`: stands for `times` more lines with `message`.
    Of {
        /// N, at most [`MAX_REPEAT`].
        times: u32,
        /// N was more than [`MAX_REPEAT`].
        capped: bool,
        /// The repeated message.
        message: &'a [u8],
    },
    /// The wrapper without its closing `]`, or with a count of zero: what it stood for is
    /// unknown. Carries the inner message to tell whether it mattered.
    Broken(&'a [u8]),
}

/// rsyslog writes ` message repeated %d times: [%.800s]` as the new message, the original cut
/// at 800 bytes; the original's own leading space is kept, so the text in brackets starts with
/// a space.
pub(super) fn repeated(message: &[u8]) -> Repeat<'_> {
    let Some(r) = message.strip_prefix(b"message repeated ") else {
        return Repeat::No;
    };
    let digits = r.iter().take_while(|b| b.is_ascii_digit()).count();
    let Some(inner) = r[digits..].strip_prefix(b" times: [") else {
        return Repeat::No;
    };
    if digits == 0 {
        return Repeat::No;
    }
    let n = r[..digits].iter().fold(0u64, |acc, &b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    let inner = inner.strip_prefix(b" ").unwrap_or(inner);
    match inner.strip_suffix(b"]") {
        Some(message) if n > 0 => Repeat::Of {
            times: n.min(u64::from(MAX_REPEAT)) as u32,
            capped: n > u64::from(MAX_REPEAT),
            message,
        },
        _ => Repeat::Broken(inner),
    }
}
