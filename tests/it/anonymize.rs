//! `anonymize`: every fixture rewritten, then scanned: the same events, with every address,
//! username, server and client name replaced consistently, and none of the originals left.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::support::*;

const LOGS: [&str; 7] = [
    "anonymize.log",
    "mail.log",
    "dovecot.log",
    "forms.log",
    "iso.log",
    "dst.log",
    "newyear.log",
];

/// `scan --no-enrich` of a file: the failure rows and the login rows, as fields.
fn scanned(path: &std::path::Path) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let dir = path.parent().unwrap();
    let logins = dir.join(format!(
        "{}.logins.csv",
        path.file_name().unwrap().to_str().unwrap()
    ));
    let o = run(&[
        "scan",
        "--no-enrich",
        "-o",
        "-",
        "--logins",
        logins.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = |text: &str| -> Vec<Vec<String>> {
        csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    };
    let login_rows = rows(&std::fs::read_to_string(&logins).unwrap());
    (rows(&stdout(&o)), login_rows)
}

/// Column numbers of the CSV.
const TIMESTAMP: usize = 0;
const SERVER: usize = 1;
const SERVICE: usize = 2;
const IP: usize = 3;
const USERNAME: usize = 4;
const MECHANISM: usize = 5;
const REASON: usize = 6;
const CLIENT: usize = 7;

/// Each value of one column maps to exactly one value of the other, both ways.
fn one_to_one(
    pairs: &mut HashMap<String, String>,
    back: &mut HashMap<String, String>,
    a: &str,
    b: &str,
) {
    let f = pairs.entry(a.to_owned()).or_insert_with(|| b.to_owned());
    assert_eq!(f, b, "{a} was replaced by both {f} and {b}");
    let r = back.entry(b.to_owned()).or_insert_with(|| a.to_owned());
    assert_eq!(r, a, "{b} stands for both {r} and {a}");
}

/// `anonymize INPUT OUTPUT`, which must succeed with every line kept.
fn anonymized(input: &std::path::Path, output: &std::path::Path) {
    let o = run(&[
        "anonymize",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{}: {err}", input.display());
    assert!(!err.contains("left out"), "{}: {err}", input.display());
}

/// The rows of the original and of the anonymized file, paired: as many of each, the columns
/// nothing identifies unchanged, and the others replaced one to one.
fn paired<'a>(
    name: &str,
    original: &'a (Vec<Vec<String>>, Vec<Vec<String>>),
    shared: &'a (Vec<Vec<String>>, Vec<Vec<String>>),
) -> Vec<(&'a Vec<String>, &'a Vec<String>)> {
    assert_eq!(original.0.len(), shared.0.len(), "{name}: failures");
    assert_eq!(original.1.len(), shared.1.len(), "{name}: logins");
    let mut maps: Vec<(HashMap<String, String>, HashMap<String, String>)> =
        (0..4).map(|_| Default::default()).collect();
    let pairs: Vec<_> = original
        .0
        .iter()
        .zip(&shared.0)
        .chain(original.1.iter().zip(&shared.1))
        .collect();
    for (a, b) in &pairs {
        for col in [TIMESTAMP, SERVICE, MECHANISM, REASON] {
            assert_eq!(a[col], b[col], "{name}: column {col} changed");
        }
        for (k, col) in [SERVER, IP, USERNAME, CLIENT].into_iter().enumerate() {
            let (fwd, back) = &mut maps[k];
            one_to_one(fwd, back, &a[col], &b[col]);
        }
    }
    pairs
}

#[test]
fn every_fixture_keeps_its_events_with_everything_identifying_replaced() {
    let dir = tempfile::tempdir().unwrap();
    for name in LOGS {
        let input = fixture_copy(dir.path(), name);
        let output = dir.path().join(format!("anon-{name}"));
        anonymized(&input, &output);
        let original = std::fs::read_to_string(&input).unwrap();
        let shared = std::fs::read_to_string(&output).unwrap();
        assert_eq!(original.lines().count(), shared.lines().count(), "{name}");
        // Consistent within a run (each file is one, with a secret of its own).
        let (rows_in, rows_out) = (scanned(&input), scanned(&output));
        assert!(
            !rows_in.0.is_empty() || !rows_in.1.is_empty(),
            "{name} has no events"
        );
        for (a, b) in paired(name, &rows_in, &rows_out) {
            let ip: IpAddr = a[IP].parse().unwrap();
            let new: IpAddr = b[IP].parse().unwrap();
            if !ip.is_loopback() {
                let doc = match new {
                    IpAddr::V4(v) => {
                        let o = v.octets();
                        [[192, 0, 2], [198, 51, 100], [203, 0, 113]].contains(&[o[0], o[1], o[2]])
                    }
                    IpAddr::V6(v) => v.segments()[..2] == [0x2001, 0x0db8],
                };
                assert!(
                    doc,
                    "{name}: {ip} became {new}, not a documentation address"
                );
            }
            // What identified someone is nowhere in the shared file. (The fixtures' addresses
            // are documentation addresses already, so one may come back as the replacement of
            // another: an address itself is only never kept.)
            if !ip.is_loopback() {
                assert_ne!(a[IP], b[IP], "{name}: an address was kept");
            }
            // A username may be any text, also words of the log's own ("authentication
            // failed"): what must be gone is where it stood as a name.
            for col in [USERNAME, CLIENT] {
                // (The record escapes a value a spreadsheet would run with a leading quote.)
                let v = a[col].strip_prefix('\'').unwrap_or(&a[col]);
                if v.len() >= 3 && v != "unknown" {
                    assert!(
                        shared.matches(v).count() < original.matches(v).count(),
                        "{name}: {v} is still in the output where it was"
                    );
                }
            }
            assert!(
                b[USERNAME].is_empty() || b[USERNAME].starts_with("user-"),
                "{name}: {:?}",
                b[USERNAME]
            );
        }
    }
}

#[test]
fn each_run_draws_its_own_secret_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture_copy(dir.path(), "mail.log");
    let out = |n: &str| {
        let p = dir.path().join(n);
        let o = run(&["anonymize", input.to_str().unwrap(), p.to_str().unwrap()]);
        (o, p)
    };
    let (o, first) = out("a.log");
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, second) = out("b.log");
    assert_ne!(
        std::fs::read_to_string(&first).unwrap(),
        std::fs::read_to_string(&second).unwrap(),
        "two runs gave the same replacements: the secret is not random"
    );
    let before = std::fs::read(&first).unwrap();
    let (o, _) = out("a.log");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("never overwritten"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&first).unwrap(), before);
}

#[path = "../../benches/support/loggen.rs"]
#[allow(dead_code)]
mod loggen;

#[test]
fn the_benchmark_log_keeps_its_events() {
    // The generator the benchmarks use (Postfix and Dovecot, thousands of addresses, IPv6 and
    // hostile usernames), 2 MB of it: the same failures, logins and counted lines, row by row.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bench.log");
    let spec = loggen::Spec {
        bytes: 2_000_000,
        failures_per_10k: 1500,
        attacker_ips: 0,
        seed: 7,
        dovecot: true,
    };
    let generated = loggen::generate(&spec, &mut std::fs::File::create(&input).unwrap()).unwrap();
    set_mtime(&input, fixture_mtime());
    let output = dir.path().join("shared.log");
    anonymized(&input, &output);
    let (rows_in, rows_out) = (scanned(&input), scanned(&output));
    assert_eq!(rows_in.0.len() as u64, generated.failures);
    assert_eq!(rows_in.1.len() as u64, generated.logins);
    paired("the benchmark log", &rows_in, &rows_out);
    // The other lines too: scan's counts of what is not a row are the same.
    let counts = |p: &std::path::Path| {
        let o = run(&[
            "scan",
            "--no-enrich",
            "-o",
            "/dev/null",
            p.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        let at = err.find("scanned: ").expect("a summary");
        let summary = &err[at..];
        // Without the byte count, which the replacements change.
        let (lines, rest) = summary.split_once(" lines (").unwrap();
        format!("{lines} {}", rest.split_once(" bytes), ").unwrap().1)
    };
    assert_eq!(counts(&input), counts(&output));
}

#[test]
fn nothing_that_identifies_someone_survives_in_any_form() {
    // tests/data/anonymize.log holds real-looking data in the forms a log carries it: a host
    // in the header, in `helo=` and `<root@mx1>`, IPv6 after `IPv6:` and `smtp:` and before a
    // colon, IPv4 ending a sentence, mail addresses in the envelope and `sasl_sender=`,
    // Dovecot's `imap(user)` and session ids (which encode the client's address).
    let dir = tempfile::tempdir().unwrap();
    let input = fixture_copy(dir.path(), "anonymize.log");
    let output = dir.path().join("shared.log");
    anonymized(&input, &output);
    let shared = std::fs::read_to_string(&output).unwrap();
    for secret in [
        "85.214.132.117",
        "93.184.216.34",
        "10.1.2.3",
        "2a01:4f8:c17:1b2::5",
        "corp-secret",
        "partner-firm",
        "evil-isp",
        "home-net",
        "example-dsl",
        "alice.smith",
        "bob.jones",
        "carol",
        "dave.w",
        "erin.k",
        "frank",
        "grace",
        "JOHNS-PC",
        "root@",
        "mx1",
        "Rm9vQmFyQmF6UXV4",
        "Zm9vYmFyYmF6cXV4",
        "QmF6UXV4Rm9vQmFy",
    ] {
        assert!(!shared.contains(secret), "{secret} survived:\n{shared}");
    }
    // The form survives: every line, its program, and a session id as long as before.
    assert_eq!(shared.lines().count(), 13, "{shared}");
    assert!(
        shared.contains(" dovecot: imap-login: Login: user=<user-"),
        "{shared}"
    );
    assert!(
        shared.contains("lost connection after AUTH from unknown[IPv6:2001:db8:"),
        "{shared}"
    );
    let session = shared
        .split("session=<")
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap();
    assert_eq!(session.len(), "Rm9vQmFyQmF6UXV4".len(), "{shared}");
}
