//! Postfix's messages about SASL failures, read after the syslog header: smtpd's line when a
//! client's login fails.
//!
//! Each check is anchored at the start of the message; nothing here allocates.

use std::net::IpAddr;

use memchr::memmem;

/// smtpd's failure line, its fields as found.
pub(super) struct SmtpdFailure<'a> {
    /// The client name Postfix logged (`unknown` without a verified reverse name).
    pub name: &'a [u8],
    /// The client address as written.
    pub ip: &'a [u8],
    /// The mechanism as the client sent it.
    pub mechanism: &'a [u8],
    /// The reason Postfix logged (may be empty).
    pub reason: &'a [u8],
    /// The username, when Postfix logged one other than `(unavailable)`.
    pub username: Option<&'a [u8]>,
}

/// `warning: NAME[IP](:PORT)?: SASL MECH authentication failed(: REASON)?(, sasl_username=USER)?`
pub(super) fn smtpd_failure(msg: &[u8]) -> Option<SmtpdFailure<'_>> {
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
    Some(SmtpdFailure {
        name,
        ip,
        mechanism,
        reason,
        username,
    })
}

/// The client address as an IP address (canonical: IPv4-mapped IPv6 as IPv4).
pub(super) fn parse_ip(s: &[u8]) -> Option<IpAddr> {
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
