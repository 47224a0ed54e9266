//! `maillogsentinel anonymize`: a mail log made safe to share in a bug report.
//!
//! Addresses, host names, usernames, mail addresses and Dovecot's session ids (which encode
//! the client's address) are replaced, consistently within a run:
//! each is keyed through HMAC-SHA-256 with a secret drawn for the run (and never written), so
//! the same input always gives the same output within the run, and no replacement can be turned
//! back into what it replaced without the secret. IPv4 addresses become addresses of the documentation
//! ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24: 762 of them, each given once, never
//! to itself; past that, 198.18.0.0/15 and then 240.0.0.0/4, and the summary says so), IPv6
//! addresses become addresses of 2001:db8::/32 (addresses of one /64 stay in one /64), loopback and unspecified
//! addresses stay. Everything else in a line stays byte for byte, so its form is kept.
//!
//! The original tool's anonymizer broke the format it wrote. This one checks each line: it
//! parses the original and the rewritten line and compares what `scan` would record (the same
//! kind of line, the same time, service, mechanism, and the replaced address, username, server
//! and client name). A line that does not match is left out of the output and counted, never
//! written half-anonymized.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::LazyLock;

use regex::bytes::Regex;

use crate::parse::{self, AuthEvent, Parsed, ParsedLine, YearContext};

/// How a run went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Lines read.
    pub lines: u64,
    /// Lines written (all but those left out).
    pub written: u64,
    /// Lines left out: their rewritten form would not have been recorded as the original
    /// (their line numbers, the first few, are in `left_out_lines`).
    pub left_out: u64,
    /// The first lines left out (1-based).
    pub left_out_lines: Vec<u64>,
    /// Distinct IPv4 addresses replaced.
    pub ipv4: usize,
    /// Distinct IPv6 addresses replaced.
    pub ipv6: usize,
    /// Distinct host names replaced.
    pub hosts: usize,
    /// Distinct usernames (and mail address local parts) replaced.
    pub users: usize,
    /// More IPv4 addresses than the documentation ranges hold: the next went to 198.18.0.0/15.
    pub beyond_documentation: bool,
    /// More than that range holds too: the rest went to 240.0.0.0/4.
    pub beyond_benchmarking: bool,
}

/// The documentation ranges (RFC 5737), without their network and broadcast addresses.
const DOC_V4: [[u8; 3]; 3] = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];

/// Where IPv4 replacements come from, in order, each `(slots, the nth address)`: the
/// documentation ranges (762), then RFC 2544's benchmarking range 198.18.0.0/15 (131,072),
/// then 240.0.0.0/4, reserved and never routed (268 million), so that every address of even
/// a large log gets one of its own.
#[allow(clippy::type_complexity)]
const V4_TIERS: [(u32, fn(u32) -> Ipv4Addr); 3] = [
    (3 * 254, |i| {
        let [a, b, c] = DOC_V4[(i / 254) as usize];
        Ipv4Addr::new(a, b, c, (i % 254 + 1) as u8)
    }),
    (1 << 17, |i| Ipv4Addr::from(0xc612_0000 + i)),
    ((1 << 28) - 1, |i| Ipv4Addr::from(0xf000_0000 + i)),
];

/// Replaces what identifies people and hosts in log lines; one per run.
pub struct Anonymizer {
    key: ring::hmac::Key,
    years: YearContext,
    v4: HashMap<Ipv4Addr, Ipv4Addr>,
    v4_taken: HashSet<Ipv4Addr>,
    v4_used: [u32; 3],
    v6: HashMap<Ipv6Addr, Ipv6Addr>,
    hosts: HashMap<Vec<u8>, String>,
    users: HashMap<Vec<u8>, String>,
    summary: Summary,
}

impl Anonymizer {
    /// With a secret drawn from the system's random source.
    pub fn new() -> Result<Self, ring::error::Unspecified> {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)?;
        Ok(Self::with_key(key))
    }

    /// With a given key (tests: a fixed key gives a fixed output).
    pub fn with_key(key: ring::hmac::Key) -> Self {
        Anonymizer {
            key,
            // Only the header's shape matters here: both forms of a line are placed alike.
            years: YearContext::at_naive(chrono::NaiveDateTime::default()),
            v4: HashMap::new(),
            v4_taken: HashSet::new(),
            v4_used: [0; 3],
            v6: HashMap::new(),
            hosts: HashMap::new(),
            users: HashMap::new(),
            summary: Summary::default(),
        }
    }

    /// The counts so far.
    pub fn summary(&self) -> Summary {
        let mut s = self.summary.clone();
        s.ipv4 = self.v4.len();
        s.ipv6 = self.v6.len();
        s.hosts = self.hosts.len();
        s.users = self.users.len();
        s
    }

    fn mac(&self, kind: &[u8], data: &[u8]) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(kind);
        ctx.update(&[0]);
        ctx.update(data);
        let mut out = [0; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn tag(&self, kind: &[u8], data: &[u8]) -> String {
        let m = self.mac(kind, data);
        // 48 bits: two of a million names share one by chance once in about 500 runs.
        m[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A username (or a mail address given as one).
    fn user(&mut self, name: &[u8]) -> String {
        if name.is_empty() {
            return String::new();
        }
        if let Some(at) = memchr::memrchr(b'@', name)
            && at > 0
            && at + 1 < name.len()
        {
            let local = self.user(&name[..at]);
            let domain = self.host(&name[at + 1..]);
            return format!("{local}@{domain}");
        }
        if let Some(u) = self.users.get(name) {
            return u.clone();
        }
        let u = format!("user-{}", self.tag(b"user", name));
        self.users.insert(name.to_vec(), u.clone());
        u
    }

    /// A host name: `h` and a tag, under `.example` when it had a domain.
    fn host(&mut self, name: &[u8]) -> String {
        if name.is_empty() {
            return String::new();
        }
        let lower = name.to_ascii_lowercase();
        if let Some(h) = self.hosts.get(&lower) {
            return h.clone();
        }
        let tag = self.tag(b"host", &lower);
        let h = if lower.contains(&b'.') {
            format!("h{tag}.example")
        } else {
            format!("h{tag}")
        };
        self.hosts.insert(lower, h.clone());
        h
    }

    /// An address: loopback and unspecified stay, IPv4-mapped IPv6 keeps its form.
    pub fn ip(&mut self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => IpAddr::V4(self.v4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V6(self.v4(v4).to_ipv6_mapped()),
                None => IpAddr::V6(self.v6(v6)),
            },
        }
    }

    fn v4(&mut self, ip: Ipv4Addr) -> Ipv4Addr {
        if ip.is_loopback() || ip.is_unspecified() {
            return ip;
        }
        if let Some(a) = self.v4.get(&ip) {
            return *a;
        }
        let m = self.mac(b"ipv4", &ip.octets());
        let start = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
        // The first range with room, probed from a keyed start; a full range is skipped at
        // once (counted), so that a log of a million addresses costs no more per address.
        let mut free = None;
        for (tier, &(slots, at)) in V4_TIERS.iter().enumerate() {
            if self.v4_used[tier] >= slots {
                continue;
            }
            free = (0..slots)
                .map(|k| at((start % slots + k) % slots))
                .find(|a| !self.v4_taken.contains(a) && *a != ip);
            if free.is_some() {
                self.v4_used[tier] += 1;
                self.summary.beyond_documentation |= tier >= 1;
                self.summary.beyond_benchmarking |= tier >= 2;
                break;
            }
        }
        // Past 268 million distinct addresses, two may share one (still consistent).
        let free = free.unwrap_or_else(|| (V4_TIERS[2].1)(start % V4_TIERS[2].0));
        self.v4_taken.insert(free);
        self.v4.insert(ip, free);
        free
    }

    fn v6(&mut self, ip: Ipv6Addr) -> Ipv6Addr {
        if ip.is_loopback() || ip.is_unspecified() {
            return ip;
        }
        if let Some(a) = self.v6.get(&ip) {
            return *a;
        }
        let o = ip.octets();
        // The /64 and the interface separately, so that one network stays one network.
        let net = self.mac(b"ipv6-net", &o[..8]);
        let host = self.mac(b"ipv6-host", &o);
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        out[4..8].copy_from_slice(&net[..4]);
        out[8..].copy_from_slice(&host[..8]);
        let a = Ipv6Addr::from(out);
        self.v6.insert(ip, a);
        a
    }

    /// Rewrites one line (without its newline), or `None` when the rewritten line would not
    /// be recorded as the original is (it is then left out, and counted).
    pub fn line(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        let original = parse::parse_line(line, &self.years, b"");
        // What to replace, in order of precedence (see `apply`); replacements are made only
        // for the edits kept.
        let mut edits: Vec<(Range<usize>, Repl)> = Vec::new();
        let mut body = 0;
        let mut server: &[u8] = b"";
        if let Some(r) = parse::header_host(line, &self.years) {
            body = r.end;
            server = &line[r.clone()];
            edits.push((r, Repl::Host));
        }
        let text = &line[body..];
        let at = |r: Range<usize>| r.start + body..r.end + body;
        // The username the parser reads, and the server's name, wherever they stand as a
        // value of their own.
        if let Some(user) = username_of(&original.parsed).filter(|u| !u.is_empty()) {
            edits.extend(delimited(text, user.as_bytes()).map(|r| (at(r), Repl::User)));
        }
        if !server.is_empty() {
            edits.extend(delimited(text, server).map(|r| (at(r), Repl::Host)));
        }
        for (pattern, repls) in FIELDS.iter() {
            for c in pattern.captures_iter(text) {
                for (m, repl) in c.iter().skip(1).zip(repls.iter()) {
                    // (Postfix writes `(unavailable)` for a username it did not get: not a
                    // name; all digits in `name(...)` are a process id.)
                    if let Some(m) = m.filter(|m| {
                        !m.is_empty()
                            && m.as_bytes() != b"(unavailable)"
                            && !m.as_bytes().iter().all(u8::is_ascii_digit)
                    }) {
                        edits.push((at(m.range()), *repl));
                    }
                }
            }
        }
        for m in MAIL.find_iter(text) {
            edits.push((at(m.range()), Repl::User));
        }
        edits.extend(ipv6_in(text).into_iter().map(|r| (at(r), Repl::Ip)));
        for m in IPV4.find_iter(text) {
            if ipv4_bounded(text, m.start(), m.end()) {
                edits.push((at(m.range()), Repl::Ip));
            }
        }
        for m in HOST.find_iter(text) {
            if bounded(text, m.start(), m.end(), b".@-") {
                edits.push((at(m.range()), Repl::Host));
            }
        }
        let out = self.apply(line, edits);
        let rewritten = parse::parse_line(&out, &self.years, b"");
        self.recorded_alike(&original, &rewritten).then_some(out)
    }

    /// Applies edits, given in order of precedence (the header, the parsed username, the
    /// server's name, the fields, mail addresses, addresses, host names): one that overlaps an
    /// edit before it is dropped, so `sasl_username=info@example.org` is one username, not a
    /// mail address `sasl_username=info@...`.
    fn apply(&mut self, line: &[u8], edits: Vec<(Range<usize>, Repl)>) -> Vec<u8> {
        let mut kept: Vec<(Range<usize>, Repl)> = Vec::with_capacity(edits.len());
        for (r, repl) in edits {
            if kept
                .iter()
                .all(|(k, _)| r.end <= k.start || k.end <= r.start)
            {
                kept.push((r, repl));
            }
        }
        kept.sort_by_key(|(r, _)| r.start);
        let mut out = Vec::with_capacity(line.len() + 32);
        let mut at = 0;
        for (r, repl) in kept {
            out.extend_from_slice(&line[at..r.start]);
            let was = &line[r.clone()];
            let with = match repl {
                Repl::User => self.user(was),
                Repl::Host => self.host(was),
                Repl::Session => self.session(was),
                Repl::Ip => match parse_str::<IpAddr>(was) {
                    Some(ip) => self.ip(ip).to_string(),
                    None => String::from_utf8_lossy(was).into_owned(),
                },
            };
            out.extend_from_slice(with.as_bytes());
            at = r.end;
        }
        out.extend_from_slice(&line[at..]);
        out
    }

    /// A Dovecot session id: base64 of a time, the client's port and its address, so it is
    /// replaced whole, by keyed base64 of the same length.
    fn session(&self, was: &[u8]) -> String {
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(was.len());
        let mut block = 0u32;
        while out.len() < was.len() {
            let m = self.mac(b"session", &[was, &block.to_be_bytes()].concat());
            for b in m {
                if out.len() == was.len() {
                    break;
                }
                out.push(B64[(b & 63) as usize] as char);
            }
            block += 1;
        }
        out
    }

    /// Whether `scan` records the rewritten line (`new`) as it records the original (`old`),
    /// with the replacements.
    fn recorded_alike(&mut self, old: &ParsedLine, new: &ParsedLine) -> bool {
        if (old.count, old.capped) != (new.count, new.capped) {
            return false;
        }
        match (&old.parsed, &new.parsed) {
            (Parsed::Failure(a), Parsed::Failure(b)) | (Parsed::Login(a), Parsed::Login(b)) => {
                self.event(a) == *b
            }
            (Parsed::Verdict(a), Parsed::Verdict(b)) => {
                let mut a = a.clone();
                a.ip = self.ip(a.ip);
                a.username = self.user(a.username.as_bytes());
                a == *b
            }
            // Its reason may name the server it could not reach: the kind and time are kept.
            (Parsed::Backend(a), Parsed::Backend(b)) => {
                a.timestamp == b.timestamp
                    && a.service == b.service
                    && a.kind.as_str() == b.kind.as_str()
            }
            (a, b) => a == b,
        }
    }

    fn event(&mut self, e: &AuthEvent) -> AuthEvent {
        let mut e = e.clone();
        e.server = self.host(e.server.as_bytes()).into();
        // (The parser gives IPv4-mapped addresses as IPv4, and `ip` maps IPv4 to IPv4.)
        e.ip = self.ip(e.ip);
        e.username = e.username.as_ref().map(|u| self.user(u.as_bytes()).into());
        e.client_hostname = e
            .client_hostname
            .as_ref()
            .map(|h| self.host(h.as_bytes()).into());
        e
    }
}

/// Reads `input` line by line and writes the anonymized lines to `output`.
pub fn run(
    anonymizer: &mut Anonymizer,
    input: impl BufRead,
    mut output: impl Write,
) -> io::Result<Summary> {
    let mut input = input;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        anonymizer.summary.lines += 1;
        let (line, end): (&[u8], &[u8]) = match buf.strip_suffix(b"\n") {
            Some(l) => (l, b"\n"),
            None => (&buf, b""),
        };
        match anonymizer.line(line) {
            Some(out) => {
                output.write_all(&out)?;
                output.write_all(end)?;
                anonymizer.summary.written += 1;
            }
            None => {
                anonymizer.summary.left_out += 1;
                if anonymizer.summary.left_out_lines.len() < 10 {
                    let n = anonymizer.summary.lines;
                    anonymizer.summary.left_out_lines.push(n);
                }
            }
        }
    }
    output.flush()?;
    Ok(anonymizer.summary())
}

fn username_of(p: &Parsed) -> Option<&str> {
    match p {
        Parsed::Failure(e) | Parsed::Login(e) => e.username.as_deref(),
        Parsed::Verdict(v) => Some(&v.username),
        _ => None,
    }
}

/// Values that name someone whatever the line, each pattern with what its groups are:
/// Postfix's `sasl_username=` (to the end of the line, or a following `, sasl_sender=`),
/// `sasl_sender=`, the envelope's `from=<...>`, `to=<...>`, `orig_to=<...>`, any `<LOCAL@HOST>`,
/// the client's `helo=<...>`; Dovecot's `user=<...>`, a process's `imap(USER)`,
/// `pam(USER,...)`, `passwd-file(USER,...)`, and its session ids (`session=<...>`, `<SESSION>`
/// after a process's name), which carry the client's address and port.
#[allow(clippy::type_complexity)]
static FIELDS: LazyLock<Vec<(Regex, &'static [Repl])>> = LazyLock::new(|| {
    let r = |p: &str| Regex::new(p).expect("a valid pattern");
    vec![
        (
            r(r"sasl_username=(.*?)(?:, sasl_sender=|\r?$)"),
            &[Repl::User],
        ),
        (r(r"sasl_sender=([^,\s]*)"), &[Repl::User]),
        (r(r"\b(?:from|to|orig_to)=<([^>]*)>"), &[Repl::User]),
        (r(r"<([^<>@\s]+@[^<>@\s]+)>"), &[Repl::User]),
        (r(r"\bhelo=<([^>\[]*)>"), &[Repl::Host]),
        (r(r"\buser=<([^>]*)>"), &[Repl::User]),
        (r(r"session=<([^>]*)>"), &[Repl::Session]),
        (
            r(
                r"\b[a-z][a-z0-9_-]*\(([^,()<>]+)(?:,[^,()]*,<([A-Za-z0-9+/]+)>\)|\)<\d+><([A-Za-z0-9+/]+)>|,|\))",
            ),
            &[Repl::User, Repl::Session, Repl::Session],
        ),
    ]
});
static MAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+=-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+").expect("a valid pattern")
});
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}").expect("a valid pattern"));
/// A name of two labels or more whose last is a word (`mail.example.org`, not `2.0.0`).
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}",
    )
    .expect("a valid pattern")
});

/// What an edit puts in place of the text it covers.
#[derive(Debug, Clone, Copy)]
enum Repl {
    User,
    Host,
    Ip,
    Session,
}

/// The IPv6 addresses in `text`: each run of hex digits, colons and dots, trimmed of the `:`
/// and `.` that end a sentence or a field (`2001:db8::1: address not listed`), and of a word
/// before a colon that is no part of it (`IPv6:2001:db8::1`, `smtp:2001:db8::1`).
fn ipv6_in(text: &[u8]) -> Vec<Range<usize>> {
    let part = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
    let mut found = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !part(text[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && part(text[i]) {
            i += 1;
        }
        let mut end = i;
        while end > start && matches!(text[end - 1], b':' | b'.') {
            end -= 1;
        }
        // Where the run starts inside a word (`IPv6:`, `smtp:`), only from after a colon.
        let inside_word =
            start > 0 && (text[start - 1].is_ascii_alphanumeric() || text[start - 1] == b'_');
        let mut from = start;
        loop {
            let candidate = &text[from..end];
            let valid = (!inside_word || from > start)
                && candidate.iter().filter(|&&b| b == b':').count() >= 2
                && parse_str::<Ipv6Addr>(candidate).is_some();
            if valid {
                found.push(from..end);
                break;
            }
            match memchr::memchr(b':', &text[from..end]) {
                Some(c) if from + c + 1 < end => from += c + 1,
                _ => break,
            }
        }
    }
    found
}

/// An IPv4 address as a token of its own: not inside a longer number or dotted run (a
/// version such as `v2.3.19.1`), but it may end a sentence.
fn ipv4_bounded(text: &[u8], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).map(|i| text[i]);
    let joins_before = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
    let after = text.get(end).copied();
    let continues = match after {
        Some(b'.') => text.get(end + 1).is_some_and(u8::is_ascii_alphanumeric),
        Some(b) => b.is_ascii_alphanumeric() || b == b'_',
        None => false,
    };
    !before.is_some_and(joins_before) && !continues
}

fn parse_str<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Whether `text[start..end]` is a token of its own: not part of a longer word or of a
/// longer dotted or colon'd run (`also` are the separators that would continue it).
fn bounded(text: &[u8], start: usize, end: usize, also: &[u8]) -> bool {
    let joins = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || also.contains(&b);
    let before = start.checked_sub(1).map(|i| text[i]);
    let after = text.get(end).copied();
    !before.is_some_and(joins) && !after.is_some_and(joins)
}

/// Where `needle` stands in `text` as a value of its own: after `=`, `<`, `(`, `[`, `,` or a
/// space, and before `>`, `)`, `]`, `,`, a space or the end.
fn delimited<'a>(text: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = Range<usize>> + 'a {
    memchr::memmem::find_iter(text, needle).filter_map(move |at| {
        let end = at + needle.len();
        let before = at.checked_sub(1).map(|i| text[i]);
        let after = text.get(end).copied();
        let opens = before.is_none_or(|b| b"=<([, ".contains(&b));
        let closes = after.is_none_or(|b| b">)], \r".contains(&b));
        (opens && closes).then_some(at..end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> Anonymizer {
        Anonymizer::with_key(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test key"))
    }

    fn line(a: &mut Anonymizer, l: &str) -> String {
        String::from_utf8(a.line(l.as_bytes()).expect("kept")).unwrap()
    }

    #[test]
    fn the_same_input_gets_the_same_replacement_and_loopback_stays() {
        let mut a = fixed();
        let l = "Nov 22 08:00:01 mx postfix/smtpd[1]: warning: host.example.net[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=alice@example.org";
        let one = line(&mut a, l);
        assert_eq!(one, line(&mut a, l));
        for gone in [
            "203.0.113.7",
            "host.example.net",
            "alice",
            "example.org",
            " mx ",
        ] {
            assert!(!one.contains(gone), "{gone} in {one}");
        }
        // The form is kept: only the replaced spans differ.
        assert!(one.contains(" postfix/smtpd[1]: warning: h"), "{one}");
        assert!(
            one.contains("]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=user-"),
            "{one}"
        );
        assert_eq!(
            a.ip("127.0.0.1".parse().unwrap()),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            a.ip("::1".parse().unwrap()),
            "::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv4_goes_to_the_documentation_ranges_once_each_and_ipv6_keeps_its_networks() {
        let mut a = fixed();
        let mut seen = HashSet::new();
        for i in 0..762u32 {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            let IpAddr::V4(new) = a.ip(IpAddr::V4(ip)) else {
                panic!()
            };
            let o = new.octets();
            assert!(
                DOC_V4.contains(&[o[0], o[1], o[2]]) && o[3] != 0 && o[3] != 255,
                "{new}"
            );
            assert!(seen.insert(new), "{new} given twice");
        }
        assert!(!a.summary().beyond_documentation);
        let IpAddr::V4(next) = a.ip("10.9.9.9".parse().unwrap()) else {
            panic!()
        };
        assert!(
            next.octets()[0] == 198 && next.octets()[1] & 0xfe == 18,
            "{next} is not in 198.18.0.0/15"
        );
        assert!(a.summary().beyond_documentation);
        let x = a.ip("2a01:4f8:1:2::10".parse().unwrap());
        let y = a.ip("2a01:4f8:1:2::20".parse().unwrap());
        let z = a.ip("2a01:4f8:1:3::10".parse().unwrap());
        let seg = |ip: IpAddr| match ip {
            IpAddr::V6(v) => v.segments(),
            IpAddr::V4(_) => panic!(),
        };
        assert_eq!(seg(x)[..2], [0x2001, 0x0db8]);
        assert_eq!(seg(x)[..4], seg(y)[..4], "one /64 stays one /64");
        assert_ne!(seg(x)[..4], seg(z)[..4]);
        assert_ne!(x, y);
        // IPv4-mapped IPv6 keeps its form, with the IPv4 address's replacement.
        let IpAddr::V4(v4) = a.ip("192.168.1.1".parse().unwrap()) else {
            panic!()
        };
        assert_eq!(
            a.ip("::ffff:192.168.1.1".parse().unwrap()),
            IpAddr::V6(v4.to_ipv6_mapped())
        );
    }

    #[test]
    fn a_username_field_is_one_name_even_when_it_looks_like_an_address() {
        let mut a = fixed();
        let out = a.apply(
            b"sasl_username=info@example.org",
            vec![(14..30, Repl::User), (0..30, Repl::User)],
        );
        assert!(out.starts_with(b"sasl_username=user-"), "{out:?}");
        // Postfix's placeholder for a username it did not get is not a name.
        let l = "Nov 22 08:02:12 mx postfix/smtpd[3]: warning: unknown[198.51.100.23]: SASL PLAIN authentication failed: x, sasl_username=(unavailable)";
        assert!(line(&mut a, l).ends_with("sasl_username=(unavailable)"));
    }

    #[test]
    fn version_numbers_and_times_are_not_addresses() {
        let mut a = fixed();
        let l = "Nov 22 08:00:00 mx dovecot[9]: master: Dovecot v2.3.19.1 (9f4e7bf1e6) starting up at 10:00:00 for TLSv1.3";
        let out = line(&mut a, l);
        assert!(
            out.ends_with(
                "master: Dovecot v2.3.19.1 (9f4e7bf1e6) starting up at 10:00:00 for TLSv1.3"
            ),
            "{out}"
        );
    }
}
