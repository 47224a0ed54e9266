//! Any bytes as one log line: the parser must never panic, and what it calls a failure must
//! satisfy the structure it claims to have checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maillogsentinel::parse::{Parsed, YearContext, parse_line};

fuzz_target!(|line: &[u8]| {
    let years = YearContext::now();
    if let Parsed::Failure(f) = parse_line(line, &years).parsed {
        assert!(f.service == "smtpd" || f.service.ends_with("/smtpd"), "{f:?}");
        assert!(!f.server.is_empty() && !f.server.contains(' '));
        assert!(!f.mechanism.is_empty() && !f.mechanism.contains(' '));
        // The IP is the bracketed field right after `warning: NAME`, checked independently.
        let text = String::from_utf8_lossy(line);
        let at = text.find(": warning: ").expect("a failure has a warning") + ": warning: ".len();
        let open = at + text[at..].find('[').expect("[");
        let close = open + text[open..].find(']').expect("]");
        let field = &text[open + 1..close];
        let field = field.split('%').next().unwrap();
        let parsed: std::net::IpAddr = field.parse().expect("the bracketed field is an IP");
        assert_eq!(parsed.to_canonical(), f.ip, "{text:?}");
        // RFC 3339 output always parses back.
        assert!(chrono_check(&f.timestamp.to_rfc3339()));
    }
});

fn chrono_check(s: &str) -> bool {
    s.len() >= 25 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T'
}
