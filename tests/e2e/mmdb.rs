//! Writes the GeoIP databases the end-to-end test uses (DB-IP layout, the same networks as the
//! integration tests' databases) into the directory given as the first argument:
//! `cargo run --example e2e-mmdb -- DIR`.

#[path = "../it/mmdb.rs"]
#[allow(dead_code)]
mod mmdb;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: e2e-mmdb DIR");
    let dir = std::path::Path::new(&dir);
    mmdb::write_dbip(&dir.join("country.mmdb"), &dir.join("asn.mmdb"));
}
