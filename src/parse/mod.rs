//! The parser stage: finds Postfix SASL authentication failures in blocks of log lines.
//!
//! Almost every line of a mail log is something else, so the parser never looks at lines one
//! by one. [`Parser::scan_block`] runs a single `memmem` search for `authentication failed`
//! over a whole block of complete lines and only looks at the lines around each hit (the
//! ripgrep approach): lines without the phrase cost a share of one vectorised search and
//! nothing more, with no allocation.
//!
//! A hit is only a candidate. [`parse_line`] then checks the line's whole structure,
//!
//! ```text
//! TIMESTAMP HOST PROGRAM[PID]: warning: NAME[IP](:PORT)?: SASL MECH authentication failed(: REASON)?(, sasl_username=USER)?
//! ```
//!
//! anchored at the start of the line, so attacker-controlled text (a HELO name, an envelope
//! address, a username that reads `authentication failed`) elsewhere in a line can never make
//! it a failure nor change the IP taken.

pub mod timestamp;

use std::borrow::Cow;
use std::net::IpAddr;

use memchr::memmem;

pub use timestamp::{Timestamp, YearContext};

/// The phrase every failure line contains; the prefilter looks for it.
pub const NEEDLE: &[u8] = b"authentication failed";

/// One failed SASL authentication: a row of the intrusion record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// When Postfix logged it.
    pub timestamp: Timestamp,
    /// The syslog host field: the mail server that logged it.
    pub server: String,
    /// The logging program, e.g. `postfix/submission/smtpd`.
    pub service: String,
    /// The client address. IPv4-mapped IPv6 addresses are given as the IPv4 address they carry.
    pub ip: IpAddr,
    /// The username the client sent; `None` when Postfix did not log one (before 3.7.8) or
    /// logged `(unavailable)`.
    pub username: Option<String>,
    /// The SASL mechanism in upper case (`LOGIN`, `PLAIN`, `CRAM-MD5`, ...). The client
    /// chooses it, so it may be any word.
    pub mechanism: String,
    /// The reason text Postfix logged, e.g. `(reason unavailable)`; may be empty.
    pub reason: String,
    /// The client hostname Postfix logged; `None` for `unknown` (no verified reverse name).
    pub client_hostname: Option<String>,
}

/// A failure of the mail server's own SASL backend (Dovecot or saslauthd down): logged with the
/// same words as an attack but caused by the server, so it is counted and warned about instead
/// of being recorded as an attack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFailure {
    /// When Postfix logged it.
    pub timestamp: Timestamp,
    /// The logging program.
    pub service: String,
    /// The client whose login could not be checked.
    pub ip: IpAddr,
    /// What Postfix said, e.g. `Connection lost to authentication server`.
    pub reason: String,
}

/// What a candidate line turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A failed login: an attack, or at least a wrong password.
    Failure(AuthFailure),
    /// The server's SASL backend failed.
    Backend(BackendFailure),
    /// A SASL failure message whose line could not be placed (no timestamp, host or program
    /// this parser knows, or a program other than smtpd). Counted and warned about, never
    /// dropped silently.
    Unrecognised(&'static str),
    /// Not a failure line (the phrase appeared in some other text).
    NotFailure,
}

/// Reasons that mean the server's own SASL backend failed, not the client (matched
/// case-insensitively anywhere in the reason): Postfix's Dovecot client when the auth socket
/// goes away, Cyrus SASL's `generic failure` when saslauthd is down, and temporary failures.
const BACKEND_REASONS: [&str; 4] = [
    "connection lost to authentication server",
    "generic failure",
    "temporary authentication failure",
    "internal error",
];

/// Parses one line (without its newline). `years` places yearless syslog timestamps.
pub fn parse_line(line: &[u8], years: &YearContext) -> Parsed {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(header) = parse_header(line, years) else {
        // Maybe a failure in a line form we do not know: say so rather than lose it.
        return match memmem::find(line, b": warning: ") {
            Some(i) if parse_message(&line[i + 2..]).is_some() => {
                Parsed::Unrecognised("no timestamp, host and program this parser knows")
            }
            _ => Parsed::NotFailure,
        };
    };
    let Some(msg) = parse_message(header.message) else {
        return Parsed::NotFailure;
    };
    if !is_smtpd(header.program) {
        return Parsed::Unrecognised("SASL failure logged by a program other than smtpd");
    }
    let Some(ip) = parse_ip(msg.ip) else {
        return Parsed::Unrecognised("client address is not an IP address");
    };
    let service = text(header.program).into_owned();
    let reason = text(msg.reason).into_owned();
    if is_backend_reason(&reason) {
        return Parsed::Backend(BackendFailure {
            timestamp: header.timestamp,
            service,
            ip,
            reason,
        });
    }
    Parsed::Failure(AuthFailure {
        timestamp: header.timestamp,
        server: text(header.host).into_owned(),
        service,
        ip,
        username: msg.username.map(|u| text(u).into_owned()),
        mechanism: text(msg.mechanism).to_ascii_uppercase(),
        reason,
        client_hostname: (msg.name != b"unknown").then(|| text(msg.name).into_owned()),
    })
}

/// Finds candidate lines in blocks of complete lines and parses them. Holds the compiled
/// prefilter; one per reader.
pub struct Parser {
    finder: memmem::Finder<'static>,
    max_line_bytes: usize,
}

/// A parsed candidate line with where it was found.
#[derive(Debug)]
pub struct Found {
    /// What the line is.
    pub parsed: Parsed,
    /// 1-based line number within the input.
    pub line_number: u64,
    /// Byte offset just past the line's newline within the input.
    pub end_offset: u64,
}

/// What [`Parser::scan_block`] saw in a block, beside the candidates it reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockCounts {
    /// Lines in the block (newlines, plus a final unterminated line if any).
    pub lines: u64,
    /// Candidate lines longer than the limit, skipped unparsed.
    pub too_long: u64,
}

impl Parser {
    /// A parser that skips candidate lines longer than `max_line_bytes`.
    pub fn new(max_line_bytes: usize) -> Self {
        Parser {
            finder: memmem::Finder::new(NEEDLE).into_owned(),
            max_line_bytes,
        }
    }

    /// Scans `block`, a run of whole lines (the last may lack its newline at end of input)
    /// starting at input offset `base_offset` and line number `base_line + 1`, and calls
    /// `found` for each candidate line. Returns the block's line count.
    pub fn scan_block(
        &self,
        block: &[u8],
        base_offset: u64,
        base_line: u64,
        years: &YearContext,
        mut found: impl FnMut(Found),
    ) -> BlockCounts {
        let mut counts = BlockCounts::default();
        let mut pos = 0;
        let mut lines_before = 0u64;
        while let Some(hit) = self.finder.find(&block[pos..]) {
            let hit = pos + hit;
            let start = memchr::memrchr(b'\n', &block[pos..hit]).map_or(pos, |i| pos + i + 1);
            let end = memchr::memchr(b'\n', &block[hit..]).map_or(block.len(), |i| hit + i);
            lines_before += bytecount::count(&block[pos..start], b'\n') as u64;
            let line = &block[start..end];
            let next = (end + 1).min(block.len());
            if line.len() > self.max_line_bytes {
                counts.too_long += 1;
            } else {
                found(Found {
                    parsed: parse_line(line, years),
                    line_number: base_line + lines_before + 1,
                    end_offset: base_offset + next as u64,
                });
            }
            lines_before += (end < block.len()) as u64;
            pos = next;
        }
        lines_before += bytecount::count(&block[pos..], b'\n') as u64;
        // An unterminated final line counts as a line too.
        let unterminated = block.last().is_some_and(|&b| b != b'\n');
        counts.lines = lines_before + unterminated as u64;
        counts
    }
}

struct Header<'a> {
    timestamp: Timestamp,
    host: &'a [u8],
    program: &'a [u8],
    message: &'a [u8],
}

/// `TIMESTAMP HOST PROGRAM[PID]: MESSAGE`
fn parse_header<'a>(line: &'a [u8], years: &YearContext) -> Option<Header<'a>> {
    let (timestamp, rest) = timestamp::parse_prefix(line, years)?;
    let sp = memchr::memchr(b' ', rest)?;
    let (host, rest) = (&rest[..sp], &rest[sp + 1..]);
    if host.is_empty() {
        return None;
    }
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
    Some(Header {
        timestamp,
        host,
        program,
        message,
    })
}

struct Message<'a> {
    name: &'a [u8],
    ip: &'a [u8],
    mechanism: &'a [u8],
    reason: &'a [u8],
    username: Option<&'a [u8]>,
}

/// `warning: NAME[IP](:PORT)?: SASL MECH authentication failed(: REASON)?(, sasl_username=USER)?`
fn parse_message(msg: &[u8]) -> Option<Message<'_>> {
    let rest = msg.strip_prefix(b"warning: ")?;
    // Postfix only logs valid hostnames (or `unknown`): no space or bracket inside.
    let open = rest.iter().position(|&b| matches!(b, b'[' | b']' | b' '))?;
    if rest[open] != b'[' || open == 0 {
        return None;
    }
    let name = &rest[..open];
    let rest = &rest[open + 1..];
    let close = rest.iter().position(|&b| matches!(b, b']' | b' ' | b'['))?;
    if rest[close] != b']' || close == 0 {
        return None;
    }
    let ip = &rest[..close];
    let mut rest = &rest[close + 1..];
    // Optional `:PORT` (smtpd_client_port_logging = yes).
    if let Some(r) = rest.strip_prefix(b":") {
        let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
        if n > 0 {
            rest = &r[n..];
        }
    }
    let rest = rest.strip_prefix(b": SASL ")?;
    let sp = memchr::memchr(b' ', rest)?;
    let mechanism = &rest[..sp];
    if mechanism.is_empty() {
        return None;
    }
    let rest = rest[sp..].strip_prefix(b" authentication failed")?;
    let after = if rest.is_empty() {
        rest
    } else {
        let r = rest.strip_prefix(b":")?;
        r.strip_prefix(b" ").unwrap_or(r)
    };
    // The username is what the client sent and may itself contain `, sasl_username=`:
    // the reason (server text) ends at the first occurrence, the username is all the rest.
    let (reason, username) = match memmem::find(after, b", sasl_username=") {
        Some(i) => {
            let user = &after[i + b", sasl_username=".len()..];
            (
                &after[..i],
                (user != b"(unavailable)" && !user.is_empty()).then_some(user),
            )
        }
        None => (after, None),
    };
    Some(Message {
        name,
        ip,
        mechanism,
        reason,
        username,
    })
}

/// `postfix/smtpd`, `postfix/submission/smtpd`, `postfix-out/smtpd`, any `syslog_name/smtpd`.
fn is_smtpd(program: &[u8]) -> bool {
    program == b"smtpd" || program.ends_with(b"/smtpd")
}

fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(s).ok()?;
    // A link-local IPv6 address may carry a zone (`fe80::1%eth0`); the address is what counts.
    let s = s.split_once('%').map_or(s, |(addr, _)| addr);
    let ip: IpAddr = s.parse().ok()?;
    Some(ip.to_canonical())
}

fn is_backend_reason(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    BACKEND_REASONS.iter().any(|r| lower.contains(r))
}

/// Log bytes as text: invalid UTF-8 is replaced by U+FFFD, never dropped.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests;
