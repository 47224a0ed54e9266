//! Country and AS lookups in MaxMind DB (`.mmdb`) files, memory-mapped.
//!
//! Two record layouts are read without the user saying which: DB-IP Lite / GeoLite2
//! (`country.iso_code`; `autonomous_system_number`, `autonomous_system_organization`) and
//! IPinfo Lite, which has both in one file and only strings (`country` is the country's name,
//! the code is `country_code`; `asn` as `"AS123"`, `as_name`; `continent`, `continent_code` and
//! `as_domain` are not used). Each field is read on its own, so a field of an unexpected type
//! empties that column only, never the whole record. A database is reopened when its file is
//! replaced (new inode or mtime), which is how `geoip update` and any careful updater (`mv`
//! into place) change it.

use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use maxminddb::{Mmap, Reader};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// One opened database and the identity of the file it came from.
pub struct Database {
    path: PathBuf,
    reader: Reader<Mmap>,
    identity: (u64, u64, i64),
}

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// Opening or reading failed.
    #[error("GeoIP database {path}: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A record of either layout. Each wanted field is decoded on its own and never fails on its
/// type: a field of another type than expected leaves that one field empty instead of the whole
/// record (IPinfo Lite's `country` is a name where GeoLite2's is a map, for one).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Record {
    /// DB-IP / GeoLite2: a map with `iso_code`. IPinfo Lite: the country's name (unused).
    country: Field,
    /// IPinfo Lite: `"DE"`.
    country_code: Field,
    /// DB-IP / GeoLite2 ASN layout.
    autonomous_system_number: Field,
    /// DB-IP / GeoLite2 ASN layout.
    autonomous_system_organization: Field,
    /// IPinfo Lite: `"AS13335"`.
    asn: Field,
    /// IPinfo Lite.
    as_name: Field,
}

/// One field of a record as far as a lookup cares.
#[derive(Debug, Default, PartialEq)]
enum Field {
    /// Not in the record.
    #[default]
    Absent,
    /// A string.
    Text(String),
    /// An unsigned (or non-negative) integer.
    Number(u64),
    /// A map, of which only `iso_code` is kept (GeoLite2's and DB-IP's `country`).
    Map {
        /// Its `iso_code`, when that is a string.
        iso_code: Option<String>,
    },
    /// Any other type (bool, float, bytes, array, negative or too large a number).
    Other,
}

impl Field {
    /// The text, unless empty or not text.
    fn text(self) -> Option<String> {
        match self {
            Field::Text(t) if !t.is_empty() => Some(t),
            _ => None,
        }
    }

    /// An AS number: a number, or text such as `"AS13335"` or `"13335"`.
    fn as_number(&self) -> Option<u32> {
        match self {
            Field::Number(n) => u32::try_from(*n).ok(),
            Field::Text(t) => {
                let digits = match t.get(..2) {
                    Some(p) if p.eq_ignore_ascii_case("as") => &t[2..],
                    _ => t.as_str(),
                };
                digits.parse().ok()
            }
            _ => None,
        }
    }

    /// A map's `iso_code`, unless empty.
    fn iso_code(self) -> Option<String> {
        match self {
            Field::Map { iso_code } => iso_code.filter(|c| !c.is_empty()),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

/// Takes any value: the types [`Field`] keeps, and the rest as [`Field::Other`] (skipped,
/// arrays and maps included, without decoding what they hold).
struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any MaxMind DB value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(Field::Text(v.to_owned()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field, E> {
        Ok(Field::Number(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Field, E> {
        Ok(u64::try_from(v).map_or(Field::Other, Field::Number))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field, E> {
        Ok(u64::try_from(v).map_or(Field::Other, Field::Number))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        Field::deserialize(d)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Field, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Field, A::Error> {
        let mut iso_code = None;
        while let Some(key) = map.next_key::<IsIsoCode>()? {
            if key.0 {
                iso_code = map.next_value::<Field>()?.text();
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(Field::Map { iso_code })
    }
}

/// A map key, as whether it is `iso_code` (read without allocating).
struct IsIsoCode(bool);

impl<'de> Deserialize<'de> for IsIsoCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IsIsoCode, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = IsIsoCode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map key")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<IsIsoCode, E> {
                Ok(IsIsoCode(v == "iso_code"))
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<IsIsoCode, E> {
                Ok(IsIsoCode(v == b"iso_code"))
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// Whether text looks like an ISO 3166 alpha-2 code (`"DE"`), not a country's name.
fn is_country_code(t: &str) -> bool {
    t.len() == 2 && t.bytes().all(|b| b.is_ascii_uppercase())
}

impl Record {
    /// What the record says, whichever layout it has.
    fn answer(self) -> GeoAnswer {
        let asn = self
            .autonomous_system_number
            .as_number()
            .or_else(|| self.asn.as_number());
        let country = match self.country {
            // IPinfo's older country_asn.mmdb has the code itself in `country`.
            Field::Text(t) if is_country_code(&t) => Some(t),
            other => other.iso_code(),
        }
        .or_else(|| self.country_code.text());
        GeoAnswer {
            country,
            asn,
            as_org: self
                .autonomous_system_organization
                .text()
                .or_else(|| self.as_name.text()),
        }
    }
}

/// What a database knows about an address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GeoAnswer {
    /// ISO 3166 country code.
    pub country: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Autonomous system organisation.
    pub as_org: Option<String>,
}

fn identity(path: &Path) -> std::io::Result<(u64, u64, i64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino(), m.mtime()))
}

impl Database {
    /// Opens and checks a database: it must map, have sane metadata and answer a lookup.
    pub fn open(path: &Path) -> Result<Database, GeoError> {
        let err = |message: String| GeoError::Open {
            path: path.to_path_buf(),
            message,
        };
        let identity = identity(path).map_err(|e| err(e.to_string()))?;
        // SAFETY: the mapped file must not be modified in place while mapped. Databases are
        // only ever replaced by rename (`geoip update` writes a new file and renames it over
        // the old one; the docs ask the same of other updaters), which leaves the mapped inode
        // untouched; a replaced file is noticed and mapped anew.
        #[allow(unsafe_code)]
        let reader = unsafe { Reader::open_mmap(path) }.map_err(|e| err(e.to_string()))?;
        let meta = reader.metadata();
        if meta.binary_format_major_version != 2 || meta.node_count == 0 {
            return Err(err(format!(
                "unexpected metadata (format {}.{}, {} nodes)",
                meta.binary_format_major_version, meta.binary_format_minor_version, meta.node_count
            )));
        }
        let probe: IpAddr = if meta.ip_version == 6 {
            "2001:db8::1"
        } else {
            "192.0.2.1"
        }
        .parse()
        .expect("valid");
        reader
            .lookup(probe)
            .map_err(|e| err(format!("lookup fails: {e}")))?;
        Ok(Database {
            path: path.to_path_buf(),
            reader,
            identity,
        })
    }

    /// The database's own description: type and build date.
    pub fn describe(&self) -> String {
        let m = self.reader.metadata();
        let built = chrono::DateTime::from_timestamp(m.build_epoch as i64, 0).map_or_else(
            || "unknown date".into(),
            |d| d.format("%Y-%m-%d").to_string(),
        );
        format!("{} built {built}", m.database_type)
    }

    /// Whether the file on disk is no longer the one mapped.
    pub fn replaced_on_disk(&self) -> bool {
        identity(&self.path).is_ok_and(|id| id != self.identity)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks an address up. Addresses not in the database give an empty answer; fields of
    /// another layout or type give empty columns.
    pub fn lookup(&self, ip: IpAddr) -> GeoAnswer {
        let record: Record = match self.reader.lookup(ip).and_then(|r| r.decode::<Record>()) {
            Ok(Some(r)) => r,
            Ok(None) => return GeoAnswer::default(),
            Err(e) => {
                tracing::debug!(path = %self.path.display(), %ip, "GeoIP lookup failed: {e}");
                return GeoAnswer::default();
            }
        };
        record.answer()
    }
}

/// The configured databases: country from one, AS from the other (or both from one file).
#[derive(Default)]
pub struct GeoDbs {
    /// Country database.
    pub country: Option<Database>,
    /// ASN database.
    pub asn: Option<Database>,
    /// Identities of the files as last tried (opened or not), to notice replacements.
    seen: [Option<(u64, u64, i64)>; 2],
}

impl GeoDbs {
    /// Opens what can be opened; each failure is one clear warning and leaves that column empty.
    pub fn open(country: Option<&Path>, asn: Option<&Path>) -> GeoDbs {
        let open = |p: Option<&Path>, what: &str| {
            let p = p?;
            match Database::open(p) {
                Ok(db) => {
                    tracing::info!(path = %p.display(), "{what} database: {}", db.describe());
                    Some(db)
                }
                Err(e) => {
                    tracing::warn!(
                        "{e}; the {what} columns stay empty (run `maillogsentinel geoip update` to fetch it)"
                    );
                    None
                }
            }
        };
        let seen = [
            country.and_then(|p| identity(p).ok()),
            asn.and_then(|p| identity(p).ok()),
        ];
        GeoDbs {
            country: open(country, "country"),
            asn: open(asn, "ASN"),
            seen,
        }
    }

    /// Looks an address up in both.
    pub fn lookup(&self, ip: IpAddr) -> GeoAnswer {
        let c = self
            .country
            .as_ref()
            .map(|d| d.lookup(ip))
            .unwrap_or_default();
        let a = self.asn.as_ref().map(|d| d.lookup(ip)).unwrap_or_default();
        GeoAnswer {
            country: c.country.or(a.country),
            asn: a.asn.or(c.asn),
            as_org: a.as_org.or(c.as_org),
        }
    }

    /// Whether either file is not the one last tried (replaced, appeared or went away).
    pub fn changed_on_disk(&self, country: Option<&Path>, asn: Option<&Path>) -> bool {
        let now = [
            country.and_then(|p| identity(p).ok()),
            asn.and_then(|p| identity(p).ok()),
        ];
        now != self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmdb_writer::Value;

    /// A database with one record for 192.0.2.0/24, opened like a configured one.
    fn database_with(record: Value) -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.mmdb");
        let mut w = mmdb_writer::Writer::new("test");
        let net: ipnet::IpNet = "192.0.2.0/24".parse().unwrap();
        w.insert_value(net, record).unwrap();
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        let db = Database::open(&path).unwrap();
        (dir, db)
    }

    fn lookup(record: Value) -> GeoAnswer {
        let (_dir, db) = database_with(record);
        db.lookup("192.0.2.10".parse().unwrap())
    }

    fn text(s: &str) -> Value {
        Value::String(s.into())
    }

    fn answer(country: &str, asn: u32, org: &str) -> GeoAnswer {
        GeoAnswer {
            country: Some(country.into()),
            asn: Some(asn),
            as_org: Some(org.into()),
        }
    }

    #[test]
    fn ipinfo_lite_record_all_strings() {
        let record = Value::map([
            ("country", text("United States")),
            ("country_code", text("US")),
            ("continent", text("North America")),
            ("continent_code", text("NA")),
            ("asn", text("AS15169")),
            ("as_name", text("Google LLC")),
            ("as_domain", text("google.com")),
        ]);
        assert_eq!(lookup(record), answer("US", 15169, "Google LLC"));
    }

    #[test]
    fn geolite2_and_dbip_records() {
        let country = Value::map([
            (
                "continent",
                Value::map([("code", text("EU")), ("geoname_id", Value::U32(6255148))]),
            ),
            (
                "country",
                Value::map([
                    ("geoname_id", Value::U32(2921044)),
                    ("is_in_european_union", Value::Bool(true)),
                    ("iso_code", text("DE")),
                    (
                        "names",
                        Value::map([("de", text("Deutschland")), ("en", text("Germany"))]),
                    ),
                ]),
            ),
        ]);
        let asn = Value::map([
            ("autonomous_system_number", Value::U32(3320)),
            (
                "autonomous_system_organization",
                text("Deutsche Telekom AG"),
            ),
        ]);
        assert_eq!(
            lookup(country),
            GeoAnswer {
                country: Some("DE".into()),
                ..GeoAnswer::default()
            }
        );
        assert_eq!(
            lookup(asn),
            GeoAnswer {
                asn: Some(3320),
                as_org: Some("Deutsche Telekom AG".into()),
                ..GeoAnswer::default()
            }
        );
    }

    #[test]
    fn a_field_of_an_unexpected_type_empties_only_itself() {
        // Each wanted field in a type no layout has: nothing is read, and nothing fails.
        let odd = Value::map([
            ("country", Value::array([text("DE")])),
            ("country_code", Value::U32(49)),
            ("autonomous_system_number", Value::Double(3320.0)),
            ("autonomous_system_organization", Value::Bool(true)),
            ("asn", Value::map([("number", Value::U32(3320))])),
            ("as_name", Value::Bytes(b"Deutsche Telekom AG".to_vec())),
        ]);
        assert_eq!(lookup(odd), GeoAnswer::default());
        // One odd field beside good ones: the others are still read.
        let mixed = Value::map([
            ("country", Value::Bool(false)),
            ("country_code", text("FR")),
            ("autonomous_system_number", text("AS64500")),
            ("autonomous_system_organization", Value::U128(1)),
            ("as_name", text("Example Networks SAS")),
            ("asn", Value::I32(-1)),
        ]);
        assert_eq!(lookup(mixed), answer("FR", 64500, "Example Networks SAS"));
    }

    #[test]
    fn ipinfo_country_asn_with_the_code_in_country() {
        // IPinfo's older country_asn.mmdb: `country` is the code, `country_name` the name.
        let record = Value::map([
            ("country", text("JP")),
            ("country_name", text("Japan")),
            ("asn", text("AS2519")),
            ("as_name", text("ARTERIA Networks Corporation")),
        ]);
        assert_eq!(
            lookup(record),
            answer("JP", 2519, "ARTERIA Networks Corporation")
        );
    }

    #[test]
    fn empty_strings_are_no_answer() {
        let record = Value::map([
            ("country", text("")),
            ("country_code", text("")),
            ("asn", text("")),
            ("as_name", text("")),
        ]);
        assert_eq!(lookup(record), GeoAnswer::default());
    }

    #[test]
    fn as_numbers_from_text_or_number() {
        let n = |f: Field| f.as_number();
        assert_eq!(n(Field::Text("AS13335".into())), Some(13335));
        assert_eq!(n(Field::Text("as13335".into())), Some(13335));
        assert_eq!(n(Field::Text("13335".into())), Some(13335));
        assert_eq!(n(Field::Number(13335)), Some(13335));
        assert_eq!(n(Field::Text("AS".into())), None);
        assert_eq!(n(Field::Text("ASX1".into())), None);
        assert_eq!(n(Field::Text("Ä".into())), None);
        assert_eq!(n(Field::Number(1 << 40)), None);
        assert_eq!(n(Field::Other), None);
    }
}
