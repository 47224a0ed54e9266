//! Country and AS lookups in MaxMind DB (`.mmdb`) files, memory-mapped.
//!
//! Two record layouts are read without the user saying which: DB-IP Lite / GeoLite2
//! (`country.iso_code`; `autonomous_system_number`, `autonomous_system_organization`) and
//! IPinfo Lite (`country_code`; `asn` as `"AS123"`, `as_name`), which has both in one file. A
//! database is reopened when its file is replaced (new inode or mtime), which is how
//! `geoip update` and any careful updater (`mv` into place) change it.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use maxminddb::{Mmap, Reader};
use serde::Deserialize;

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

#[derive(Deserialize, Default)]
struct Record {
    // DB-IP / GeoLite2 country layout.
    country: Option<Country>,
    // IPinfo Lite.
    country_code: Option<String>,
    // DB-IP / GeoLite2 ASN layout.
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
    // IPinfo Lite: "AS13335".
    asn: Option<String>,
    as_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct Country {
    iso_code: Option<String>,
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

    /// Looks an address up. Addresses not in the database, and records of another layout,
    /// give empty answers.
    pub fn lookup(&self, ip: IpAddr) -> GeoAnswer {
        let record: Record = match self.reader.lookup(ip).and_then(|r| r.decode::<Record>()) {
            Ok(Some(r)) => r,
            Ok(None) => return GeoAnswer::default(),
            Err(e) => {
                tracing::debug!(path = %self.path.display(), %ip, "GeoIP lookup failed: {e}");
                return GeoAnswer::default();
            }
        };
        let country = record
            .country
            .and_then(|c| c.iso_code)
            .or(record.country_code)
            .filter(|c| !c.is_empty());
        let asn = record.autonomous_system_number.or_else(|| {
            record.asn.as_deref().and_then(|a| {
                a.trim_start_matches("AS")
                    .trim_start_matches("as")
                    .parse()
                    .ok()
            })
        });
        let as_org = record
            .autonomous_system_organization
            .or(record.as_name)
            .filter(|o| !o.is_empty());
        GeoAnswer {
            country,
            asn,
            as_org,
        }
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
