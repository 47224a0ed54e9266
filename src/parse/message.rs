//! Postfix's messages about SASL failures, read after the syslog header: smtpd's line when a
//! client's login fails.
//!
//! Each check is anchored at the start of the message; nothing here allocates.

use std::net::IpAddr;

use memchr::memmem;

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
    let Some(at) = memmem::find(rest, b": SASL ") else {
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
    if client.is_empty() || memmem::find(client, b": ").is_some() {
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

/// `postfix/smtpd`, `postfix/submission/smtpd`, `postfix-out/smtpd`, any `syslog_name/smtpd`.
pub(super) fn is_smtpd(program: &[u8]) -> bool {
    program == b"smtpd" || program.ends_with(b"/smtpd")
}
