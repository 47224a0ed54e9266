//! Dovecot's messages, read after the syslog header (program `dovecot`, message `imap-login:
//! ...`): the login processes' summary line each failed connection ends with (how many
//! authentication attempts failed), their `Login:` line for a client that logged in, the
//! connections that tried nothing (counted), and the auth process's own errors and its
//! verdicts on single attempts (`auth_verbose`).
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

use super::bytes;

/// The fields a login process logs about a client, read from the server's side (see the
/// module docs).
pub(super) struct Client<'a> {
    /// The login process: `imap-login`, `pop3-login`, `managesieve-login`, `submission-login`.
    pub service: &'a [u8],
    /// The username the client sent (`None` when Dovecot logged none, or `<>`).
    pub username: Option<&'a [u8]>,
    /// The mechanism (`method=`), empty when not logged.
    pub mechanism: &'a [u8],
    /// The client address (`rip=`).
    pub ip: IpAddr,
}

/// What a Dovecot message is.
pub(super) enum Dovecot<'a> {
    /// Nothing this program records or counts.
    No,
    /// A login process's summary of a connection whose authentication failed, with Dovecot's
    /// words (e.g. `auth failed, 3 attempts in 10 secs`).
    Failure(Client<'a>, &'a [u8]),
    /// A successful login (`Login: user=<...>, ...`).
    Login(Client<'a>),
    /// A connection that ended without any authentication attempt.
    NoAttempts,
    /// A client refused for trying a plaintext login where that is disallowed (no password
    /// was checked).
    PlaintextRefused,
    /// Dovecot's authentication side failed (its words; the client, when one is named): the
    /// auth process logged an error, or a login process could not reach it.
    Backend(&'a [u8], Option<IpAddr>),
    /// The auth process's verdict on one login attempt.
    Verdict(Verdict<'a>),
    /// A failure summary or login whose address cannot be read (why).
    Unreadable(&'static str),
}

/// Whether `program` is Dovecot as syslog names it (`dovecot`, or `dovecot/...` from a Dovecot
/// whose `syslog_facility` programs are named after the process).
pub(super) fn is_dovecot(program: &[u8]) -> bool {
    program == b"dovecot" || program.starts_with(b"dovecot/")
}

/// `PROCESS: (LEVEL: )?MESSAGE`, the message of a syslog line whose program is Dovecot (or of a
/// line of Dovecot's own log file).
pub(super) fn message(msg: &[u8]) -> Dovecot<'_> {
    let Some(colon) = bytes::find(msg, b": ") else {
        return Dovecot::No;
    };
    let process = &msg[..colon];
    let rest = &msg[colon + 2..];
    if is_login_service(process) {
        login_process(process, rest)
    } else if is_auth_process(process) {
        auth_process(rest)
    } else {
        Dovecot::No
    }
}

/// A login process's name: `imap-login`, `pop3-login`, ...
pub(super) fn is_login_service(service: &[u8]) -> bool {
    service.ends_with(b"-login")
        && service
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The auth process or one of its workers: `auth`, `auth-worker(123)`. (2.4's per-request
/// prefix `auth(USER,IP,...)<SESSION>` holds the client's username, which could hold `: Error:`
/// and forge a warning: not trusted.)
fn is_auth_process(process: &[u8]) -> bool {
    process == b"auth"
        || process
            .strip_prefix(b"auth-worker(")
            .and_then(|r| r.strip_suffix(b")"))
            .is_some_and(|pid| !pid.is_empty() && pid.iter().all(u8::is_ascii_digit))
}

/// The level Dovecot writes before a message (`Info: `; syslog lines at info level have none).
fn level(rest: &[u8]) -> (&[u8], &[u8]) {
    for l in [
        &b"Info"[..],
        b"Warning",
        b"Error",
        b"Fatal",
        b"Panic",
        b"Debug",
    ] {
        if let Some(r) = rest.strip_prefix(l).and_then(|r| r.strip_prefix(b": ")) {
            return (l, r);
        }
    }
    (b"Info", rest)
}

/// The auth process's own errors (a passdb it cannot reach, a configuration it cannot load):
/// no login can be checked while they last. Its verdicts on single logins (`unknown user`,
/// `Password mismatch`, logged with `auth_verbose = yes`) are not rows (a login process
/// summarises the same attempt) but say whether the username exists: see [`verdict`].
fn auth_process(rest: &[u8]) -> Dovecot<'_> {
    match level(rest) {
        (b"Error" | b"Fatal" | b"Panic", text) => Dovecot::Backend(text, None),
        (_, text) => verdict(text).map_or(Dovecot::No, Dovecot::Verdict),
    }
}

/// The auth process's verdict on one login: the username is unknown, or its password wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Verdict<'a> {
    /// The username (the client's text).
    pub username: &'a [u8],
    /// The client address.
    pub ip: IpAddr,
    /// Whether the username exists (`Password mismatch`) or not (`unknown user`).
    pub known_user: bool,
}

/// What a verdict line ends with (server text), and whether the user exists.
const VERDICTS: [(&[u8], bool); 5] = [
    (b"unknown user", false),
    (b"Password mismatch", true),
    (
        b"pam_authenticate() failed: Authentication failure (password mismatch?)",
        true,
    ),
    (
        b"pam_authenticate() failed: Authentication failure (Password mismatch?)",
        true,
    ),
    (b"invalid credentials", true),
];

/// `(conn ...: auth-worker<N>: )?DRIVER(USER,IP(,<SESSION>)?): VERDICT( ...)?`. The username
/// may hold anything, `): ` included, so the verdict is read after the last `): ` that a
/// verdict follows, and the address is the last field before it (or before `,<SESSION>`).
fn verdict(mut text: &[u8]) -> Option<Verdict<'_>> {
    if text.starts_with(b"conn ")
        && let Some(at) = bytes::find(text, b": auth-worker<")
    {
        let r = &text[at + 2..];
        text = &r[bytes::find(r, b">: ")? + 3..];
    }
    let open = memchr::memchr(b'(', text)?;
    let driver = &text[..open];
    if driver.is_empty()
        || !driver
            .iter()
            .all(|b| b.is_ascii_lowercase() || *b == b'-' || *b == b'_')
    {
        return None;
    }
    let args_and_rest = &text[open + 1..];
    let mut end = args_and_rest.len();
    let (close, known_user) = loop {
        let close = bytes::rfind(&args_and_rest[..end], b"): ")?;
        let after = &args_and_rest[close + 3..];
        if let Some(&(_, known)) = VERDICTS.iter().find(|(v, _)| after.starts_with(v)) {
            break (close, known);
        }
        end = close;
    };
    let mut args = &args_and_rest[..close];
    // `,<SESSION>` (2.3), or an empty last field (`user,ip,` from some drivers).
    if args.ends_with(b">") {
        args = &args[..bytes::rfind(args, b",<")?];
    } else if let Some(a) = args.strip_suffix(b",") {
        args = a;
    }
    let comma = memchr::memrchr(b',', args)?;
    let ip = parse_ip(&args[comma + 1..])?;
    Some(Verdict {
        username: &args[..comma],
        ip,
        known_user,
    })
}

/// The message after `SERVICE: `.
fn login_process<'a>(service: &'a [u8], rest: &'a [u8]) -> Dovecot<'a> {
    let (level, rest) = level(rest);
    if level != b"Info" {
        // `Warning: Auth process not responding, ...`, `Error: Timeout waiting for handshake
        // from auth server`: the login process cannot reach the auth process.
        let auth_side = bytes::contains_ignore_case(rest, b"auth process")
            || bytes::contains_ignore_case(rest, b"auth server");
        return if auth_side {
            Dovecot::Backend(rest, None)
        } else {
            Dovecot::No
        };
    }
    // The server's summary ends where the fields begin; the client's text comes after.
    let fields_at = bytes::find(rest, b": user=<")
        .or_else(|| bytes::find(rest, b": method="))
        .or_else(|| bytes::find(rest, b": rip="));
    let Some(fields_at) = fields_at else {
        return Dovecot::No;
    };
    let summary = &rest[..fields_at];
    let fields = &rest[fields_at + 2..];
    if summary == b"Login" {
        return match client(service, fields) {
            Ok(c) => Dovecot::Login(c),
            Err(why) => Dovecot::Unreadable(why),
        };
    }
    if let Some(open) = bytes::find(summary, b"(auth failed") {
        let Some(close) = memchr::memchr(b')', &summary[open..]) else {
            return Dovecot::No;
        };
        let reason = &summary[open + 1..open + close];
        return match client(service, fields) {
            Ok(c) => Dovecot::Failure(c, reason),
            Err(why) => Dovecot::Unreadable(why),
        };
    }
    if bytes::find(summary, b"(no auth attempts").is_some() {
        Dovecot::NoAttempts
    } else if bytes::find(summary, b"plaintext auth)").is_some() {
        // `tried to use disallowed plaintext auth` (2.3), `disabled plaintext auth` (2.2)
        Dovecot::PlaintextRefused
    } else if bytes::find(summary, b"Auth process broken").is_some() {
        Dovecot::Backend(summary, client(service, fields).ok().map(|c| c.ip))
    } else {
        Dovecot::No
    }
}

/// The client fields of a summary or login line: the server's last `rip=`, the `method=` right
/// before it, and the username between `user=<` and them.
fn client<'a>(service: &'a [u8], fields: &'a [u8]) -> Result<Client<'a>, &'static str> {
    // The server's fields after the client's username: the last `rip=`, the `method=` before.
    let rip_at = field_at(fields, b"rip=", fields.len())
        .ok_or("Dovecot's summary has no rip= (client address) field")?;
    let ip = parse_ip(value(&fields[rip_at + 4..]))
        .ok_or("Dovecot's rip= field is not an IP address")?;
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
    Ok(Client {
        service,
        username,
        mechanism,
        ip,
    })
}

/// Where the last field `name` (`rip=`, `method=`) starts before `before`: at the start of the
/// fields or after `, ` (an occurrence inside another value, as in `xrip=`, is passed over).
fn field_at(fields: &[u8], name: &[u8], before: usize) -> Option<usize> {
    let mut end = before;
    while let Some(i) = bytes::rfind(&fields[..end], name) {
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
    bytes::find(s, b", ").map_or(s, |i| &s[..i])
}

/// An address as Dovecot writes it; IPv4-mapped IPv6 as the IPv4 address.
fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    let ip: IpAddr = std::str::from_utf8(s).ok()?.parse().ok()?;
    Some(ip.to_canonical())
}
