//! Any bytes as one log line: the parser must never panic, and what it calls a failure must
//! satisfy the structure it claims to have checked, whatever the header form (traditional,
//! RFC 5424), whether rsyslog wrapped it as a repeated message, and whether Postfix or a
//! Dovecot login process wrote it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maillogsentinel::parse::{BackendKind, MAX_REPEAT, Parsed, YearContext, parse_line};

fuzz_target!(|line: &[u8]| {
    let years = YearContext::now();
    let got = parse_line(line, &years, b"local");
    let text = String::from_utf8_lossy(line);
    // A count other than 1 only comes from rsyslog's wrapper, and never passes the cap.
    assert!(got.count >= 1 && got.count <= MAX_REPEAT, "{got:?}");
    assert!(
        got.count == 1 || text.contains("message repeated "),
        "{got:?}"
    );
    assert!(!got.capped || got.count == MAX_REPEAT, "{got:?}");
    match got.parsed {
        Parsed::Failure(f) if f.service.starts_with("dovecot/") => {
            // A login process's summary: its service, its reason, and the address of a `rip=`
            // field in the line.
            assert!(f.service.ends_with("-login"), "{f:?}");
            assert!(f.reason.starts_with("auth failed"), "{f:?}");
            assert!(!f.server.is_empty() && !f.server.contains(' '));
            assert!(!f.mechanism.contains(' '), "{f:?}");
            let found = text.match_indices("rip=").any(|(at, w)| {
                let v = &text[at + w.len()..];
                let v = v.split(", ").next().unwrap();
                v.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.to_canonical() == f.ip)
            });
            assert!(found, "{text:?}: {f:?}");
        }
        Parsed::Failure(f) => {
            assert!(
                f.service == "smtpd" || f.service.ends_with("/smtpd"),
                "{f:?}"
            );
            assert!(!f.server.is_empty() && !f.server.contains(' '));
            assert!(!f.mechanism.is_empty() && !f.mechanism.contains(' '));
            // The IP is a bracketed field right after `warning: NAME` and right before
            // `(:PORT)?: SASL `, checked independently: some `warning: ` in the line starts it.
            let name = f.client_hostname.as_deref().unwrap_or("unknown");
            let found = text.match_indices("warning: ").any(|(at, w)| {
                let rest = &text[at + w.len()..];
                let Some(rest) = rest.strip_prefix(name).and_then(|r| r.strip_prefix('[')) else {
                    return false;
                };
                let Some(close) = rest.find(']') else {
                    return false;
                };
                let after =
                    rest[close + 1..].trim_start_matches(|c: char| c == ':' || c.is_ascii_digit());
                let field = rest[..close].split('%').next().unwrap();
                after.starts_with(" SASL ")
                    && field
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.to_canonical() == f.ip)
            });
            assert!(found, "{text:?}: {f:?}");
            // RFC 3339 output always parses back.
            assert!(chrono_check(&f.timestamp.to_rfc3339()));
        }
        Parsed::Backend(b) => {
            if let BackendKind::AuthProcess { .. } = &b.kind {
                assert!(text.to_ascii_lowercase().contains("auth"), "{text:?}: {b:?}");
            }
            if let BackendKind::Relay { server } = &b.kind {
                let program = b.service.rsplit('/').next().unwrap();
                assert!(program == "smtp" || program == "lmtp", "{b:?}");
                assert!(
                    b.reason.starts_with("SASL ") && b.reason.contains(server.as_str()),
                    "{b:?}"
                );
                // The reason ends the line, or the status in parentheses (and rsyslog's `]`).
                // The parser takes one `\r` off (a CRLF line end); any more are text.
                let whole = text.strip_suffix('\r').unwrap_or(&text);
                let ends = [whole, whole.strip_suffix(']').unwrap_or(whole)]
                    .iter()
                    .any(|w| w.ends_with(&b.reason) || w.ends_with(&format!("{})", b.reason)));
                assert!(ends, "{text:?}: {b:?}");
            }
        }
        Parsed::Login(l) if l.service.starts_with("dovecot/") => {
            // A login process's `Login:` line: the address of a real rip= field.
            assert!(l.service.ends_with("-login") && l.reason.is_empty(), "{l:?}");
            assert!(text.contains("Login: "), "{text:?}");
            let found = text.match_indices("rip=").any(|(at, w)| {
                let v = text[at + w.len()..].split(", ").next().unwrap();
                v.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.to_canonical() == l.ip)
            });
            assert!(found, "{text:?}: {l:?}");
        }
        Parsed::Login(l) => {
            // smtpd's `QUEUEID: client=NAME[IP], sasl_method=M, sasl_username=U`.
            assert!(l.service == "smtpd" || l.service.ends_with("/smtpd"), "{l:?}");
            let name = l.client_hostname.as_deref().unwrap_or("unknown");
            let found = text.match_indices(": client=").any(|(at, w)| {
                let rest = &text[at + w.len()..];
                let Some(rest) = rest.strip_prefix(name).and_then(|r| r.strip_prefix('[')) else {
                    return false;
                };
                rest.find(']').is_some_and(|close| {
                    rest[..close]
                        .split('%')
                        .next()
                        .unwrap()
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.to_canonical() == l.ip)
                })
            });
            assert!(found && text.contains(", sasl_method="), "{text:?}: {l:?}");
            assert!(!l.mechanism.is_empty() && !l.mechanism.contains(' '), "{l:?}");
        }
        Parsed::Counted(_) => {
            assert!(text.contains("-login: "), "{text:?}");
            assert!(
                text.contains("(no auth attempts") || text.contains("plaintext auth)"),
                "{text:?}"
            );
        }
        Parsed::Verdict(v) => {
            // The auth process's verdict: its address is a comma field of the line.
            assert!(text.contains("auth"), "{text:?}");
            let found = text.split(',').any(|f| {
                f.split(')').next().unwrap().parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.to_canonical() == v.ip)
            });
            assert!(found, "{text:?}: {v:?}");
        }
        Parsed::Unrecognised(_) | Parsed::NotFailure => {}
    }
});

fn chrono_check(s: &str) -> bool {
    s.len() >= 25 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T'
}
