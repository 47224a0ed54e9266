//! Real MaxMind DB files for the enrichment tests, written with mmdb-writer in the two record
//! layouts the program reads: DB-IP Lite / GeoLite2 (separate country and ASN files) and IPinfo
//! Lite (one file with both, every field a string: `country` is the country's name, the code is
//! `country_code`).

use std::path::Path;

use ipnet::IpNet;
use serde::Serialize;

#[derive(Serialize)]
struct IsoCode<'a> {
    iso_code: &'a str,
}

#[derive(Serialize)]
struct DbipCountry<'a> {
    country: IsoCode<'a>,
}

#[derive(Serialize)]
struct DbipAsn<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: &'a str,
}

/// IPinfo Lite's record, as its `ipinfo_lite.mmdb` has it (all strings).
#[derive(Serialize)]
struct IpinfoLite<'a> {
    country: &'a str,
    country_code: &'a str,
    continent: &'a str,
    continent_code: &'a str,
    asn: String,
    as_name: &'a str,
    as_domain: &'a str,
}

/// (country name, continent name, continent code) of a test network's country code.
fn place(cc: &str) -> (&'static str, &'static str, &'static str) {
    match cc {
        "FR" => ("France", "Europe", "EU"),
        "DE" => ("Germany", "Europe", "EU"),
        "BR" => ("Brazil", "South America", "SA"),
        "JP" => ("Japan", "Asia", "AS"),
        other => panic!("no test place for {other}"),
    }
}

/// Networks in the test databases: (network, country, AS number, AS organisation).
pub const NETWORKS: [(&str, &str, u32, &str); 4] = [
    ("192.0.2.0/24", "FR", 64500, "Example Networks SAS"),
    (
        "198.51.100.0/24",
        "DE",
        64501,
        "=Spreadsheet Injection GmbH",
    ),
    ("203.0.113.0/24", "BR", 64502, "Exemplo Telecom"),
    ("2001:db8::/32", "JP", 64503, "Example IPv6 KK"),
];

/// Writes DB-IP-style country and ASN databases.
pub fn write_dbip(country: &Path, asn: &Path) {
    let mut c = mmdb_writer::Writer::new("DBIP-Country-Lite");
    let mut a = mmdb_writer::Writer::new("DBIP-ASN-Lite (compat=GeoLite2-ASN)");
    for (net, cc, num, org) in NETWORKS {
        let net: IpNet = net.parse().unwrap();
        c.insert(
            net,
            &DbipCountry {
                country: IsoCode { iso_code: cc },
            },
        )
        .unwrap();
        a.insert(
            net,
            &DbipAsn {
                autonomous_system_number: num,
                autonomous_system_organization: org,
            },
        )
        .unwrap();
    }
    std::fs::write(country, c.to_bytes().unwrap()).unwrap();
    std::fs::write(asn, a.to_bytes().unwrap()).unwrap();
}

/// Writes one database in IPinfo Lite's layout (country and AS in one record); `shift` changes
/// the AS numbers (to tell a replaced database from the old one).
pub fn write_ipinfo(path: &Path, shift: u32) {
    let mut w = mmdb_writer::Writer::new("ipinfo lite.mmdb");
    for (net, cc, num, org) in NETWORKS {
        let net: IpNet = net.parse().unwrap();
        let (country, continent, continent_code) = place(cc);
        w.insert(
            net,
            &IpinfoLite {
                country,
                country_code: cc,
                continent,
                continent_code,
                asn: format!("AS{}", num + shift),
                as_name: org,
                as_domain: "example.net",
            },
        )
        .unwrap();
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, w.to_bytes().unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
