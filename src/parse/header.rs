//! The syslog framing around a program's message: the header a syslog daemon (or Postfix's own
//! postlogd) writes before it.
//!
//! The traditional form (RFC 3164 style, any timestamp form of [`super::timestamp`]):
//! `TIMESTAMP HOST PROGRAM[PID]: MESSAGE`, or `PROGRAM: MESSAGE` from a syslog without PIDs.
//!
//! Everything here borrows from the line: nothing is allocated.

use super::Entry;
use super::timestamp::{self, YearContext};

/// Splits a line into its header fields and message, or `None` when it starts with no header
/// this parser knows.
pub(super) fn split<'a>(line: &'a [u8], years: &YearContext) -> Option<Entry<'a>> {
    traditional(line, years)
}

/// `TIMESTAMP HOST PROGRAM[PID]: MESSAGE`
fn traditional<'a>(line: &'a [u8], years: &YearContext) -> Option<Entry<'a>> {
    let (timestamp, rest) = timestamp::parse_prefix(line, years)?;
    let (host, rest) = token(rest)?;
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

/// A non-empty field ending at a space; returns it and what follows the space.
fn token(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = memchr::memchr(b' ', s)?;
    (sp > 0).then(|| (&s[..sp], &s[sp + 1..]))
}
