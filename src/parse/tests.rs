//! Unit tests for the line parser: every line form the issue names, the known bugs of the
//! original tool, and hostile lines.

use super::*;
use chrono::NaiveDateTime;

fn years() -> YearContext {
    YearContext::at_naive(
        NaiveDateTime::parse_from_str("2026-11-22 12:00:00", "%Y-%m-%d %H:%M:%S").unwrap(),
    )
}

fn failure(line: &str) -> AuthEvent {
    match outcome(line) {
        Parsed::Failure(f) => f,
        other => panic!("expected a failure for {line:?}, got {other:?}"),
    }
}

fn outcome(line: &str) -> Parsed {
    let got = parse_line(line.as_bytes(), &years(), b"local");
    assert_eq!((got.count, got.capped), (1, false), "{line}");
    got.parsed
}

#[test]
fn postfix_3_7_line_with_username() {
    let f = failure(
        "Nov 22 08:50:58 mx postfix/smtpd[3363]: warning: localhost[127.0.0.1]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=webmaster",
    );
    assert_eq!(f.server, "mx");
    assert_eq!(f.service, "postfix/smtpd");
    assert_eq!(f.ip.to_string(), "127.0.0.1");
    assert_eq!(f.username.as_deref(), Some("webmaster"));
    assert_eq!(f.mechanism, "LOGIN");
    assert_eq!(f.reason, "(reason unavailable)");
    assert_eq!(f.client_hostname.as_deref(), Some("localhost"));
    assert_eq!(
        f.timestamp.time.naive_local().to_string(),
        "2026-11-22 08:50:58"
    );
}

#[test]
fn regression_lines_without_sasl_username_are_failures() {
    // Postfix before 3.7.8 does not log the username; the original tool missed these lines.
    for (line, reason) in [
        (
            "Oct 19 19:56:07 longbeach postfix/smtpd[2309]: warning: unknown[199.19.110.207]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
            "UGFzc3dvcmQ6",
        ),
        (
            "Mar 10 13:33:30 gw postfix/smtpd[3937]: warning: host.example[192.0.2.8]: SASL LOGIN authentication failed: authentication failure",
            "authentication failure",
        ),
        (
            "Aug 3 15:30:49 k postfix/smtpd[17041]: warning: mail.example.com[198.51.100.74]: SASL Plain authentication failed:",
            "",
        ),
        (
            "Nov  4 09:11:01 mail postfix/submission/smtpd[27133]: warning: unknown[192.0.2.150]: SASL PLAIN authentication failed: ",
            "",
        ),
        (
            "Nov  4 09:11:01 mail postfix/smtpd[27133]: warning: unknown[192.0.2.150]: SASL PLAIN authentication failed",
            "",
        ),
    ] {
        let f = failure(line);
        assert_eq!(f.username, None, "{line}");
        assert_eq!(f.reason, reason, "{line}");
    }
}

#[test]
fn every_smtpd_program_name() {
    for program in [
        "postfix/smtpd",
        "postfix/submission/smtpd",
        "postfix/smtps/smtpd",
        "postfix-out/smtpd",
        "postfix/smtp-25/smtpd",
        "mta-in/smtpd",
    ] {
        let line = format!(
            "Nov 22 08:50:58 mx {program}[42]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=a"
        );
        assert_eq!(failure(&line).service, program);
    }
}

#[test]
fn other_programs_are_not_taken_for_smtpd() {
    let line = "Nov 22 08:50:58 mx postfix/smtp[42]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x";
    assert!(matches!(outcome(line), Parsed::Unrecognised(_)));
    // Not a form Postfix writes (its SMTP client logs a queue ID there, see
    // `relay_login_failures_are_backend_failures`): nothing.
    let line = "Nov 22 08:50:58 mx postfix/smtp[42]: warning: SASL authentication failed; server relay.example[192.0.2.9] said: 535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6";
    assert_eq!(outcome(line), Parsed::NotFailure);
}

fn relay(line: &str) -> (String, String, String) {
    match outcome(line) {
        Parsed::Backend(BackendFailure {
            kind: BackendKind::Relay { server },
            service,
            reason,
            ..
        }) => (service, server, reason),
        other => panic!("expected a relay failure for {line:?}, got {other:?}"),
    }
}

#[test]
fn relay_login_failures_are_backend_failures() {
    // The delivery status when the relay is the last (or only) server to try: mail deferred.
    let (service, server, reason) = relay(
        "Nov 22 08:06:03 mx postfix/smtp[3443]: 4F9D195432C: to=<bob@example.net>, relay=relay.example.net[198.51.100.6]:587, delay=1.2, delays=0.1/0.01/1/0, dsn=4.7.8, status=deferred (SASL authentication failed; server relay.example.net[198.51.100.6] said: 535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6)",
    );
    assert_eq!(service, "postfix/smtp");
    assert_eq!(server, "relay.example.net[198.51.100.6]");
    assert_eq!(
        reason,
        "SASL authentication failed; server relay.example.net[198.51.100.6] said: 535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6"
    );
    for (line, want_service, want_server) in [
        // A backup server is tried next: the queue ID and the text alone.
        (
            "Nov 22 08:06:03 mx postfix/smtp[3443]: 4F9D195432C: SASL authentication failed; server mx1.example.net[2001:db8::25] said: 535 5.7.8 Error: authentication failed: authentication failure",
            "postfix/smtp",
            "mx1.example.net[2001:db8::25]",
        ),
        // Debian's `relay` service, a long queue ID, orig_to, Postfix 3.12's tls= field, a
        // multi-line reply.
        (
            "2026-11-22T08:06:03.5+01:00 mx postfix/relay/smtp[3443]: 4dKz3Y0Qb6zBYqX: to=<bob@example.net>, orig_to=<root>, relay=smtp.example.com[192.0.2.33]:587, delay=0.9, delays=0.02/0.01/0.8/0, tls=may, dsn=4.7.8, status=deferred (SASL authentication failed; server smtp.example.com[192.0.2.33] said: 535-5.7.8 Username and Password not accepted.?535 5.7.8 Learn more)",
            "postfix/relay/smtp",
            "smtp.example.com[192.0.2.33]",
        ),
        // The LMTP client, and a recipient whose quoted local part holds `>` and the words.
        (
            "Nov 22 08:06:03 mx postfix/lmtp[51]: 4F9D195432C: to=<\"a> status=sent (x\\\" y\"@example.org>, relay=store.example.org[192.0.2.40]:24, delay=0.1, delays=0/0/0.1/0, dsn=4.7.0, status=deferred (SASL authentication failed; cannot authenticate to server store.example.org[192.0.2.40]: no mechanism available)",
            "postfix/lmtp",
            "store.example.org[192.0.2.40]",
        ),
        // smtp_sasl_auth_cache remembered the refusal: the server by name only.
        (
            "Nov 22 08:06:03 mx postfix-out/smtp[3443]: 4F9D195432C: to=<bob@example.net>, relay=relay.example.net[198.51.100.6]:587, delay=0.1, delays=0/0/0.1/0, dsn=4.7.8, status=deferred (SASL [CACHED] authentication failed; server relay.example.net said: 535 5.7.8 Error: authentication failed)",
            "postfix-out/smtp",
            "relay.example.net",
        ),
        (
            "Nov 22 08:06:03 mx postfix/smtp[3443]: 4F9D195432C: to=<bob@example.net>, relay=relay.example.net[198.51.100.6]:25, delay=0.1, delays=0/0/0.1/0, dsn=4.7.0, status=deferred (SASL authentication failed: server relay.example.net[198.51.100.6] offered no compatible authentication mechanisms for this type of connection security)",
            "postfix/smtp",
            "relay.example.net[198.51.100.6]",
        ),
    ] {
        let (service, server, _) = relay(line);
        assert_eq!(
            (service.as_str(), server.as_str()),
            (want_service, want_server),
            "{line}"
        );
    }
}

#[test]
fn other_delivery_lines_are_not_relay_failures() {
    for line in [
        "Nov 22 08:05:02 mx postfix/smtp[3432]: E08BB99691F: to=<bob@example.net>, relay=mx.example.net[198.51.100.5]:25, delay=0.4, delays=0.1/0/0.2/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4XYZ)",
        // A sender-chosen address carrying the words, delivered fine.
        "Nov 22 08:05:02 mx postfix/smtp[3432]: E08BB99691F: to=<\"x, status=deferred (SASL authentication failed; server evil[6.6.6.6] said: 535 x)\"@example.net>, relay=mx.example.net[198.51.100.5]:25, delay=0.4, delays=0.1/0/0.2/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
        // A remote server's reply that reads like it.
        "Nov 22 08:05:02 mx postfix/smtp[3432]: E08BB99691F: to=<bob@example.net>, relay=mx.example.net[198.51.100.5]:25, delay=0.4, delays=0.1/0/0.2/0.1, dsn=5.0.0, status=bounced (host mx.example.net[198.51.100.5] said: 550 SASL authentication failed; server x[1.2.3.4] said: no (in reply to RCPT TO command))",
        // The words from a program other than the SMTP/LMTP client, or without a queue ID.
        "Nov 22 08:06:03 mx postfix/smtpd[3443]: 4F9D195432C: SASL authentication failed; server relay.example.net[198.51.100.6] said: 535 5.7.8 Error",
        "Nov 22 08:06:03 mx postfix/smtp[3443]: NOQUEUE: SASL authentication failed; server relay.example.net[198.51.100.6] said: 535 5.7.8 Error",
        "Nov 22 08:06:03 mx postfix/smtp[3443]: 4F9D195432C: SASL authentication failed; the server said no",
    ] {
        assert_eq!(outcome(line), Parsed::NotFailure, "{line}");
    }
}

#[test]
fn every_mechanism_upper_cased() {
    for (mech, want) in [
        ("LOGIN", "LOGIN"),
        ("PLAIN", "PLAIN"),
        ("CRAM-MD5", "CRAM-MD5"),
        ("DIGEST-MD5", "DIGEST-MD5"),
        ("XOAUTH2", "XOAUTH2"),
        ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256-PLUS"),
        ("login", "LOGIN"),
        ("Plain", "PLAIN"),
    ] {
        let line = format!(
            "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL {mech} authentication failed: (reason unavailable), sasl_username=a"
        );
        assert_eq!(failure(&line).mechanism, want);
    }
}

#[test]
fn ipv6_and_ipv4_mapped_addresses() {
    let f = failure(
        "Nov 22 08:50:58 mx postfix/smtpd[3250]: warning: unknown[::1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=postmaster",
    );
    assert_eq!(f.ip.to_string(), "::1");
    assert_eq!(f.client_hostname, None);
    let f = failure(
        "Oct 19 19:56:07 lb postfix/smtpd[2309]: warning: unknown[2001:db8::a11:beef:7ac0]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
    );
    assert_eq!(f.ip.to_string(), "2001:db8::a11:beef:7ac0");
    let f = failure(
        "Oct 19 19:56:07 lb postfix/smtpd[2309]: warning: unknown[::ffff:203.0.113.5]: SASL LOGIN authentication failed: x",
    );
    assert_eq!(f.ip.to_string(), "203.0.113.5");
    let f = failure(
        "Oct 19 19:56:07 lb postfix/smtpd[2309]: warning: unknown[fe80::1%eth0]: SASL LOGIN authentication failed: x",
    );
    assert_eq!(f.ip.to_string(), "fe80::1");
}

#[test]
fn client_port_logging() {
    let f = failure(
        "Aug 4 16:47:52 mail3 postfix/smtpd[31152]: warning: unknown[192.0.2.237]:55729: SASL LOGIN authentication failed: authentication failure",
    );
    assert_eq!(f.ip.to_string(), "192.0.2.237");
    let f = failure(
        "2022-04-14T00:36:03.150Z mailhub postfix/smtps/smtpd[30543]: warning: unknown[2001:db8::5]:48123: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
    );
    assert_eq!(f.ip.to_string(), "2001:db8::5");
    assert_eq!(f.timestamp.to_rfc3339(), "2022-04-14T00:36:03.150+00:00");
}

#[test]
fn regression_rfc3339_and_journal_lines() {
    let f = failure(
        "2026-11-22T08:01:02.123456+01:00 mx postfix/submission/smtpd[9]: warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=eve",
    );
    assert_eq!(f.timestamp.to_rfc3339(), "2026-11-22T08:01:02.123456+01:00");
    let f = failure(
        "2026-11-02T08:50:58+0100 mx postfix/smtpd[9]: warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=eve",
    );
    assert_eq!(f.timestamp.to_rfc3339(), "2026-11-02T08:50:58+01:00");
}

#[test]
fn regression_dotted_quad_in_hostname_does_not_change_the_ip() {
    let f = failure(
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: 165.199.148.122.static.example.net[122.148.199.165]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=info",
    );
    assert_eq!(f.ip.to_string(), "122.148.199.165");
    assert_eq!(
        f.client_hostname.as_deref(),
        Some("165.199.148.122.static.example.net")
    );
    // A hostname that is itself an IP address (DNS is attacker-controlled).
    let f = failure(
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: 10.0.0.1[198.51.100.9]: SASL LOGIN authentication failed: x",
    );
    assert_eq!(f.ip.to_string(), "198.51.100.9");
}

#[test]
fn regression_usernames_are_kept_whole() {
    for (sent, want) in [
        ("john, smith", Some("john, smith")),
        ("a b c", Some("a b c")),
        ("jöhn@exämple.org", Some("jöhn@exämple.org")),
        ("x, sasl_username=y", Some("x, sasl_username=y")),
        ("(unavailable)", None),
        ("", None),
        ("=HYPERLINK(\"http://x\")", Some("=HYPERLINK(\"http://x\")")),
    ] {
        let line = format!(
            "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username={sent}"
        );
        let f = failure(&line);
        assert_eq!(f.username.as_deref(), want, "{sent:?}");
        assert_eq!(f.reason, "(reason unavailable)");
    }
}

#[test]
fn invalid_utf8_is_replaced_not_dropped() {
    let mut line = b"Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=ab".to_vec();
    line.extend_from_slice(&[0xff, 0xfe, b'c']);
    let Parsed::Failure(f) = parse_line(&line, &years(), b"local").parsed else {
        panic!()
    };
    assert_eq!(f.username.as_deref(), Some("ab\u{fffd}\u{fffd}c"));
}

#[test]
fn crlf_line_ending_is_not_part_of_the_username() {
    let f = failure(
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=bob\r",
    );
    assert_eq!(f.username.as_deref(), Some("bob"));
}

#[test]
fn backend_failures_are_not_attacks() {
    for reason in [
        "Connection lost to authentication server",
        "generic failure",
        "SASL(-1): generic failure: checkpass failed",
    ] {
        let line = format!(
            "Feb  3 08:29:28 mail postfix/smtpd[21022]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: {reason}"
        );
        match outcome(&line) {
            Parsed::Backend(b) => {
                assert_eq!(b.reason, reason);
                assert_eq!(
                    b.kind,
                    BackendKind::AuthServer {
                        client: "192.0.2.1".parse().unwrap()
                    }
                );
            }
            other => panic!("{reason}: {other:?}"),
        }
    }
}

#[test]
fn regression_successful_logins_and_related_lines_are_not_failures() {
    // Successful logins (the original tool recorded these as failures) are logins, even when
    // the username is the needle itself.
    for (line, ip, user, host) in [
        (
            "Nov 22 08:50:58 mx postfix/smtpd[3363]: E08BB99691F: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice",
            "127.0.0.1",
            "alice",
            Some("localhost"),
        ),
        (
            "Nov 22 08:50:58 mx postfix/smtpd[3363]: E08BB99691F: client=unknown[192.0.2.1], sasl_method=PLAIN, sasl_username=authentication failed",
            "192.0.2.1",
            "authentication failed",
            None,
        ),
        (
            "Nov 22 08:50:58 mx postfix/submission/smtpd[3363]: 4dKJqs0Yx9zJrP1: client=mail.example.org[2001:db8::5]:40312, sasl_method=login, sasl_username=bob@example.org, sasl_sender=bob@example.org",
            "2001:db8::5",
            "bob@example.org",
            Some("mail.example.org"),
        ),
        // sasl_sender= is the client's MAIL FROM AUTH= text: it cannot extend the username.
        (
            "Nov 22 08:50:58 mx postfix/smtpd[3363]: E08BB99691F: client=unknown[192.0.2.1], sasl_method=PLAIN, sasl_username=alice, sasl_sender=x, sasl_sender=y",
            "192.0.2.1",
            "alice",
            None,
        ),
    ] {
        let Parsed::Login(l) = outcome(line) else {
            panic!("{line}: not a login");
        };
        assert_eq!(
            (
                l.ip.to_string(),
                l.username.as_deref(),
                l.client_hostname.as_deref()
            ),
            (ip.to_owned(), Some(user), host),
            "{line}"
        );
        assert_eq!(l.reason, "");
        assert!(l.mechanism == "PLAIN" || l.mechanism == "LOGIN", "{line}");
    }
    for line in [
        // Not smtpd, no queue id, no sasl_username, a client that is no NAME[IP].
        "Nov 22 08:50:58 mx postfix/cleanup[3363]: E08BB99691F: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice",
        "Nov 22 08:50:58 mx postfix/smtpd[3363]: warning: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice",
        "Nov 22 08:50:58 mx postfix/smtpd[3363]: E08BB99691F: client=localhost[127.0.0.1], sasl_method=PLAIN",
        "Nov 22 08:50:58 mx postfix/smtpd[3363]: E08BB99691F: client=local host[127.0.0.1], sasl_method=PLAIN, sasl_username=a",
        "Nov 22 08:50:58 mx postfix/smtpd[3363]: E08BB99691F: client=localhost, sasl_method=PLAIN, sasl_username=a",
    ] {
        assert_eq!(outcome(line), Parsed::NotFailure, "{line}");
    }
    for line in [
        "Nov 22 08:50:58 mx postfix/smtpd[3363]: warning: localhost[127.0.0.1]: SASL LOGIN authentication aborted",
        "Nov 22 08:50:58 mx postfix/smtpd[3363]: lost connection after AUTH from localhost[127.0.0.1]",
        "Nov 22 08:50:58 mx postfix/smtpd[3363]: too many errors after AUTH from localhost[127.0.0.1]",
        "Nov 22 08:50:58 mx postfix/smtpd[3363]: disconnect from localhost[127.0.0.1] ehlo=1 auth=0/5 commands=1/6",
        "Nov 22 08:50:58 mx postfix/smtpd[3363]: warning: SASL authentication failure: Password verification failed",
    ] {
        assert_eq!(outcome(line), Parsed::NotFailure, "{line}");
    }
}

#[test]
fn hostile_text_elsewhere_in_a_line_is_not_a_failure() {
    for line in [
        // HELO name and envelope addresses carrying a whole fake failure line.
        "Nov 22 08:50:58 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <v@example.org>: Relay access denied; from=<a@b> to=<v@example.org> proto=ESMTP helo=<warning: unknown[6.6.6.6]: SASL LOGIN authentication failed: x>",
        "Nov 22 08:50:58 mx postfix/cleanup[1]: 4F1: message-id=<x: warning: unknown[6.6.6.6]: SASL LOGIN authentication failed: y>",
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: non-SMTP command from unknown[192.0.2.1]: warning: unknown[6.6.6.6]: SASL LOGIN authentication failed: x",
        "Nov 22 08:50:58 mx postfix/smtpd[1]: improper command pipelining after AUTH from unknown[192.0.2.1]: SASL LOGIN authentication failed",
    ] {
        assert!(!matches!(outcome(line), Parsed::Failure(_)), "{line}");
    }
    // A username cannot move the IP taken: it comes after the structure is anchored.
    let f = failure(
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=x unknown[6.6.6.6]: SASL LOGIN authentication failed",
    );
    assert_eq!(f.ip.to_string(), "192.0.2.1");
}

#[test]
fn unplaceable_failure_lines_are_reported() {
    // A bare message (no syslog header) and a timestamp form nobody writes.
    for line in [
        "warning: unknown[1.2.3.4]: SASL LOGIN authentication failed: authentication failure",
        "@400000004c91b044077a9e94 mx postfix/smtpd[1]: warning: unknown[1.2.3.4]: SASL LOGIN authentication failed: x",
    ] {
        // The bare form has no `: warning: ` and the parser cannot anchor it: not a row.
        let got = outcome(line);
        assert!(
            matches!(got, Parsed::Unrecognised(_) | Parsed::NotFailure),
            "{line}: {got:?}"
        );
    }
    assert!(matches!(
        outcome(
            "@400000004c91b044077a9e94 mx postfix/smtpd[1]: warning: unknown[1.2.3.4]: SASL LOGIN authentication failed: x"
        ),
        Parsed::Unrecognised(_)
    ));
    assert!(matches!(
        outcome(
            "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[not-an-ip]: SASL LOGIN authentication failed: x"
        ),
        Parsed::Unrecognised(_)
    ));
}

#[test]
fn garbage_is_never_a_failure() {
    for line in [
        &b""[..],
        b"\0\0\0authentication failed\0",
        b"authentication failed",
        b"Nov 22 08:50:58 mx postfix/smtpd[1]: warning: [192.0.2.1]: SASL LOGIN authentication failed: x",
        b"Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[]: SASL LOGIN authentication failed: x",
        b"Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL  authentication failed: x",
        b"Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failedx",
        b"Nov 22 08:50:58 mx postfix/smtpd[x]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed",
        b"Nov 22 08:50:58  postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed",
        b"\xff\xfe\xfd Nov 22 08:50:58 authentication failed",
    ] {
        assert!(!matches!(parse_line(line, &years(), b"local").parsed, Parsed::Failure(_)), "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn regression_unreadable_clients_are_reported_not_dropped() {
    for line in [
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown: SASL LOGIN authentication failed: (reason unavailable), sasl_username=a",
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1 x]: SASL LOGIN authentication failed: x",
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[not-an-ip]: SASL LOGIN authentication failed: x",
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: [192.0.2.1]: SASL LOGIN authentication failed: x",
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[]: SASL LOGIN authentication failed: x",
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]:abc: SASL LOGIN authentication failed: x",
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]x: SASL LOGIN authentication failed",
    ] {
        assert!(matches!(outcome(line), Parsed::Unrecognised(_)), "{line}");
    }
    // Other warnings that carry the words in attacker text: no client part, nothing to report.
    for line in [
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: non-SMTP command from unknown[192.0.2.1]: warning: unknown[6.6.6.6]: SASL LOGIN authentication failed: x",
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: Illegal address syntax from unknown[192.0.2.1] in MAIL command: <x: SASL LOGIN authentication failed>",
    ] {
        assert_eq!(outcome(line), Parsed::NotFailure, "{line}");
    }
}

#[test]
fn rfc5424_lines() {
    // rsyslog's RSYSLOG_SyslogProtocol23Format: PROCID given, MSGID and SD nil.
    let f = failure(
        "<22>1 2026-11-22T08:01:04.123456+01:00 mx postfix/smtpd 3363 - - warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=admin",
    );
    assert_eq!(f.timestamp.to_rfc3339(), "2026-11-22T08:01:04.123456+01:00");
    assert_eq!(
        (f.server.as_str(), f.service.as_str()),
        ("mx", "postfix/smtpd")
    );
    assert_eq!(f.ip.to_string(), "203.0.113.7");
    assert_eq!(f.username.as_deref(), Some("admin"));
    // The year and zone are the line's own: no inference (the reference is 2026-11-22, when a
    // syslog `Mar  1` would be this year's and `Dec 31` last year's).
    for (line, want) in [
        (
            "<22>1 2027-03-01T10:00:00Z mx.example.org postfix/submission/smtpd - - - warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: x",
            "2027-03-01T10:00:00+00:00",
        ),
        (
            "<22>1 2023-12-31T23:59:59.5-05:00 mx postfix/smtpd 1 - - warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: x",
            "2023-12-31T23:59:59.500-05:00",
        ),
    ] {
        assert_eq!(failure(line).timestamp.to_rfc3339(), want, "{line}");
    }
    // Structured data (with escaped `]`, `"` and `\\`, and failure text inside a value), a
    // MSGID, a BOM before the message, and the extra space rsyslog may keep.
    for line in [
        "<22>1 2026-11-22T08:01:04Z mx postfix/smtpd 3363 ID47 [timeQuality tzKnown=\"1\" isSynced=\"1\"][x@32473 a=\"v \\] w \\\" \\\\\" b=\"] warning: unknown[6.6.6.6]: SASL LOGIN authentication failed: y\"] warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x, sasl_username=u",
        "<22>1 2026-11-22T08:01:04Z mx postfix/smtpd 3363 - - \u{feff}warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x, sasl_username=u",
        "<22>1 2026-11-22T08:01:04Z mx postfix/smtpd 3363 - -  warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x, sasl_username=u",
        "<0>1 2026-11-22T08:01:04Z mx postfix/smtpd 3363 - - warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x, sasl_username=u",
    ] {
        let f = failure(line);
        assert_eq!(
            (f.ip.to_string().as_str(), f.username.as_deref()),
            ("192.0.2.1", Some("u")),
            "{line}"
        );
    }
    // Headers that do not place the line: reported, not dropped, and never a row.
    for line in [
        "<22>1 - mx postfix/smtpd 3363 - - warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x",
        "<192>1 2026-11-22T08:01:04Z mx postfix/smtpd 3363 - - warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x",
        "<22>2 2026-11-22T08:01:04Z mx postfix/smtpd 3363 - - warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x",
        "<22>1 2026-11-22T08:01:04Z mx postfix/smtpd 3363 - [unclosed a=\"]\" warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x",
    ] {
        assert!(matches!(outcome(line), Parsed::Unrecognised(_)), "{line}");
    }
}

fn repeated(line: &str) -> ParsedLine {
    parse_line(line.as_bytes(), &years(), b"local")
}

#[test]
fn rsyslog_repeated_messages_stand_for_n_lines() {
    let got = repeated(
        "Nov 22 08:01:04 mx postfix/smtpd[3363]: message repeated 3 times: [ warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=admin]",
    );
    assert_eq!((got.count, got.capped), (3, false));
    let Parsed::Failure(f) = got.parsed else {
        panic!("{got:?}")
    };
    assert_eq!(f.ip.to_string(), "203.0.113.7");
    // The closing bracket is rsyslog's, not the username's.
    assert_eq!(f.username.as_deref(), Some("admin"));
    let got = repeated(
        "<22>1 2026-11-22T08:01:04Z mx postfix/smtpd 3363 - -  message repeated 2 times: [ warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=x]]",
    );
    assert_eq!(got.count, 2);
    let Parsed::Failure(f) = got.parsed else {
        panic!("{got:?}")
    };
    assert_eq!(f.username.as_deref(), Some("x]"));
    // A backend failure and an unrecognised line repeat too.
    let got = repeated(
        "Nov 22 08:04:00 mx postfix/smtpd[3420]: message repeated 4 times: [ warning: unknown[192.0.2.44]: SASL LOGIN authentication failed: Connection lost to authentication server]",
    );
    assert!(
        matches!((&got.parsed, got.count), (Parsed::Backend(_), 4)),
        "{got:?}"
    );
    let got = repeated(
        "Nov 22 08:04:00 mx postfix/smtpd[3420]: message repeated 5 times: [ warning: unknown[bad]: SASL LOGIN authentication failed: x]",
    );
    assert!(
        matches!((&got.parsed, got.count), (Parsed::Unrecognised(_), 5)),
        "{got:?}"
    );
    // Repeats of other messages are nothing.
    let got = repeated(
        "Nov 22 08:04:00 mx postfix/smtpd[3420]: message repeated 5000 times: [ warning: hostname x does not resolve to address 192.0.2.1: authentication failed]",
    );
    assert_eq!((got.parsed, got.capped), (Parsed::NotFailure, false));
}

#[test]
fn repeat_counts_are_capped_and_broken_repeats_reported() {
    for n in ["1001", "5000", "99999999999999999999999999"] {
        let got = repeated(&format!(
            "Nov 22 08:01:04 mx postfix/smtpd[3363]: message repeated {n} times: [ warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: x]"
        ));
        assert!(matches!(got.parsed, Parsed::Failure(_)), "{n}");
        assert_eq!((got.count, got.capped), (MAX_REPEAT, true), "{n}");
    }
    let got = repeated(
        "Nov 22 08:01:04 mx postfix/smtpd[3363]: message repeated 1000 times: [ warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: x]",
    );
    assert_eq!((got.count, got.capped), (1000, false));
    // Cut short (no closing bracket), or zero times: how many lines is unknown.
    for line in [
        "Nov 22 08:01:04 mx postfix/smtpd[3363]: message repeated 3 times: [ warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: x",
        "Nov 22 08:01:04 mx postfix/smtpd[3363]: message repeated 0 times: [ warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: x]",
    ] {
        let got = repeated(line);
        assert!(
            matches!(got.parsed, Parsed::Unrecognised(_)),
            "{line}: {got:?}"
        );
        assert_eq!((got.count, got.capped), (1, false));
    }
}

#[test]
fn parse_entry_reads_a_message_without_syslog_framing() {
    let timestamp = failure(
        "Nov 22 08:50:58 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: x",
    )
    .timestamp;
    let entry = Entry {
        timestamp,
        host: b"mx",
        program: b"postfix/submission/smtpd",
        message: b"warning: unknown[192.0.2.9]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=j",
    };
    let Parsed::Failure(f) = parse_entry(&entry) else {
        panic!()
    };
    assert_eq!(
        (f.ip.to_string().as_str(), f.service.as_str()),
        ("192.0.2.9", "postfix/submission/smtpd")
    );
}

#[test]
fn scan_block_finds_candidates_with_line_numbers_and_offsets() {
    let block = b"Nov 22 08:00:00 mx postfix/qmgr[1]: 4F1: removed\n\
Nov 22 08:00:01 mx postfix/smtpd[2]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x, sasl_username=a\n\
Nov 22 08:00:02 mx postfix/smtpd[2]: connect from unknown[192.0.2.1]\n\
Nov 22 08:00:03 mx postfix/smtpd[2]: warning: unknown[192.0.2.2]: SASL LOGIN authentication failed: authentication failed, sasl_username=b\n\
Nov 22 08:00:04 mx postfix/smtpd[2]: warning: unknown[192.0.2.3]: SASL LOGIN authentication failed: x";
    let parser = Parser::new(64 * 1024, "local");
    let mut found = Vec::new();
    let counts = parser.scan_block(block, 1000, 10, &years(), |f| found.push(f));
    assert!(found.iter().all(|f| (f.count, f.capped) == (1, false)));
    assert_eq!(
        counts,
        BlockCounts {
            lines: 5,
            too_long: 0
        }
    );
    let summary: Vec<(u64, u64, String)> = found
        .iter()
        .map(|f| match &f.parsed {
            Parsed::Failure(a) => (f.line_number, f.end_offset, a.ip.to_string()),
            other => panic!("{other:?}"),
        })
        .collect();
    let line_end = |n: usize| {
        1000 + block
            .split_inclusive(|&b| b == b'\n')
            .take(n)
            .map(<[u8]>::len)
            .sum::<usize>() as u64
    };
    assert_eq!(
        summary,
        vec![
            (12, line_end(2), "192.0.2.1".into()),
            (14, line_end(4), "192.0.2.2".into()),
            (15, line_end(5), "192.0.2.3".into()),
        ]
    );
}

#[test]
fn scan_block_gives_the_repeat_count() {
    let block = b"Nov 22 08:00:00 mx postfix/qmgr[1]: 4F1: removed\n\
Nov 22 08:00:01 mx postfix/smtpd[2]: message repeated 7 times: [ warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x]\n";
    let mut found = Vec::new();
    Parser::new(1024, "local").scan_block(block, 0, 0, &years(), |f| found.push(f));
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].line_number, found[0].count, found[0].capped),
        (2, 7, false)
    );
}

#[test]
fn scan_block_skips_overlong_candidates() {
    let mut block = b"Nov 22 08:00:01 mx postfix/smtpd[2]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x, sasl_username=".to_vec();
    block.extend(std::iter::repeat_n(b'a', 500));
    block.push(b'\n');
    block.extend_from_slice(b"next line\n");
    let parser = Parser::new(200, "local");
    let mut n = 0;
    let counts = parser.scan_block(&block, 0, 0, &years(), |_| n += 1);
    assert_eq!(
        (n, counts),
        (
            0,
            BlockCounts {
                lines: 2,
                too_long: 1
            }
        )
    );
}

/// Dovecot's login summaries: every form 2.2, 2.3 and 2.4 write, through syslog.
#[test]
fn dovecot_login_failure_summaries_in_every_form() {
    for (line, service, reason, user, mech, ip) in [
        (
            "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<admin>, method=PLAIN, rip=203.0.113.5, lip=192.0.2.1, TLS, session=<4Gq1nbYdoMzLqJv8>",
            "dovecot/imap-login",
            "auth failed, 1 attempts in 2 secs",
            Some("admin"),
            "PLAIN",
            "203.0.113.5",
        ),
        (
            "Nov 22 08:50:56 mx dovecot[812]: pop3-login: Aborted login (auth failed, 3 attempts in 10 secs): user=<info@example.org>, method=LOGIN, rip=::ffff:198.51.100.7, lip=::ffff:192.0.2.1, session=<x>",
            "dovecot/pop3-login",
            "auth failed, 3 attempts in 10 secs",
            Some("info@example.org"),
            "LOGIN",
            "198.51.100.7",
        ),
        (
            "Nov 22 08:50:57 mx dovecot: imap-login: Disconnected: Connection closed (auth failed, 1 attempts in 4 secs): user=<bob>, method=cram-md5, rip=2001:db8::7, lip=2001:db8::1, TLS, session=<y>",
            "dovecot/imap-login",
            "auth failed, 1 attempts in 4 secs",
            Some("bob"),
            "CRAM-MD5",
            "2001:db8::7",
        ),
        (
            "Nov 22 08:50:58 mx dovecot: submission-login: Client has quit the connection (auth failed, 2 attempts in 5 secs): user=<carol>, method=PLAIN, rip=192.0.2.77, lip=192.0.2.1, session=<z>",
            "dovecot/submission-login",
            "auth failed, 2 attempts in 5 secs",
            Some("carol"),
            "PLAIN",
            "192.0.2.77",
        ),
        (
            "Nov 22 08:50:59 mx dovecot: managesieve-login: Disconnected: Remote closed connection (auth failed, 1 attempts in 1 secs): user=<>, method=PLAIN, rip=192.0.2.78, lip=192.0.2.1, session=<w>",
            "dovecot/managesieve-login",
            "auth failed, 1 attempts in 1 secs",
            None,
            "PLAIN",
            "192.0.2.78",
        ),
        // 2.4
        (
            "2026-11-22T08:51:00.123456+01:00 mx dovecot[99]: imap-login: Login aborted: Connection closed (auth failed, 1 attempts in 2 secs) (auth_failed): user=<dave>, method=PLAIN, rip=192.0.2.79, lip=192.0.2.1, session=<v>",
            "dovecot/imap-login",
            "auth failed, 1 attempts in 2 secs",
            Some("dave"),
            "PLAIN",
            "192.0.2.79",
        ),
    ] {
        let f = failure(line);
        assert_eq!(f.service, service, "{line}");
        assert_eq!(f.reason, reason, "{line}");
        assert_eq!(f.username.as_deref(), user, "{line}");
        assert_eq!(f.mechanism, mech, "{line}");
        assert_eq!(f.ip.to_string(), ip, "{line}");
        assert_eq!(f.server, "mx");
        assert_eq!(f.client_hostname, None);
    }
}

#[test]
fn dovecot_usernames_are_data_the_address_and_method_are_the_servers() {
    for (user, note) in [
        (">, method=EVIL, rip=6.6.6.6", "a fake field list"),
        ("a\"b'c", "quotes"),
        (
            "x>, rip=6.6.6.6, lip=1.1.1.1, session=<s>): user=<y",
            "a fake summary",
        ),
        ("(auth failed, 9 attempts in 1 secs)", "the summary's words"),
        ("\\x1b[31mred", "escaped control characters"),
    ] {
        let line = format!(
            "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{user}>, method=PLAIN, rip=203.0.113.5, lip=192.0.2.1, TLS, session=<abc>"
        );
        let f = failure(&line);
        assert_eq!(f.ip.to_string(), "203.0.113.5", "{note}");
        assert_eq!(f.mechanism, "PLAIN", "{note}");
        assert_eq!(f.username.as_deref(), Some(user), "{note}");
    }
    // A username of 10 KB.
    let long = "u".repeat(10 * 1024);
    let line = format!(
        "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{long}>, method=PLAIN, rip=203.0.113.5, lip=192.0.2.1, session=<abc>"
    );
    assert_eq!(failure(&line).username.as_deref(), Some(long.as_str()));
    // Without a method field, a method inside the username is not taken.
    let line = "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=EVIL, rip=6.6.6.6>, rip=203.0.113.5, lip=192.0.2.1, session=<abc>";
    let f = failure(line);
    assert_eq!(f.ip.to_string(), "203.0.113.5");
    assert_eq!(f.mechanism, "");
    assert_eq!(f.username.as_deref(), Some("a>, method=EVIL, rip=6.6.6.6"));
    // A method that is no mechanism name (Dovecot logs only its own) is the client's text;
    // the username then has no closing `>` before the address: not read.
    let line = "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=LO <22>G, rip=203.0.113.5, lip=192.0.2.1";
    let f = failure(line);
    assert_eq!(f.ip.to_string(), "203.0.113.5");
    assert_eq!(f.mechanism, "");
    assert_eq!(f.username, None);
}

#[test]
fn dovecot_lines_that_are_not_failure_rows() {
    for line in [
        // 2.4's per-request form (its prefix holds the client's text) is not read.
        "Aug 30 00:10:57 auth(info@example.com,192.0.2.110,sasl:login)<CvN+E95Uf4e7eEnj>: Info: sql: Password mismatch (given password: x)",
        // 2.4's per-request prefix holds the client's username: it cannot forge an error.
        "Aug 30 00:10:57 auth(a)<s>: Error: x,192.0.2.110,sasl:login)<CvN>: Info: sql: Password mismatch",
        "Nov 22 08:50:55 mx dovecot: auth-worker(evil): Error: forged",
        // Other login-process lines, and an error that is not about authentication.
        "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (disconnected before greeting, waited 0 secs): user=<>, rip=192.0.2.1, lip=192.0.2.2",
        "Nov 22 08:50:55 mx dovecot: imap-login: Error: SSL_accept() failed: unknown protocol",
        // Another program.
        "Nov 22 08:50:55 mx sshd[1]: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, rip=192.0.2.1",
    ] {
        assert_eq!(outcome(line), Parsed::NotFailure, "{line}");
    }
    // No attempt, or plaintext refused: no password was tried; counted.
    for (line, counted) in [
        (
            "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (no auth attempts in 0 secs): user=<>, rip=192.0.2.1, lip=192.0.2.2, session=<a>",
            Counted::NoAuthAttempts,
        ),
        (
            "Jun 13 20:48:11 platypus dovecot: pop3-login: Disconnected (no auth attempts): rip=121.44.24.254, lip=113.212.99.194, TLS: Disconnected",
            Counted::NoAuthAttempts,
        ),
        (
            "Aug 22 12:09:41 server dovecot: imap-login: Login aborted: Connection closed: read(size=653) failed: Connection reset by peer (no auth attempts in 1 secs) (no_auth_attempts): user=<>, rip=192.0.2.6, lip=192.0.2.1, session=<q>",
            Counted::NoAuthAttempts,
        ),
        // The summary's words only in the client's username.
        (
            "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (no auth attempts in 0 secs): user=<(auth failed, 1 attempts in 2 secs)>, rip=192.0.2.1, lip=192.0.2.2, session=<a>",
            Counted::NoAuthAttempts,
        ),
        (
            "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (tried to use disallowed plaintext auth): user=<>, rip=192.0.2.1, lip=192.0.2.2, session=<a>",
            Counted::PlaintextRefused,
        ),
        (
            "Dec 12 11:19:11 dunnart dovecot: pop3-login: Aborted login (tried to use disabled plaintext auth): rip=190.210.136.21, lip=113.212.99.193",
            Counted::PlaintextRefused,
        ),
    ] {
        assert_eq!(outcome(line), Parsed::Counted(counted), "{line}");
    }
    // The summary, with an address that is none.
    assert!(matches!(
        outcome(
            "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, rip=not-an-ip, lip=192.0.2.2"
        ),
        Parsed::Unrecognised(_)
    ));
}

#[test]
fn dovecot_verdicts_tell_existing_usernames_from_unknown_ones() {
    // Not rows (the login summary is): whether the username exists.
    for (line, user, ip, known) in [
        (
            "Nov 22 08:50:55 mx dovecot: auth: passwd-file(admin,192.0.2.1,<a>): unknown user",
            "admin",
            "192.0.2.1",
            false,
        ),
        (
            "Jan 29 05:13:50 mail dovecot: auth: passwd-file(username,1.2.3.4): unknown user",
            "username",
            "1.2.3.4",
            false,
        ),
        (
            "Jan 29 18:55:55 mail dovecot: auth-worker(12182): pam(user,192.0.2.4): pam_authenticate() failed: Authentication failure (Password mismatch?)",
            "user",
            "192.0.2.4",
            true,
        ),
        (
            "Jun 11 13:57:17 main dovecot: auth: sql(admin@example.ru,192.168.144.226,<6rXunFtu493AqJDi>): Password mismatch",
            "admin@example.ru",
            "192.168.144.226",
            true,
        ),
        (
            "Jun 11 13:57:17 main dovecot: auth: ldap(user@server.org,192.168.178.25,<LZmGp6mZaMrAqLIZ>): Password mismatch (for LDAP bind) (SHA1 of given password: f638ff)",
            "user@server.org",
            "192.168.178.25",
            true,
        ),
        (
            "Jun 12 11:48:12 auth-worker(80180): Info: conn unix:auth-worker (uid=143): auth-worker<13247>: sql(support,192.0.2.6): unknown user",
            "support",
            "192.0.2.6",
            false,
        ),
        (
            "Mar 23 06:10:52 auth: Info: ldap(dog,52.37.139.121,): invalid credentials",
            "dog",
            "52.37.139.121",
            true,
        ),
        // A username that fakes a verdict and an address: the server's last `): ` decides.
        (
            "Nov 22 08:50:55 mx dovecot: auth: passwd-file(x,6.6.6.6): Password mismatch, a): unknown user,192.0.2.9,<s>): unknown user",
            "x,6.6.6.6): Password mismatch, a): unknown user",
            "192.0.2.9",
            false,
        ),
    ] {
        let Parsed::Verdict(v) = outcome(line) else {
            panic!("{line}: {:?}", outcome(line));
        };
        assert_eq!(
            (v.username.as_str(), v.ip.to_string(), v.known_user),
            (user, ip.to_owned(), known),
            "{line}"
        );
    }
    for line in [
        "Nov 22 08:50:55 mx dovecot: auth: passwd-file(admin,not-an-ip): unknown user",
        "Nov 22 08:50:55 mx dovecot: auth: passwd-file(admin,192.0.2.1): some other text",
        "Nov 22 08:50:55 mx dovecot: auth: Passwd-File(admin,192.0.2.1): unknown user",
    ] {
        assert_eq!(outcome(line), Parsed::NotFailure, "{line}");
    }
}

#[test]
fn dovecot_logins_are_logins_read_from_the_server_fields() {
    for (line, service, ip, user) in [
        (
            "Nov 22 08:50:55 mx dovecot: imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=7, TLS, session=<a>",
            "dovecot/imap-login",
            "192.0.2.1",
            Some("alice"),
        ),
        (
            "Nov 22 08:50:55 imap-login: Info: Login: user=<a>, method=PLAIN, rip=::ffff:192.0.2.3, lip=192.0.2.2, mpid=1, session=<a>",
            "dovecot/imap-login",
            "192.0.2.3",
            Some("a"),
        ),
        // A username that fakes the fields: the address is the server's last rip=.
        (
            "Nov 22 08:50:55 mx dovecot[7]: pop3-login: Login: user=<x>, method=EVIL, rip=6.6.6.6>, method=PLAIN, rip=2001:db8::9, lip=::1, mpid=8, session=<b>",
            "dovecot/pop3-login",
            "2001:db8::9",
            Some("x>, method=EVIL, rip=6.6.6.6"),
        ),
    ] {
        let Parsed::Login(l) = outcome(line) else {
            panic!("{line}: not a login");
        };
        assert_eq!(
            (
                l.service.as_str(),
                l.ip.to_string(),
                l.username.as_deref(),
                l.mechanism.as_str()
            ),
            (service, ip.to_owned(), user, "PLAIN"),
            "{line}"
        );
        assert_eq!(l.reason, "");
    }
    // A login whose address is none is said, not dropped.
    assert!(matches!(
        outcome(
            "Nov 22 08:50:55 mx dovecot: imap-login: Login: user=<a>, method=PLAIN, rip=nowhere, lip=192.0.2.2"
        ),
        Parsed::Unrecognised(_)
    ));
}

#[test]
fn dovecot_auth_side_failures_are_backend_failures() {
    for (line, client) in [
        (
            "Nov 22 08:50:55 mx dovecot: auth: Fatal: Unknown passdb driver 'ldapx'",
            None,
        ),
        (
            "Nov 22 08:50:55 mx dovecot: auth-worker(812): Error: mysql(localhost): Connect failed to database (mail): Can't connect",
            None,
        ),
        (
            "Nov 22 08:50:55 auth: Error: LDAP: Can't connect to server: ldap.example.org",
            None,
        ),
        (
            "Nov 22 08:50:55 mx dovecot: imap-login: Warning: Auth process not responding, delayed sending initial response (greeting)",
            None,
        ),
        (
            "Nov 22 08:50:55 mx dovecot: imap-login: Error: Timeout waiting for handshake from auth server. my pid=1, input bytes=0",
            None,
        ),
        (
            "Nov 22 08:50:55 mx dovecot: imap-login: Disconnected: Auth process broken (disconnected before auth was ready, waited 0 secs): user=<>, rip=192.0.2.44, lip=192.0.2.1",
            Some("192.0.2.44"),
        ),
    ] {
        let Parsed::Backend(b) = outcome(line) else {
            panic!("{line}: not a backend failure");
        };
        let BackendKind::AuthProcess { client: c } = b.kind else {
            panic!("{line}: {b:?}");
        };
        assert_eq!(c.map(|c| c.to_string()).as_deref(), client, "{line}");
        assert!(b.to_string().contains("journalctl -u dovecot"), "{b}");
    }
}

#[test]
fn dovecot_own_log_file_lines_are_rows_of_the_configured_server() {
    for (line, service, ip) in [
        (
            "Nov 22 08:50:55 imap-login: Info: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, session=<a>",
            "dovecot/imap-login",
            "192.0.2.1",
        ),
        (
            "Nov 22 08:50:56 pop3-login: Info: Aborted login (auth failed, 3 attempts in 10 secs): user=<b>, method=PLAIN, rip=::ffff:198.51.100.7, lip=::1, session=<b>",
            "dovecot/pop3-login",
            "198.51.100.7",
        ),
    ] {
        let f = failure(line);
        assert_eq!(
            (f.server.as_str(), f.service.as_str(), f.ip.to_string()),
            ("local", service, ip.to_owned()),
            "{line}"
        );
        assert_eq!(f.mechanism, "PLAIN", "{line}");
        assert!(f.reason.starts_with("auth failed, "), "{line}");
    }
    // A host field never ends with `:`; a syslog line whose program is `Info` stays a syslog
    // line, and a log-file line without a level is not one.
    for line in [
        "Nov 22 08:50:55 mx Info: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, rip=192.0.2.1",
        "Nov 22 08:50:55 imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, rip=192.0.2.1",
        "Nov 22 08:50:55 : Info: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, rip=192.0.2.1",
    ] {
        assert!(!matches!(outcome(line), Parsed::Failure(_)), "{line}");
    }
}

#[test]
fn the_prefilter_finds_both_phrases_in_one_pass() {
    let p = Prefilter::default();
    assert!(p.matches(b"x authentication failed"));
    assert!(p.matches(b"xy (auth failed, 1"));
    assert!(p.matches(b"Q: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u"));
    assert!(p.matches(b"dovecot: imap-login: Login: user=<a>"));
    assert!(p.matches(b"dovecot: auth: Fatal: x"));
    assert!(!p.matches(b"nothing here, not even a failed thing"));
    assert!(!p.matches(b"disconnect from x[192.0.2.1] ehlo=1 auth=0/1 quit=1 commands=2/3"));
    let parser = Parser::new(4096, "local");
    let block = b"Nov 22 08:50:55 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.2\nNov 22 08:50:58 mx postfix/smtpd[3363]: warning: unknown[192.0.2.8]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
    let mut ips = Vec::new();
    parser.scan_block(block, 0, 0, &years(), |f| {
        if let Parsed::Failure(a) = f.parsed {
            ips.push(a.ip.to_string());
        }
    });
    assert_eq!(ips, ["192.0.2.9", "192.0.2.8"]);
}
