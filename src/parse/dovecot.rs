//! Dovecot's login processes' summary lines, read after the syslog header (program `dovecot`,
//! message `imap-login: ...`): the one line each connection ends with, which says how many
//! authentication attempts failed.
//!
//! ```text
//! imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<U>, method=PLAIN, rip=IP, lip=IP, TLS, session=<ID>
//! pop3-login: Aborted login (auth failed, 3 attempts in 10 secs): user=<U>, method=PLAIN, rip=IP, lip=IP, session=<ID>
//! imap-login: Disconnected: Connection closed (auth failed, 1 attempts in 4 secs): user=<U>, ...
//! imap-login: Login aborted: Connection closed (auth failed, 1 attempts in 2 secs) (auth_failed): user=<U>, ...   (2.4)
//! ```
//!
//! The username is the client's text and may hold anything (`>`, `, rip=`, quotes), so nothing
//! is read from it: the summary is what comes before the first `: user=<`, and the address and
//! mechanism are the server's last `rip=` and the `method=` before it; the username is what
//! lies between `user=<` and that `>, method=` (or `>, rip=`). Nothing here allocates.

use std::net::IpAddr;

use memchr::memmem;

/// A login process's summary of a connection whose authentication failed.
pub(super) struct DovecotFailure<'a> {
    /// The login process: `imap-login`, `pop3-login`, `managesieve-login`, `submission-login`.
    pub service: &'a [u8],
    /// Dovecot's words, e.g. `auth failed, 3 attempts in 10 secs`.
    pub reason: &'a [u8],
    /// The username the client sent (`None` when Dovecot logged none, or `<>`).
    pub username: Option<&'a [u8]>,
    /// The mechanism (`method=`), empty when not logged.
    pub mechanism: &'a [u8],
    /// The client address (`rip=`).
    pub ip: IpAddr,
}

/// What a Dovecot message is to the failure check.
pub(super) enum Dovecot<'a> {
    /// Not a login process's failure summary.
    No,
    /// A failure summary.
    Failure(DovecotFailure<'a>),
    /// A failure summary whose address cannot be read (why).
    Unreadable(&'static str),
}

/// Whether `program` is Dovecot as syslog names it (`dovecot`, or `dovecot/...` from a Dovecot
/// whose `syslog_facility` programs are named after the process).
pub(super) fn is_dovecot(program: &[u8]) -> bool {
    program == b"dovecot" || program.starts_with(b"dovecot/")
}

/// `SERVICE-login: (Info: )?SUMMARY (auth failed, ...)...: FIELDS`
pub(super) fn failure(msg: &[u8]) -> Dovecot<'_> {
    let Some(colon) = memmem::find(msg, b": ") else {
        return Dovecot::No;
    };
    let service = &msg[..colon];
    if !is_login_service(service) {
        return Dovecot::No;
    }
    failure_of(service, &msg[colon + 2..])
}

/// A login process's name: `imap-login`, `pop3-login`, ...
pub(super) fn is_login_service(service: &[u8]) -> bool {
    service.ends_with(b"-login")
        && service
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The message after `SERVICE: `.
pub(super) fn failure_of<'a>(service: &'a [u8], mut rest: &'a [u8]) -> Dovecot<'a> {
    if let Some(r) = rest.strip_prefix(b"Info: ") {
        rest = r;
    }
    // The server's summary ends where the fields begin; the client's text comes after.
    let fields_at = memmem::find(rest, b": user=<")
        .or_else(|| memmem::find(rest, b": method="))
        .or_else(|| memmem::find(rest, b": rip="));
    let Some(fields_at) = fields_at else {
        return Dovecot::No;
    };
    let summary = &rest[..fields_at];
    let Some(open) = memmem::find(summary, b"(auth failed") else {
        return Dovecot::No;
    };
    let Some(close) = memchr::memchr(b')', &summary[open..]) else {
        return Dovecot::No;
    };
    let reason = &summary[open + 1..open + close];
    let fields = &rest[fields_at + 2..];
    // The server's fields after the client's username: the last `rip=`, the `method=` before.
    let Some(rip_at) = field_at(fields, b"rip=", fields.len()) else {
        return Dovecot::Unreadable("Dovecot's summary has no rip= (client address) field");
    };
    let ip_text = value(&fields[rip_at + 4..]);
    let Some(ip) = parse_ip(ip_text) else {
        return Dovecot::Unreadable("Dovecot's rip= field is not an IP address");
    };
    // `method=M, rip=`: the method field right before the address (one further back would be
    // inside the username, the client's text).
    let method_at = field_at(fields, b"method=", rip_at).filter(|&m| {
        let v = value(&fields[m + 7..]);
        m + 7 + v.len() + 2 == rip_at && is_mechanism(v)
    });
    let mechanism = method_at.map_or(&b""[..], |m| value(&fields[m + 7..]));
    let user_end = method_at.unwrap_or(rip_at);
    let username = fields
        .strip_prefix(b"user=<")
        .and_then(|_| {
            // `user=<U>, ` then the next field at `user_end`.
            let end = user_end.checked_sub(3)?;
            (end >= 6 && &fields[end..user_end] == b">, ").then(|| &fields[6..end])
        })
        .filter(|u| !u.is_empty());
    Dovecot::Failure(DovecotFailure {
        service,
        reason,
        username,
        mechanism,
        ip,
    })
}

/// Where the last field `name` (`rip=`, `method=`) starts before `before`: at the start of the
/// fields or after `, ` (an occurrence inside another value, as in `xrip=`, is passed over).
fn field_at(fields: &[u8], name: &[u8], before: usize) -> Option<usize> {
    let mut end = before;
    while let Some(i) = memmem::rfind(&fields[..end], name) {
        if i == 0 || fields[..i].ends_with(b", ") {
            return Some(i);
        }
        end = i;
    }
    None
}

/// A SASL mechanism name as Dovecot logs one of its own: letters, digits, `-` and `_`.
fn is_mechanism(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A field's value: up to the next `, ` (or the end).
fn value(s: &[u8]) -> &[u8] {
    memmem::find(s, b", ").map_or(s, |i| &s[..i])
}

/// An address as Dovecot writes it; IPv4-mapped IPv6 as the IPv4 address.
fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    let ip: IpAddr = std::str::from_utf8(s).ok()?.parse().ok()?;
    Some(ip.to_canonical())
}
