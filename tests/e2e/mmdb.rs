//! Writes the GeoIP databases the end-to-end test uses (DB-IP layout) into the directory given
//! as the first argument: `cargo run --example e2e-mmdb -- DIR`.

use std::path::Path;

use ipnet::IpNet;
use serde::Serialize;

#[derive(Serialize)]
struct Iso<'a> {
    iso_code: &'a str,
}

#[derive(Serialize)]
struct Country<'a> {
    country: Iso<'a>,
}

#[derive(Serialize)]
struct Asn<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: &'a str,
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: e2e-mmdb DIR");
    let dir = Path::new(&dir);
    let nets = [
        ("192.0.2.0/24", "FR", 64500, "Example Networks SAS"),
        ("198.51.100.0/24", "DE", 64501, "Beispiel Netz GmbH"),
        ("203.0.113.0/24", "BR", 64502, "Exemplo Telecom"),
        ("2001:db8::/32", "JP", 64503, "Example IPv6 KK"),
    ];
    let mut c = mmdb_writer::Writer::new("DBIP-Country-Lite");
    let mut a = mmdb_writer::Writer::new("DBIP-ASN-Lite");
    for (net, cc, asn, org) in nets {
        let net: IpNet = net.parse().unwrap();
        c.insert(
            net,
            &Country {
                country: Iso { iso_code: cc },
            },
        )
        .unwrap();
        a.insert(
            net,
            &Asn {
                autonomous_system_number: asn,
                autonomous_system_organization: org,
            },
        )
        .unwrap();
    }
    std::fs::write(dir.join("country.mmdb"), c.to_bytes().unwrap()).unwrap();
    std::fs::write(dir.join("asn.mmdb"), a.to_bytes().unwrap()).unwrap();
}
