//! Postfix's messages about SASL logins, read after the syslog header: smtpd's line when a
//! client's login fails, smtpd's `client=` line for a message from a client that logged in, and
//! the SMTP/LMTP client's line when a server this one relays through refuses this server's own
//! credentials.
//!
//! Each check is anchored at the start of the message; nothing here allocates.

use std::net::IpAddr;

use super::bytes;

/// smtpd's failure line, its client part read.
pub(super) struct SmtpdFailure<'a> {
    /// The client name Postfix logged (`unknown` without a verified reverse name).
    pub name: &'a [u8],
    /// The client address.
    pub ip: IpAddr,
    /// The mechanism as the client sent it.
    pub mechanism: &'a [u8],
    /// The reason Postfix logged (may be empty).
    pub reason: &'a [u8],
    /// The username, when Postfix logged one other than `(unavailable)`.
    pub username: Option<&'a [u8]>,
}

/// What a message is to smtpd's failure check.
pub(super) enum Smtpd<'a> {
    /// Not smtpd's failure message.
    No,
    /// A failure.
    Failure(SmtpdFailure<'a>),
    /// The failure message, but its client part cannot be read (why).
    Unreadable(&'static str),
}

/// `warning: NAME[IP](:PORT)?: SASL MECH authentication failed(: REASON)?(, sasl_username=USER)?`
///
/// The client part is what lies between `warning: ` and the first `: SASL `. Postfix writes
/// it as `NAME[IP]`, `NAME` a verified hostname or `unknown` (no space or bracket inside); a
/// part that has the failure after it but does not read so is [`Smtpd::Unreadable`]. Text that
/// cannot be a client part at all (a space outside brackets, or `: ` inside, as in `warning:
/// non-SMTP command from unknown[192.0.2.1]: warning: unknown[...]: SASL ...`, where an attacker
/// wrote the rest) means the line is another warning: [`Smtpd::No`].
pub(super) fn smtpd_failure(msg: &[u8]) -> Smtpd<'_> {
    let Some(rest) = msg.strip_prefix(b"warning: ") else {
        return Smtpd::No;
    };
    let Some(at) = bytes::find(rest, b": SASL ") else {
        return Smtpd::No;
    };
    let client = &rest[..at];
    let Some(sasl) = sasl_failed(&rest[at + 2..]) else {
        return Smtpd::No;
    };
    if !is_client_shaped(client) {
        return Smtpd::No;
    }
    let (name, ip) = match read_client(client) {
        Ok(c) => c,
        Err(why) => return Smtpd::Unreadable(why),
    };
    Smtpd::Failure(SmtpdFailure {
        name,
        ip,
        mechanism: sasl.mechanism,
        reason: sasl.reason,
        username: sasl.username,
    })
}

/// One field, as a client part is: no `: ` inside, no space outside its brackets.
fn is_client_shaped(client: &[u8]) -> bool {
    if client.is_empty() || bytes::find(client, b": ").is_some() {
        return false;
    }
    let open = memchr::memchr(b'[', client).unwrap_or(client.len());
    let close = memchr::memrchr(b']', client).map_or(client.len(), |i| i + 1);
    !client[..open].contains(&b' ') && !client[close.max(open)..].contains(&b' ')
}

/// `NAME[IP](:PORT)?` as the name and the canonical address.
fn read_client(client: &[u8]) -> Result<(&[u8], IpAddr), &'static str> {
    const NOT_NAME_ADDR: &str = "client is not written as NAME[ADDRESS]";
    let open = memchr::memchr(b'[', client).ok_or(NOT_NAME_ADDR)?;
    let name = &client[..open];
    if name.is_empty() || name.contains(&b']') {
        return Err(NOT_NAME_ADDR);
    }
    let rest = &client[open + 1..];
    let close = memchr::memchr(b']', rest).ok_or(NOT_NAME_ADDR)?;
    // Optional `:PORT` (smtpd_client_port_logging = yes), then nothing.
    let after = &rest[close + 1..];
    let port_ok = after.is_empty()
        || after
            .strip_prefix(b":")
            .is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    if !port_ok {
        return Err(NOT_NAME_ADDR);
    }
    let ip = parse_ip(&rest[..close]).ok_or("client address is not an IP address")?;
    Ok((name, ip))
}

/// smtpd's line for a message submitted by a client that logged in.
pub(super) struct SmtpdLogin<'a> {
    /// The client name Postfix logged (`unknown` without a verified reverse name).
    pub name: &'a [u8],
    /// The client address.
    pub ip: IpAddr,
    /// The mechanism (`sasl_method=`).
    pub mechanism: &'a [u8],
    /// The username that logged in (`sasl_username=`).
    pub username: &'a [u8],
}

/// `QUEUEID: client=NAME[IP](:PORT)?, sasl_method=MECH, sasl_username=USER(, sasl_sender=S)?`
///
/// Postfix logs it once per message a client that logged in submits (not once per login: a
/// session that logs in and sends nothing leaves no such line). The username was accepted by
/// the server, but is still read as text: it runs to the end, or to a `, sasl_sender=` after it.
pub(super) fn smtpd_login(msg: &[u8]) -> Option<SmtpdLogin<'_>> {
    let colon = bytes::find(msg, b": client=")?;
    if !is_queue_id(&msg[..colon]) {
        return None;
    }
    let rest = &msg[colon + b": client=".len()..];
    let at = bytes::find(rest, b", sasl_method=")?;
    let client = &rest[..at];
    if !is_client_shaped(client) {
        return None;
    }
    let (name, ip) = read_client(client).ok()?;
    let rest = &rest[at + b", sasl_method=".len()..];
    let at = bytes::find(rest, b", sasl_username=")?;
    let mechanism = &rest[..at];
    if mechanism.is_empty() || !mechanism.iter().all(|b| b.is_ascii_graphic() && *b != b',') {
        return None;
    }
    let username = &rest[at + b", sasl_username=".len()..];
    // `sasl_sender=` is the client's `MAIL FROM ... AUTH=` text: the first one ends the
    // username (which the server accepted), whatever the client wrote after it.
    let username = bytes::find(username, b", sasl_sender=").map_or(username, |i| &username[..i]);
    Some(SmtpdLogin {
        name,
        ip,
        mechanism,
        username,
    })
}

/// The fields after the client part.
struct SaslFailed<'a> {
    mechanism: &'a [u8],
    reason: &'a [u8],
    username: Option<&'a [u8]>,
}

/// `SASL MECH authentication failed(: REASON)?(, sasl_username=USER)?`
fn sasl_failed(s: &[u8]) -> Option<SaslFailed<'_>> {
    let rest = s.strip_prefix(b"SASL ")?;
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
    let (reason, username) = match bytes::find(after, b", sasl_username=") {
        Some(i) => {
            let user = &after[i + b", sasl_username=".len()..];
            (
                &after[..i],
                (user != b"(unavailable)" && !user.is_empty()).then_some(user),
            )
        }
        None => (after, None),
    };
    Some(SaslFailed {
        mechanism,
        reason,
        username,
    })
}

fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(s).ok()?;
    // A link-local IPv6 address may carry a zone (`fe80::1%eth0`); the address is what counts.
    let s = s.split_once('%').map_or(s, |(addr, _)| addr);
    let ip: IpAddr = s.parse().ok()?;
    Some(ip.to_canonical())
}

/// The SMTP/LMTP client's failure to log in to a server it relays through.
pub(super) struct RelayFailure<'a> {
    /// The server as Postfix named it: `NAME[ADDR]`, or `NAME` for a cached failure.
    pub server: &'a [u8],
    /// Postfix's text, from `SASL` to its end (the queue ID and recipient left out).
    pub reason: &'a [u8],
}

/// The two lines Postfix's SMTP client (also as LMTP client) writes when its SASL login fails
/// (smtp_sasl_glue.c builds the text, smtp_trouble.c logs it):
///
/// ```text
/// QUEUEID: SASL authentication failed; server NAME[ADDR] said: 535 ...        (a backup server is tried next)
/// QUEUEID: to=<RCPT>, ..., dsn=4.7.8, status=deferred (SASL authentication failed; server NAME[ADDR] said: 535 ...)
/// ```
///
/// and the other texts of that failure in place of `server ... said: ...`: `SASL [CACHED]
/// authentication failed; server NAME said: ...` (smtp_sasl_auth_cache), `cannot authenticate
/// to server NAME[ADDR]: ...`, `authentication protocol loop with server NAME[ADDR]`,
/// `non-empty initial MECH challenge from server NAME[ADDR]: ...`, and `SASL authentication
/// failed: server NAME[ADDR] offered no compatible authentication mechanisms ...`.
pub(super) fn relay_failure(msg: &[u8]) -> Option<RelayFailure<'_>> {
    let colon = memchr::memchr(b':', msg)?;
    if !is_queue_id(&msg[..colon]) {
        return None;
    }
    let rest = msg[colon..].strip_prefix(b": ")?;
    let reason = match rest.strip_prefix(b"to=<") {
        Some(r) => {
            // The addresses come first and may be anything a sender wrote: step over them,
            // then take the status text, which ends the line in parentheses.
            let mut r = skip_address(r)?;
            if let Some(o) = r.strip_prefix(b", orig_to=<") {
                r = skip_address(o)?;
            }
            let at = bytes::find(r, b", status=")?;
            let r = &r[at + b", status=".len()..];
            let sp = memchr::memchr(b' ', r)?;
            r[sp..].strip_prefix(b" (")?.strip_suffix(b")")?
        }
        None => rest,
    };
    let server = relay_server(reason)?;
    Some(RelayFailure { server, reason })
}

/// What Postfix writes after `SASL authentication failed; ` (or `: `): the words before the
/// server and those right after it (empty: the text ends there). The mechanism in `non-empty
/// initial MECH challenge from server` is stepped over separately.
const RELAY_FORMS: [(&[u8], &[u8]); 5] = [
    (b"server ", b" said: "),
    (
        b"server ",
        b" offered no compatible authentication mechanisms",
    ),
    (b"cannot authenticate to server ", b": "),
    (b"authentication protocol loop with server ", b""),
    (b"challenge from server ", b": "),
];

/// The server named by a relay SASL failure text, or `None` when the text is not one.
fn relay_server(reason: &[u8]) -> Option<&[u8]> {
    let r = reason.strip_prefix(b"SASL ")?;
    let r = r.strip_prefix(b"[CACHED] ").unwrap_or(r);
    let r = r.strip_prefix(b"authentication failed")?;
    let mut r = r.strip_prefix(b"; ").or_else(|| r.strip_prefix(b": "))?;
    if let Some(s) = r.strip_prefix(b"non-empty initial ") {
        r = &s[memchr::memchr(b' ', s)? + 1..];
    }
    RELAY_FORMS.iter().find_map(|(before, after)| {
        let (server, rest) = server_name(r.strip_prefix(*before)?)?;
        let follows = if after.is_empty() {
            rest.is_empty()
        } else {
            rest.starts_with(after)
        };
        follows.then_some(server)
    })
}

/// `NAME[ADDR]` (an IPv6 address holds colons) or a bare `NAME` (a cached failure) at the
/// start of `s`, and what follows it.
fn server_name(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = memchr::memchr(b' ', s).unwrap_or(s.len());
    let end = match memchr::memchr(b'[', &s[..sp]) {
        Some(open) => open + memchr::memchr(b']', &s[open..])? + 1,
        None => sp,
    };
    let server = &s[..end];
    (!server.is_empty() && !server.contains(&b' ')).then(|| (server, &s[end..]))
}

/// Past `ADDRESS>`: a quoted local part (Postfix 3.5 and later quote one that needs it) may
/// hold `>`; an unquoted address ends at the first `>`.
fn skip_address(r: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    if r.first() == Some(&b'"') {
        i = 1;
        loop {
            match *r.get(i)? {
                b'\\' => i += 2,
                b'"' => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
    }
    let close = i + memchr::memchr(b'>', &r[i..])?;
    Some(&r[close + 1..])
}

/// A Postfix queue ID: short form (upper-case hex, at least 6 digits) or long form (at least
/// 10 characters of time, `z`, the inode number; letters and digits).
fn is_queue_id(id: &[u8]) -> bool {
    let short = id.len() >= 6 && id.iter().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
    let long = id.len() >= 12
        && id.iter().all(u8::is_ascii_alphanumeric)
        && id
            .iter()
            .rposition(|&b| b == b'z')
            .is_some_and(|z| z >= 10 && z + 1 < id.len());
    short || long
}

/// `postfix/smtpd`, `postfix/submission/smtpd`, `postfix-out/smtpd`, any `syslog_name/smtpd`.
pub(super) fn is_smtpd(program: &[u8]) -> bool {
    program == b"smtpd" || program.ends_with(b"/smtpd")
}

/// Postfix's SMTP or LMTP client under any `syslog_name`: `postfix/smtp`, `postfix/lmtp`,
/// Debian's `postfix/relay/smtp`, `postfix-out/smtp`.
pub(super) fn is_smtp_client(program: &[u8]) -> bool {
    let last = program.rsplit(|&b| b == b'/').next().unwrap_or(program);
    last == b"smtp" || last == b"lmtp"
}
