//! A day of attacks as the record holds it, for the report tests that look at what a person
//! sees: 297 failures from 40 addresses on mx1.example.org on 2026-11-22 (UTC), two of them
//! behind spoofed reverse DNS (`smtp.office365.com`, `mail.google.com`, which do not resolve
//! back), long provider host names, IPv6 addresses, and usernames in Japanese, with an emoji,
//! 120 characters long and hostile; and 265 failures the day before.

use std::path::{Path, PathBuf};

/// The day's window, as `report` takes it (UTC, so no zone changes it).
pub const FROM: &str = "2026-11-22T00:00:00+00:00";
/// Its end.
pub const TO: &str = "2026-11-23T00:00:00+00:00";
/// 2026-11-22T00:00:00Z.
const DAY: i64 = 1_795_305_600;

/// The usernames tried, in turn.
pub const USERS: [&str; 8] = [
    "info@example.org",
    "admin",
    "管理者",
    "postmaster@example.org",
    "<script>alert(1)</script>",
    "webmaster🔥",
    "=HYPERLINK(\"http://evil.example\")",
    "a-username-that-goes-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-and-on-x",
];

/// Address `i` of the 40 and what enrichment said of it: (ip, reverse DNS, dns_status,
/// country, ASN, AS organisation).
fn address(
    i: usize,
) -> (
    String,
    String,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
) {
    match i {
        0 => (
            "192.0.2.10".into(),
            "smtp.office365.com".into(),
            "mismatch",
            "VN",
            "7552",
            "Viettel Group",
        ),
        1 => (
            "192.0.2.11".into(),
            "mail.google.com".into(),
            "mismatch",
            "BR",
            "28573",
            "Claro NXT Telecomunicacoes Ltda",
        ),
        2..=29 => (
            format!("198.51.100.{}", i + 20),
            format!(
                "host-198-51-100-{}.dynamic-broadband.a-rather-long-provider-name.example.net",
                i + 20
            ),
            "ok",
            ["CN", "RU", "IN", "US", "ID"][i % 5],
            ["4134", "12389", "9829", "14061", "17974"][i % 5],
            [
                "CHINANET-BACKBONE No.31,Jin-rong Street",
                "Rostelecom",
                "National Internet Backbone",
                "DIGITALOCEAN-ASN",
                "PT Telekomunikasi Indonesia",
            ][i % 5],
        ),
        _ => (
            format!("2001:db8:4a3f:{:x}:1c2d:3e4f:5a6b:7c8d", i),
            String::new(),
            "nxdomain",
            "DE",
            "3320",
            "Deutsche Telekom AG",
        ),
    }
}

/// Writes the record (this program's CSV, header included) to `path`.
pub fn write(path: &Path) {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_path(path)
        .unwrap();
    w.write_record(maillogsentinel::sink::COLUMNS).unwrap();
    // The day before: 265 failures from ten of the same addresses.
    let mut rows: Vec<(i64, usize)> = (0..265)
        .map(|k| (DAY - 86_400 + k * 320, 2 + k as usize % 10))
        .collect();
    // The day: 30 and 25 from the two spoofed names, 7 from each of the next 14 addresses,
    // 6 from each of the last 24 (297 in all); a peak in the afternoon.
    let per_address = |i: usize| match i {
        0 => 30,
        1 => 25,
        2..=15 => 7,
        _ => 6,
    };
    let mut k = 0i64;
    for i in 0..40 {
        for _ in 0..per_address(i) {
            let hour = if k % 4 == 0 { 14 } else { (k * 7) % 24 };
            rows.push((DAY + hour * 3600 + (k * 37) % 3600, i));
            k += 1;
        }
    }
    assert_eq!(k, 297);
    rows.sort();
    for (n, (ts, i)) in rows.iter().enumerate() {
        let (ip, rdns, status, country, asn, org) = address(*i);
        let time = chrono::DateTime::from_timestamp(*ts, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let user = USERS[n % USERS.len()];
        // The record's spreadsheet guard, as the sink writes it.
        let user = if user.starts_with('=') {
            format!("'{user}")
        } else {
            user.to_string()
        };
        w.write_record([
            time.as_str(),
            "mx1.example.org",
            "postfix/submission/smtpd",
            &ip,
            &user,
            "LOGIN",
            "authentication failure",
            "",
            &rdns,
            status,
            country,
            asn,
            org,
        ])
        .unwrap();
    }
    w.flush().unwrap();
}

/// A directory with the record and a configuration reading it (no enrichment, mail to
/// `smtp_port` on loopback); returns the configuration's path.
pub fn setup(dir: &Path, smtp_port: u16) -> PathBuf {
    write(&dir.join("out.csv"));
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{d}/mail.log\"]\nserver = \"mx1.example.org\"\nstate_dir = \"{d}/state\"\njournal = false\n\n[output]\ncsv = \"{d}/out.csv\"\n\n{no_enrich}\n[report]\nto = [\"postmaster@example.org\"]\nfrom = \"sentinel@example.org\"\nsubject_prefix = \"[mx1]\"\nretry = \"1s\"\nschedule = \"\"\n\n[report.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\n",
            d = dir.display(),
            no_enrich = crate::support::NO_ENRICH,
        ),
    )
    .unwrap();
    cfg
}
