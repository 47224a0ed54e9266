//! Enrichment with real parts: a DNS server on loopback, .mmdb files in both layouts.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::dns_server::{DnsServer, Zone};
use crate::mmdb;
use crate::support::*;

fn zone() -> Zone {
    Zone::default()
        .host("192.0.2.10", "mail.example.net")
        .host("2001:db8::5", "v6.example.net")
        .liar("192.0.2.66", "bank.example.com", Some("198.51.100.99"))
        .servfail("198.51.100.50")
        .silent("203.0.113.9")
}

fn failure_from(ip: &str, user: &str) -> String {
    format!(
        "Nov 22 08:01:04 mx postfix/submission/smtpd[77]: warning: unknown[{ip}]: SASL LOGIN authentication failed: (reason unavailable), sasl_username={user}\n"
    )
}

fn enrich_config(dir: &Path, dns: &DnsServer, country: &Path, asn: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{d}/mail.log\"]\nstate_dir = \"{d}/state\"\njournal = false\npoll_interval = \"200ms\"\n\n[output]\ncsv = \"{d}/out.csv\"\n\n[enrich]\ndns_servers = [\"{}\"]\ndns_timeout = \"500ms\"\ncountry_db = \"{}\"\nasn_db = \"{}\"\n{extra}\n",
            dns.addr,
            country.display(),
            asn.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}

/// (ip, reverse_dns, dns_status, country, asn, as_org) of each row.
fn enrichment_columns(csv: &str) -> Vec<[String; 6]> {
    let mut rdr = ::csv::ReaderBuilder::new().from_reader(csv.as_bytes());
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            [3, 8, 9, 10, 11, 12].map(|i| r.get(i).unwrap().to_string())
        })
        .collect()
}

fn row(ip: &str, name: &str, status: &str, cc: &str, asn: &str, org: &str) -> [String; 6] {
    [ip, name, status, cc, asn, org].map(str::to_string)
}

#[test]
fn scan_fills_reverse_dns_country_and_as_in_dbip_layout() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(zone());
    let (country, asn) = (dir.path().join("country.mmdb"), dir.path().join("asn.mmdb"));
    mmdb::write_dbip(&country, &asn);
    let cfg = enrich_config(dir.path(), &dns, &country, &asn, "");
    let log = dir.path().join("mail.log");
    let lines: String = [
        ("192.0.2.10", "ok"),
        ("198.51.100.7", "nx"),
        ("203.0.113.9", "silent"),
        ("192.0.2.66", "liar"),
        ("198.51.100.50", "servfail"),
        ("2001:db8::5", "v6"),
    ]
    .iter()
    .map(|(ip, u)| failure_from(ip, u))
    .collect();
    std::fs::write(&log, lines).unwrap();
    set_mtime(&log, fixture_mtime());
    let o = run(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "-o",
        "-",
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = enrichment_columns(&stdout(&o));
    assert_eq!(
        got,
        vec![
            row(
                "192.0.2.10",
                "mail.example.net",
                "ok",
                "FR",
                "64500",
                "Example Networks SAS"
            ),
            row(
                "198.51.100.7",
                "",
                "nxdomain",
                "DE",
                "64501",
                "'=Spreadsheet Injection GmbH"
            ),
            row(
                "203.0.113.9",
                "",
                "timeout",
                "BR",
                "64502",
                "Exemplo Telecom"
            ),
            row(
                "192.0.2.66",
                "bank.example.com",
                "mismatch",
                "FR",
                "64500",
                "Example Networks SAS"
            ),
            row(
                "198.51.100.50",
                "",
                "servfail",
                "DE",
                "64501",
                "'=Spreadsheet Injection GmbH"
            ),
            row(
                "2001:db8::5",
                "v6.example.net",
                "ok",
                "JP",
                "64503",
                "Example IPv6 KK"
            ),
        ]
    );
}

#[test]
fn ipinfo_layout_in_one_file_and_dns_off() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(zone());
    let db = dir.path().join("ipinfo_lite.mmdb");
    mmdb::write_ipinfo(&db, 0);
    let cfg = enrich_config(dir.path(), &dns, &db, &db, "reverse_dns = false");
    let log = dir.path().join("mail.log");
    std::fs::write(
        &log,
        failure_from("203.0.113.77", "a") + &failure_from("10.1.2.3", "b"),
    )
    .unwrap();
    let o = run(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "-o",
        "-",
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        enrichment_columns(&stdout(&o)),
        vec![
            row(
                "203.0.113.77",
                "",
                "disabled",
                "BR",
                "64502",
                "Exemplo Telecom"
            ),
            row("10.1.2.3", "", "disabled", "", "", ""),
        ]
    );
    assert_eq!(
        dns.queries.load(Ordering::Relaxed),
        0,
        "reverse_dns = false sends no query"
    );
}

#[test]
fn a_corrupt_or_missing_database_is_one_warning_and_empty_columns() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(zone());
    let corrupt = dir.path().join("corrupt.mmdb");
    std::fs::write(&corrupt, b"this is not a MaxMind database\n").unwrap();
    let missing = dir.path().join("missing.mmdb");
    let cfg = enrich_config(dir.path(), &dns, &corrupt, &missing, "");
    let log = dir.path().join("mail.log");
    std::fs::write(&log, failure_from("192.0.2.10", "a")).unwrap();
    let o = run(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "-o",
        "-",
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches(corrupt.to_str().unwrap()).count(), 1, "{err}");
    assert_eq!(err.matches(missing.to_str().unwrap()).count(), 1, "{err}");
    assert!(err.contains("geoip update"), "{err}");
    assert_eq!(
        enrichment_columns(&stdout(&o)),
        vec![row("192.0.2.10", "mail.example.net", "ok", "", "", "")]
    );
}

#[test]
fn one_query_per_address_however_many_lines() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(zone().delayed(Duration::from_millis(50)));
    let db = dir.path().join("ipinfo.mmdb");
    mmdb::write_ipinfo(&db, 0);
    let cfg = enrich_config(dir.path(), &dns, &db, &db, "");
    let log = dir.path().join("mail.log");
    let lines: String = (0..300)
        .map(|i| {
            failure_from(
                if i % 2 == 0 {
                    "192.0.2.10"
                } else {
                    "198.51.100.7"
                },
                "x",
            )
        })
        .collect();
    std::fs::write(&log, lines).unwrap();
    let o = run(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "-o",
        "-",
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(enrichment_columns(&stdout(&o)).len(), 300);
    // 192.0.2.10: PTR + A + AAAA for the forward check; 198.51.100.7: one PTR. Concurrent lookups
    // of one address were coalesced, later ones served from the cache.
    let q = dns.queries.load(Ordering::Relaxed);
    assert!(q <= 4, "{q} queries for 2 addresses");
}

#[test]
fn lookup_prints_what_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(zone());
    let (country, asn) = (dir.path().join("country.mmdb"), dir.path().join("asn.mmdb"));
    mmdb::write_dbip(&country, &asn);
    let cfg = enrich_config(dir.path(), &dns, &country, &asn, "");
    let o = run(&[
        "lookup",
        "-c",
        cfg.to_str().unwrap(),
        "192.0.2.10",
        "192.0.2.66",
        "198.51.100.7",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("192.0.2.10\n  reverse DNS: mail.example.net (ok)\n  country:     FR\n  AS:          AS64500 Example Networks SAS\n"), "{out}");
    assert!(
        out.contains("bank.example.com (mismatch: does not resolve back to 192.0.2.66)"),
        "{out}"
    );
    assert!(
        out.contains("198.51.100.7\n  reverse DNS: - (nxdomain)\n  country:     DE"),
        "{out}"
    );
    let bad = run(&["lookup", "not-an-ip"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_daemon_enriches_and_picks_up_a_replaced_database() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(zone());
    let db = dir.path().join("ipinfo.mmdb");
    mmdb::write_ipinfo(&db, 0);
    let cfg = enrich_config(dir.path(), &dns, &db, &db, "");
    let log = dir.path().join("mail.log");
    append(&log, &failure_from("192.0.2.10", "before"));
    let out = dir.path().join("out.csv");
    let mut d = Daemon::start(&cfg, dir.path());
    let rows = || enrichment_columns(&std::fs::read_to_string(&out).unwrap_or_default());
    assert!(
        wait_until(Duration::from_secs(15), || rows().len() == 1),
        "{}",
        d.logged()
    );
    assert_eq!(
        rows()[0],
        row(
            "192.0.2.10",
            "mail.example.net",
            "ok",
            "FR",
            "64500",
            "Example Networks SAS"
        )
    );
    // A new database renamed into place is picked up without a signal, and on SIGHUP.
    for (n, (shift, hup, want)) in [(1000, false, "65500"), (2000, true, "66500")]
        .into_iter()
        .enumerate()
    {
        mmdb::write_ipinfo(&db, shift);
        if hup {
            d.signal("HUP");
        }
        let opened = n + 2; // the start, then once per replacement
        assert!(
            wait_until(Duration::from_secs(20), || d
                .logged()
                .matches("ASN database")
                .count()
                >= opened),
            "{}",
            d.logged()
        );
        append(&log, &failure_from("192.0.2.10", &format!("after{n}")));
        assert!(
            wait_until(Duration::from_secs(15), || rows().len() == n + 2),
            "{}",
            d.logged()
        );
        assert_eq!(rows()[n + 1][4], want);
    }
    assert!(d.running());
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_dead_dns_server_costs_one_timeout_not_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    // Forty distinct addresses the server never answers for.
    let mut z = Zone::default();
    let ips: Vec<String> = (1..=40).map(|i| format!("203.0.113.{i}")).collect();
    for ip in &ips {
        z = z.silent(ip);
    }
    let dns = DnsServer::start(z);
    let db = dir.path().join("ipinfo.mmdb");
    mmdb::write_ipinfo(&db, 0);
    let cfg = enrich_config(dir.path(), &dns, &db, &db, "");
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    let lines: String = ips.iter().map(|ip| failure_from(ip, "x")).collect();
    let start = std::time::Instant::now();
    append(&log, &lines);
    assert!(
        wait_until(Duration::from_secs(15), || usernames(&out).len() == 40),
        "{}",
        d.logged()
    );
    let took = start.elapsed();
    // Not a speed bound, a concurrency check: with dns_timeout 500 ms, looking the 40 addresses
    // up one after the other would need 20 s; concurrent lookups need about one timeout.
    assert!(
        took < Duration::from_secs(10),
        "40 rows took {took:?}: lookups ran one at a time"
    );
    let rows = enrichment_columns(&std::fs::read_to_string(&out).unwrap());
    assert!(
        rows.iter().all(|r| r[2] == "timeout" && r[3] == "BR"),
        "{rows:?}"
    );
    // Said once (not forty times), counted forty times.
    assert_eq!(
        d.logged()
            .matches("reverse DNS: the servers do not answer")
            .count(),
        1,
        "{}",
        d.logged()
    );
    let o = run(&["status", "--json", "-c", cfg.to_str().unwrap()]);
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["enrichment"]["dns_timeouts"], 40, "{s}");
    assert_eq!(d.stop(), Some(0));
}
