//! The parser stage: finds Postfix SASL authentication failures in blocks of log lines.
//!
//! Almost every line of a mail log is something else, so the parser never looks at lines one
//! by one. [`Parser::scan_block`] runs a single `memmem` search for `authentication failed`
//! over a whole block of complete lines and only looks at the lines around each hit (the
//! ripgrep approach): lines without the phrase cost a share of one vectorised search and
//! nothing more, with no allocation.
//!
//! A hit is only a candidate. [`parse_line`] then checks the line's whole structure in two
//! parts, each anchored at its start:
//!
//! - the syslog framing (`header`): a traditional header `TIMESTAMP HOST PROGRAM[PID]: ` or an
//!   RFC 5424 one `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD `, and rsyslog's repeated-message
//!   wrapper `message repeated N times: [ ... ]`, which stands for N lines;
//! - the program and its message ([`parse_entry`], which a journal reader can call directly):
//!
//! ```text
//! smtpd:       warning: NAME[IP](:PORT)?: SASL MECH authentication failed(: REASON)?(, sasl_username=USER)?
//! smtp, lmtp:  QUEUEID: SASL authentication failed; server NAME[IP] said: ...       (relay refused our login)
//!              QUEUEID: to=<RCPT>, ..., status=deferred (SASL authentication failed; ...)
//! ```
//!
//! so attacker-controlled text (a HELO name, an envelope address, a username that reads
//! `authentication failed`) elsewhere in a line can never make it a failure nor change the IP
//! taken.

mod bytes;
mod dovecot;
mod header;
mod message;
pub mod timestamp;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use memchr::memmem;

pub use timestamp::{Timestamp, YearContext};

use header::Repeat;
use message::Smtpd;

/// The phrase every Postfix failure line contains.
pub const NEEDLE: &[u8] = b"authentication failed";

/// The phrase every Dovecot login process's failure summary contains.
pub const DOVECOT_NEEDLE: &[u8] = b"auth failed";

/// What the prefilter searches for; every line the parser records or counts holds one:
/// - `failed`, standing for [`NEEDLE`] and [`DOVECOT_NEEDLE`] (both end in `failed`, a word rare
///   in mail logs; a hit counts when the phrase's start stands before it);
/// - `sasl_method=`: Postfix's line for a message from a client that logged in;
/// - `-login: `: every line of Dovecot's login processes (logins, summaries, connections
///   without attempts, failures to reach the auth process);
/// - `auth` followed by `: ` or `-worker(`: Dovecot's auth process, for its errors.
const NEEDLES: [&[u8]; 4] = [b"failed", b"sasl_method=", b"-login: ", b"auth"];

/// What must follow `auth` for a hit: Dovecot's auth process (`auth: `) and its workers
/// (`auth-worker(`).
const AUTH_PROCESS: [&[u8]; 2] = [b": ", b"-worker("];

/// The prefilter: finds the lines that hold one of [`NEEDLES`] in a block. One `memmem` search
/// per needle (memchr's SIMD search), merged in order: each needle's next hit is kept and only
/// searched again once the scan has passed it, so every byte is searched once per needle and a
/// line is looked at once, whichever needles it holds. (A multi-pattern search, aho-corasick's
/// Teddy, was measured 2.7x slower: these needles begin with `auth` and `fail`, which every
/// `disconnect ... auth=0/1` line holds.)
#[derive(Debug, Clone)]
pub struct Prefilter {
    finders: Vec<memmem::Finder<'static>>,
}

impl Default for Prefilter {
    fn default() -> Self {
        Prefilter {
            finders: NEEDLES
                .iter()
                .map(|n| memmem::Finder::new(n).into_owned())
                .collect(),
        }
    }
}

impl Prefilter {
    /// Whether `haystack` holds a needle.
    pub fn matches(&self, haystack: &[u8]) -> bool {
        (0..self.finders.len()).any(|i| self.next(i, haystack, 0).is_some())
    }

    /// Where needle `i` next occurs in `haystack` at or after `from` (for `failed`: where it
    /// stands after the start of one of the phrases).
    fn next(&self, i: usize, haystack: &[u8], mut from: usize) -> Option<usize> {
        loop {
            let at = from + self.finders[i].find(&haystack[from..])?;
            let hit = match i {
                0 => {
                    let before = &haystack[..at];
                    [NEEDLE, DOVECOT_NEEDLE]
                        .iter()
                        .any(|p| before.ends_with(&p[..p.len() - b"failed".len()]))
                }
                3 => {
                    let after = &haystack[at + 4..];
                    AUTH_PROCESS.iter().any(|a| after.starts_with(a))
                }
                _ => true,
            };
            if hit {
                return Some(at);
            }
            from = at + NEEDLES[i].len();
        }
    }

    /// The hits in `block`, in order: see [`Hits`].
    fn hits<'a>(&'a self, block: &'a [u8]) -> Hits<'a> {
        Hits {
            prefilter: self,
            block,
            next: vec![Next::Unknown; self.finders.len()],
        }
    }
}

/// A needle's next hit as far as [`Hits`] knows.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Not searched since the scan passed the last hit.
    Unknown,
    /// At this offset.
    At(usize),
    /// None left in the block.
    None,
}

/// The merged hits of every needle in one block.
struct Hits<'a> {
    prefilter: &'a Prefilter,
    block: &'a [u8],
    next: Vec<Next>,
}

impl Hits<'_> {
    /// The first hit at or after `from`.
    fn first_from(&mut self, from: usize) -> Option<usize> {
        let mut first: Option<usize> = None;
        for (i, next) in self.next.iter_mut().enumerate() {
            let at = match *next {
                Next::At(at) if at >= from => at,
                Next::None => continue,
                _ => match self.prefilter.next(i, self.block, from) {
                    Some(at) => {
                        *next = Next::At(at);
                        at
                    }
                    None => {
                        *next = Next::None;
                        continue;
                    }
                },
            };
            first = Some(first.map_or(at, |f| f.min(at)));
        }
        first
    }
}

/// The most lines one rsyslog `message repeated N times` line is taken to stand for. A mail
/// server repeats one failure a few dozen times at most (smtpd ends a session after
/// `smtpd_hard_error_limit` errors); a larger N is recorded as this many rows and counted as
/// capped, so that one line can never turn into millions of rows.
pub const MAX_REPEAT: u32 = 1000;

/// Text of an [`AuthEvent`]: held inline up to 24 bytes (a server, service, mechanism and
/// most usernames and hostnames), so that parsing a row allocates little; a scan of a busy log
/// makes a row for one line in eight, and the allocator was an eighth of its time.
pub type Text = compact_str::CompactString;

/// One authentication by a client: a row of the intrusion record (a failed login) or of the
/// logins record (a successful one); which one is said by where it is kept
/// ([`Parsed::Failure`], [`Parsed::Login`]), as the two records have the same columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEvent {
    /// When the server logged it.
    pub timestamp: Timestamp,
    /// The syslog host field: the mail server that logged it.
    pub server: Text,
    /// The logging program, e.g. `postfix/submission/smtpd`.
    pub service: Text,
    /// The client address. IPv4-mapped IPv6 addresses are given as the IPv4 address they carry.
    pub ip: IpAddr,
    /// The username the client sent; `None` when Postfix did not log one (before 3.7.8) or
    /// logged `(unavailable)`.
    pub username: Option<Text>,
    /// The SASL mechanism in upper case (`LOGIN`, `PLAIN`, `CRAM-MD5`, ...). The client
    /// chooses it, so it may be any word.
    pub mechanism: Text,
    /// The reason text the server logged, e.g. `(reason unavailable)`, `auth failed, 3
    /// attempts in 10 secs`; empty for a login.
    pub reason: Text,
    /// The client hostname Postfix logged; `None` for `unknown` (no verified reverse name) and
    /// for Dovecot, which logs none.
    pub client_hostname: Option<Text>,
}

/// A SASL failure caused by the mail server's own side, not by a client: logged with the same
/// words as an attack (or by Postfix's SMTP client), so it is counted and warned about instead
/// of being recorded as an attack, and listed in reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFailure {
    /// When Postfix logged it.
    pub timestamp: Timestamp,
    /// The logging program.
    pub service: String,
    /// Whose SASL failed, with the other end.
    pub kind: BackendKind,
    /// What Postfix said: e.g. `Connection lost to authentication server`, or for a relay
    /// `SASL authentication failed; server NAME[IP] said: 535 ...`.
    pub reason: String,
}

/// Which side of the mail server a [`BackendFailure`] is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    /// The SASL backend smtpd asks (Dovecot, saslauthd) failed: a client's login could not be
    /// checked.
    AuthServer {
        /// The client whose login could not be checked.
        client: IpAddr,
    },
    /// Dovecot's authentication side failed: its auth process logged an error, or a login
    /// process could not reach it. No login can be checked while it lasts.
    AuthProcess {
        /// The client whose connection it ended, when Dovecot named one.
        client: Option<IpAddr>,
    },
    /// A server this one relays mail through (its SMTP or LMTP client logged in there)
    /// refused this server's own credentials: mail to it is deferred.
    Relay {
        /// The relay as Postfix named it: `NAME[IP]`, or `NAME` for a cached failure.
        server: String,
    },
}

impl BackendKind {
    /// `server` or `relay`: a short name for logs and files.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendKind::AuthServer { .. } => "server",
            BackendKind::AuthProcess { .. } => "dovecot-auth",
            BackendKind::Relay { .. } => "relay",
        }
    }

    /// The other end: the client address, or the relay's name.
    pub fn peer(&self) -> Cow<'_, str> {
        match self {
            BackendKind::AuthServer { client } => Cow::Owned(client.to_string()),
            BackendKind::AuthProcess { client } => {
                Cow::Owned(client.map_or_else(String::new, |c| c.to_string()))
            }
            BackendKind::Relay { server } => Cow::Borrowed(server),
        }
    }
}

/// The warning an operator reads: what failed and what to look at.
impl fmt::Display for BackendFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BackendKind::AuthServer { client } => write!(
                f,
                "the mail server's SASL backend failed ({}): the login from {client} could not be checked; is Dovecot/saslauthd running?",
                self.reason
            ),
            BackendKind::AuthProcess { client } => {
                write!(f, "Dovecot's authentication failed ({})", self.reason)?;
                if let Some(c) = client {
                    write!(f, ": the login from {c} could not be checked")?;
                }
                write!(
                    f,
                    "; no login can be checked until it is fixed: see `journalctl -u dovecot`"
                )
            }
            BackendKind::Relay { server } => write!(
                f,
                "relay {server} refused this server's SASL login ({}): mail cannot be relayed through it; check smtp_sasl_password_maps",
                self.reason
            ),
        }
    }
}

/// What a candidate line turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A failed login: an attack, or at least a wrong password.
    Failure(AuthEvent),
    /// A successful login (Postfix's `client=..., sasl_method=` line for a message a client
    /// that logged in submitted, Dovecot's `Login:`).
    Login(AuthEvent),
    /// A line only counted: see [`Counted`].
    Counted(Counted),
    /// Dovecot's auth process said whether an attempt's username exists (`auth_verbose`).
    Verdict(AuthVerdict),
    /// The server's SASL backend failed, or a relay refused its credentials.
    Backend(BackendFailure),
    /// A SASL failure message whose line could not be placed (no timestamp, host or program
    /// this parser knows, a program other than smtpd, a client that cannot be read). Counted
    /// and warned about, never dropped silently.
    Unrecognised(&'static str),
    /// Nothing of interest (a needle appeared in some other text).
    NotFailure,
}

/// Dovecot's auth process's verdict on one attempt (logged with `auth_verbose = yes`): not a
/// row (the login process's summary is), but it tells an existing account under attack
/// (`Password mismatch`) from a guessed name (`unknown user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthVerdict {
    /// When it was logged.
    pub timestamp: Timestamp,
    /// The client address.
    pub ip: IpAddr,
    /// The username tried (the client's text).
    pub username: String,
    /// The username exists (the password was wrong).
    pub known_user: bool,
}

/// Dovecot lines that are neither failed logins nor logins, counted in the statistics: a
/// client that connected and tried nothing is no attack on a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// `Disconnected (no auth attempts in N secs)`: a scanner, a TLS probe, a client that gave up.
    NoAuthAttempts,
    /// `tried to use disallowed plaintext auth`: refused before any password was checked.
    PlaintextRefused,
}

/// A parsed line: what it is, and how many log lines it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLine {
    /// What the line is.
    pub parsed: Parsed,
    /// How many times to record it: 1, or N for rsyslog's `message repeated N times: [...]`
    /// (which stands for N more lines like the one before it), at most [`MAX_REPEAT`].
    pub count: u32,
    /// rsyslog's N was more than [`MAX_REPEAT`] (only for lines that are not
    /// [`Parsed::NotFailure`]): `count` rows stand for more lines.
    pub capped: bool,
}

impl ParsedLine {
    fn once(parsed: Parsed) -> Self {
        ParsedLine {
            parsed,
            count: 1,
            capped: false,
        }
    }
}

/// A log entry without its syslog framing: what [`parse_entry`] reads. A syslog line gives
/// its header fields; a journal entry gives its own (`_HOSTNAME`, `SYSLOG_IDENTIFIER`,
/// `MESSAGE` and its timestamp).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// When it was logged.
    pub timestamp: Timestamp,
    /// The host that logged it.
    pub host: &'a [u8],
    /// The program, e.g. `postfix/submission/smtpd` (without the PID).
    pub program: &'a [u8],
    /// The message.
    pub message: &'a [u8],
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

/// Parses one line (without its newline). `years` places yearless syslog timestamps; `local` is
/// the server recorded for lines that name no host (Dovecot's own log file, `log_path`).
pub fn parse_line(line: &[u8], years: &YearContext, local: &[u8]) -> ParsedLine {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // NULs before a line are a hole a writer left (copytruncate without O_APPEND), not text.
    let nuls = line.iter().take_while(|&&b| b == 0).count();
    let line = &line[nuls..];
    let Some(mut entry) = header::split(line, years, local) else {
        return ParsedLine::once(unplaced(line));
    };
    match header::repeated(entry.message) {
        Repeat::No => ParsedLine::once(parse_entry(&entry)),
        Repeat::Of {
            times,
            capped,
            message,
        } => {
            entry.message = message;
            let parsed = parse_entry(&entry);
            let capped = capped && parsed != Parsed::NotFailure;
            ParsedLine {
                parsed,
                count: times,
                capped,
            }
        }
        Repeat::Broken(inner) => {
            entry.message = inner;
            ParsedLine::once(match parse_entry(&entry) {
                Parsed::NotFailure => Parsed::NotFailure,
                _ => Parsed::Unrecognised(
                    "rsyslog's `message repeated N times: [...]` is cut short or says 0 times: how many lines it stands for is unknown",
                ),
            })
        }
    }
}

/// Where the syslog host field is in `line` (a byte range), or `None` when the line has no
/// header this parser knows or names no host (Dovecot's own log file): what `anonymize`
/// replaces of the header, so that the rest of it stays byte for byte.
pub fn header_host(line: &[u8], years: &YearContext) -> Option<std::ops::Range<usize>> {
    let entry = header::split(line, years, b"")?;
    let start = (entry.host.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    let end = start + entry.host.len();
    (!entry.host.is_empty() && end <= line.len()).then_some(start..end)
}

/// A line without a header this parser knows: maybe a failure in a line form nobody told us
/// about. Say so rather than lose it.
fn unplaced(line: &[u8]) -> Parsed {
    let start = if line.starts_with(b"warning: ") {
        Some(0)
    } else {
        bytes::find(line, b" warning: ").map(|i| i + 1)
    };
    match start.map(|i| message::smtpd_failure(&line[i..])) {
        Some(Smtpd::Failure(_) | Smtpd::Unreadable(_)) => {
            Parsed::Unrecognised("no timestamp, host and program this parser knows")
        }
        _ => Parsed::NotFailure,
    }
}

/// Parses a log entry's program and message: smtpd's failure line, or the SMTP/LMTP client's
/// failure to log in to a relay.
pub fn parse_entry(entry: &Entry<'_>) -> Parsed {
    if dovecot::is_dovecot(entry.program) {
        return dovecot_entry(entry);
    }
    let smtpd = message::is_smtpd(entry.program);
    match message::smtpd_failure(entry.message) {
        Smtpd::Failure(m) if smtpd => {
            if is_backend_reason(&text(m.reason)) {
                return Parsed::Backend(BackendFailure {
                    timestamp: entry.timestamp,
                    service: owned(entry.program),
                    kind: BackendKind::AuthServer { client: m.ip },
                    reason: owned(m.reason),
                });
            }
            Parsed::Failure(AuthEvent {
                timestamp: entry.timestamp,
                server: compact(entry.host),
                service: compact(entry.program),
                ip: m.ip,
                username: m.username.map(compact),
                mechanism: upper(m.mechanism),
                reason: compact(m.reason),
                client_hostname: (m.name != b"unknown").then(|| compact(m.name)),
            })
        }
        Smtpd::Unreadable(why) if smtpd => Parsed::Unrecognised(why),
        Smtpd::Failure(_) | Smtpd::Unreadable(_) => {
            Parsed::Unrecognised("SASL failure logged by a program other than smtpd")
        }
        Smtpd::No if smtpd => match message::smtpd_login(entry.message) {
            Some(l) => Parsed::Login(AuthEvent {
                timestamp: entry.timestamp,
                server: compact(entry.host),
                service: compact(entry.program),
                ip: l.ip,
                username: (!l.username.is_empty()).then(|| compact(l.username)),
                mechanism: upper(l.mechanism),
                reason: Text::default(),
                client_hostname: (l.name != b"unknown").then(|| compact(l.name)),
            }),
            None => Parsed::NotFailure,
        },
        Smtpd::No if message::is_smtp_client(entry.program) => {
            match message::relay_failure(entry.message) {
                Some(r) => Parsed::Backend(BackendFailure {
                    timestamp: entry.timestamp,
                    service: owned(entry.program),
                    kind: BackendKind::Relay {
                        server: owned(r.server),
                    },
                    reason: owned(r.reason),
                }),
                None => Parsed::NotFailure,
            }
        }
        Smtpd::No => Parsed::NotFailure,
    }
}

/// A Dovecot entry: a login process's failure summary or login, a counted line, or an error
/// of its authentication side.
fn dovecot_entry(entry: &Entry<'_>) -> Parsed {
    let event = |c: dovecot::Client<'_>, reason: &[u8]| {
        let mut service = Text::const_new("dovecot/");
        service.push_str(&text(c.service));
        AuthEvent {
            timestamp: entry.timestamp,
            server: compact(entry.host),
            service,
            ip: c.ip,
            username: c.username.map(compact),
            mechanism: upper(c.mechanism),
            reason: compact(reason),
            client_hostname: None,
        }
    };
    match dovecot::message(entry.message) {
        dovecot::Dovecot::Failure(c, reason) => Parsed::Failure(event(c, reason)),
        dovecot::Dovecot::Login(c) => Parsed::Login(event(c, b"")),
        dovecot::Dovecot::NoAttempts => Parsed::Counted(Counted::NoAuthAttempts),
        dovecot::Dovecot::PlaintextRefused => Parsed::Counted(Counted::PlaintextRefused),
        dovecot::Dovecot::Backend(reason, client) => Parsed::Backend(BackendFailure {
            timestamp: entry.timestamp,
            service: owned(entry.program),
            kind: BackendKind::AuthProcess { client },
            reason: owned(reason),
        }),
        dovecot::Dovecot::Verdict(v) => Parsed::Verdict(AuthVerdict {
            timestamp: entry.timestamp,
            ip: v.ip,
            username: owned(v.username),
            known_user: v.known_user,
        }),
        dovecot::Dovecot::Unreadable(why) => Parsed::Unrecognised(why),
        dovecot::Dovecot::No => Parsed::NotFailure,
    }
}

/// Finds candidate lines in blocks of complete lines and parses them. Holds the compiled
/// prefilter; one per reader.
#[derive(Debug, Clone)]
pub struct Parser {
    prefilter: Prefilter,
    max_line_bytes: usize,
    local: Box<[u8]>,
}

/// A parsed candidate line with where it was found.
#[derive(Debug)]
pub struct Found {
    /// What the line is.
    pub parsed: Parsed,
    /// How many log lines it stands for ([`ParsedLine::count`]).
    pub count: u32,
    /// Whether that count was capped ([`ParsedLine::capped`]).
    pub capped: bool,
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
    /// A parser that skips candidate lines longer than `max_line_bytes` and records `local` as
    /// the server of lines that name no host (`[sources] server`).
    pub fn new(max_line_bytes: usize, local: &str) -> Self {
        Parser {
            prefilter: Prefilter::default(),
            max_line_bytes,
            local: local.as_bytes().into(),
        }
    }

    /// Scans `block`, a run of whole lines (the last may lack its newline at end of input)
    /// starting at input offset `base_offset` and line number `base_line + 1`, and calls
    /// `found` for each candidate line, parsed. Returns the block's line count.
    pub fn scan_block(
        &self,
        block: &[u8],
        base_offset: u64,
        base_line: u64,
        years: &YearContext,
        mut found: impl FnMut(Found),
    ) -> BlockCounts {
        self.candidates(block, base_offset, base_line, |c| {
            found(self.parse(c, years));
        })
    }

    /// The prefilter's half of [`scan_block`](Self::scan_block): calls `found` for each
    /// candidate line, unparsed (lines over the length limit are counted instead). A reader
    /// can hand candidates to another thread to [`parse`](Self::parse).
    pub fn candidates(
        &self,
        block: &[u8],
        base_offset: u64,
        base_line: u64,
        mut found: impl FnMut(Candidate<'_>),
    ) -> BlockCounts {
        let mut counts = BlockCounts::default();
        let mut pos = 0;
        let mut lines_before = 0u64;
        let mut hits = self.prefilter.hits(block);
        while let Some(hit) = hits.first_from(pos) {
            let start = memchr::memrchr(b'\n', &block[pos..hit]).map_or(pos, |i| pos + i + 1);
            let end = memchr::memchr(b'\n', &block[hit..]).map_or(block.len(), |i| hit + i);
            lines_before += bytecount::count(&block[pos..start], b'\n') as u64;
            let line = &block[start..end];
            let next = (end + 1).min(block.len());
            if line.len() > self.max_line_bytes {
                counts.too_long += 1;
            } else {
                found(Candidate {
                    line,
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

    /// Parses a candidate line found by [`candidates`](Self::candidates).
    pub fn parse(&self, candidate: Candidate<'_>, years: &YearContext) -> Found {
        let ParsedLine {
            parsed,
            count,
            capped,
        } = parse_line(candidate.line, years, &self.local);
        Found {
            parsed,
            count,
            capped,
            line_number: candidate.line_number,
            end_offset: candidate.end_offset,
        }
    }
}

/// A line the prefilter found, not parsed yet.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The line, without its newline.
    pub line: &'a [u8],
    /// 1-based line number within the input.
    pub line_number: u64,
    /// Byte offset just past the line's newline within the input.
    pub end_offset: u64,
}

fn is_backend_reason(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    BACKEND_REASONS.iter().any(|r| lower.contains(r))
}

/// Log bytes as text: invalid UTF-8 is replaced by U+FFFD, never dropped.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// [`text`] as a [`Text`] (see [`owned`]).
fn compact(bytes: &[u8]) -> Text {
    match std::str::from_utf8(bytes) {
        Ok(s) => Text::new(s),
        Err(_) => Text::from(String::from_utf8_lossy(bytes)),
    }
}

/// [`compact`] in upper case (a SASL mechanism).
fn upper(bytes: &[u8]) -> Text {
    let mut t = compact(bytes);
    t.make_ascii_uppercase();
    t
}

/// [`text`] as a `String`. Log text is nearly always valid UTF-8: checking it whole and copying
/// it costs a third of going through `from_utf8_lossy`'s chunks.
fn owned(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests;
