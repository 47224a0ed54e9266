//! The enrichment stage: who is behind an attacking address — reverse DNS, country and AS —
//! looked up between the parser and the sink.
//!
//! Reverse DNS is the slow part (a network round trip, up to `dns_timeout` for a dead server),
//! so its answers are cached in one bounded cache keyed by IP, with a TTL (`cache_ttl`, shorter
//! for negative answers), and concurrent lookups of one address are coalesced into one query
//! (the cache's placeholder guard). The cache is quick_cache, not moka: moka's own bookkeeping
//! is ~450 bytes an entry (measured: 47 MB for 100,000), which alone nearly fills the 64 MB the
//! daemon may use with a full cache. A semaphore bounds the queries in flight. GeoIP lookups are
//! memory-mapped tree walks (about a microsecond) and are not cached, so a replaced database
//! takes effect at
//! once.
//!
//! [`stage::run`] is the pipeline stage: it enriches batches concurrently while keeping their
//! order, so rows from cached addresses are only held back as long as log order requires.

pub mod dns;
pub mod geoip;
pub mod stage;
pub mod update;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use tokio::sync::Semaphore;

pub use dns::{DnsAnswer, DnsSettings, DnsStatus, ReverseDns};
pub use geoip::{GeoAnswer, GeoDbs};

/// What the enrichment columns hold for one row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Enrichment {
    /// The reverse DNS name (also when it does not confirm).
    pub reverse_dns: Option<String>,
    /// How the reverse lookup went (`None` only when enrichment is off).
    pub dns_status: Option<DnsStatus>,
    /// ISO country code.
    pub country: Option<String>,
    /// AS number.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: Option<String>,
}

/// What `maillogsentinel lookup` prints for one address. Names come from DNS and databases,
/// which attackers control: control characters are shown escaped, never sent to the terminal.
pub fn describe(ip: IpAddr, e: &Enrichment) -> String {
    let status = e.dns_status.map_or("", |s| s.as_str());
    let dns = match (&e.reverse_dns, e.dns_status) {
        (Some(name), Some(DnsStatus::Mismatch)) => {
            format!(
                "{} (mismatch: does not resolve back to {ip})",
                printable(name)
            )
        }
        (Some(name), _) => format!("{} ({status})", printable(name)),
        (None, _) => format!("- ({status})"),
    };
    let asn = match (e.asn, &e.as_org) {
        (Some(n), Some(org)) => format!("AS{n} {}", printable(org)),
        (Some(n), None) => format!("AS{n}"),
        (None, Some(org)) => printable(org),
        (None, None) => "-".into(),
    };
    format!(
        "{ip}\n  reverse DNS: {dns}\n  country:     {}\n  AS:          {asn}\n",
        e.country
            .as_deref()
            .map_or_else(|| "-".to_string(), printable)
    )
}

/// Text with control characters and bidirectional formatting characters shown as escapes
/// (`\u{1b}`, `\u{202e}`), safe to print on a terminal: neither can move the cursor, colour the
/// screen or make attacker text read backwards over the columns beside it.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Enrichment settings, from `[enrich]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichSettings {
    /// Reverse DNS, or `None` when `reverse_dns = false`.
    pub dns: Option<DnsSettings>,
    /// Country database.
    pub country_db: Option<PathBuf>,
    /// ASN database.
    pub asn_db: Option<PathBuf>,
    /// Cache capacity in entries.
    pub cache_size: u64,
    /// TTL of positive answers.
    pub cache_ttl: Duration,
    /// TTL of negative answers (nxdomain, timeout, servfail, error).
    pub negative_ttl: Duration,
    /// Reverse lookups in flight at most.
    pub concurrency: usize,
}

/// Cache hit and miss counts.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Answers served from the cache (including coalesced waits).
    pub hits: AtomicU64,
    /// Answers that needed a query.
    pub misses: AtomicU64,
    /// Queries that got no answer within `dns_timeout`.
    pub timeouts: AtomicU64,
}

/// A cached answer and when it stops being good.
struct Cached {
    answer: DnsAnswer,
    expires: Instant,
}

/// Looks addresses up. Cheap to share (`Arc`); reconfigured in place on reload.
pub struct Enricher {
    dns: RwLock<Option<Arc<ReverseDns>>>,
    geo: RwLock<Arc<GeoDbs>>,
    settings: RwLock<EnrichSettings>,
    cache: Cache<IpAddr, Arc<Cached>>,
    ttl: (Duration, Duration),
    permits: Arc<Semaphore>,
    /// Hit and miss counts.
    pub stats: CacheStats,
}

impl Enricher {
    /// Sets up the resolver, opens the databases (warning about missing ones) and the cache.
    pub fn new(settings: EnrichSettings) -> Result<Self, dns::DnsSetupError> {
        let dns = settings
            .dns
            .clone()
            .map(ReverseDns::new)
            .transpose()?
            .map(Arc::new);
        let geo = GeoDbs::open(settings.country_db.as_deref(), settings.asn_db.as_deref());
        let cache = Cache::new(settings.cache_size.max(1) as usize);
        let ttl = (settings.cache_ttl, settings.negative_ttl);
        Ok(Enricher {
            dns: RwLock::new(dns),
            geo: RwLock::new(Arc::new(geo)),
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings: RwLock::new(settings),
            cache,
            ttl,
            stats: CacheStats::default(),
        })
    }

    /// Everything known about `ip`.
    pub async fn enrich(&self, ip: IpAddr) -> Enrichment {
        let dns = self.reverse(ip).await;
        let geo = self.geo.read().expect("geo lock").clone().lookup(ip);
        Enrichment {
            reverse_dns: dns.as_ref().and_then(|d| d.name.clone()),
            dns_status: Some(dns.map_or(DnsStatus::Disabled, |d| d.status)),
            country: geo.country,
            asn: geo.asn,
            as_org: geo.as_org,
        }
    }

    /// The (cached) reverse DNS answer, or `None` when reverse DNS is off. Concurrent calls
    /// for one address wait for the first one's query (the cache's placeholder guard).
    async fn reverse(&self, ip: IpAddr) -> Option<DnsAnswer> {
        let dns = self.dns.read().expect("dns lock").clone()?;
        loop {
            match self.cache.get_value_or_guard_async(&ip).await {
                Ok(c) if c.expires > Instant::now() => {
                    self.stats.hits.fetch_add(1, Relaxed);
                    return Some(c.answer.clone());
                }
                // Expired: drop it and look again (one caller gets to query).
                Ok(_) => {
                    self.cache.remove(&ip);
                }
                Err(guard) => {
                    self.stats.misses.fetch_add(1, Relaxed);
                    let answer = {
                        let _permit = self
                            .permits
                            .acquire()
                            .await
                            .expect("the semaphore is never closed");
                        dns.lookup(ip).await
                    };
                    if answer.status == DnsStatus::Timeout {
                        self.stats.timeouts.fetch_add(1, Relaxed);
                    }
                    let ttl = if answer.status.is_positive() {
                        self.ttl.0
                    } else {
                        self.ttl.1
                    };
                    let _ = guard.insert(Arc::new(Cached {
                        answer: answer.clone(),
                        expires: Instant::now() + ttl,
                    }));
                    return Some(answer);
                }
            }
        }
    }

    /// Applies new settings: a new resolver when DNS settings changed (the cache is emptied,
    /// its answers came from the old one), the databases reopened when their paths changed.
    pub fn reconfigure(&self, new: EnrichSettings) -> Result<(), dns::DnsSetupError> {
        let old = self.settings.read().expect("settings lock").clone();
        if new.dns != old.dns {
            let dns = new
                .dns
                .clone()
                .map(ReverseDns::new)
                .transpose()?
                .map(Arc::new);
            *self.dns.write().expect("dns lock") = dns;
            self.cache.clear();
        }
        if new.country_db != old.country_db || new.asn_db != old.asn_db {
            let geo = GeoDbs::open(new.country_db.as_deref(), new.asn_db.as_deref());
            *self.geo.write().expect("geo lock") = Arc::new(geo);
        }
        if new.cache_size != old.cache_size
            || new.cache_ttl != old.cache_ttl
            || new.concurrency != old.concurrency
        {
            tracing::warn!("enrich.cache_size, cache_ttl and concurrency change only at restart");
        }
        *self.settings.write().expect("settings lock") = new;
        Ok(())
    }

    /// Reopens the databases if their files were replaced; returns whether they were.
    pub fn refresh_geo(&self, force: bool) -> bool {
        let settings = self.settings.read().expect("settings lock").clone();
        let (c, a) = (settings.country_db.as_deref(), settings.asn_db.as_deref());
        if !force && !self.geo.read().expect("geo lock").changed_on_disk(c, a) {
            return false;
        }
        let geo = GeoDbs::open(c, a);
        *self.geo.write().expect("geo lock") = Arc::new(geo);
        true
    }

    /// Each configured GeoIP database: what it is for (`country`, `ASN`), its path, and its
    /// type and build date, or `None` when it could not be opened (missing, unreadable).
    pub fn geo_databases(&self) -> Vec<(&'static str, PathBuf, Option<String>)> {
        let settings = self.settings.read().expect("settings lock");
        let geo = self.geo.read().expect("geo lock").clone();
        [
            ("country", settings.country_db.clone(), geo.country.as_ref()),
            ("ASN", settings.asn_db.clone(), geo.asn.as_ref()),
        ]
        .into_iter()
        .filter_map(|(what, path, db)| {
            let path = path?;
            let open = db.filter(|d| d.path() == path).map(|d| d.describe());
            Some((what, path, open))
        })
        .collect()
    }

    /// Entries in the cache now.
    pub fn cached(&self) -> u64 {
        self.cache.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_and_bidirectional_overrides() {
        assert_eq!(printable("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(printable("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(printable("x\u{2067}y\u{2069}"), "x\\u{2067}y\\u{2069}");
        assert_eq!(printable("müller 李"), "müller 李");
    }

    #[test]
    fn describe_escapes_attacker_text_for_the_terminal() {
        let e = Enrichment {
            reverse_dns: Some("evil\u{1b}[2J.example".into()),
            dns_status: Some(DnsStatus::Mismatch),
            country: Some("FR".into()),
            asn: Some(64500),
            as_org: Some("Org\r\nInjected: yes".into()),
        };
        let text = describe("192.0.2.1".parse().unwrap(), &e);
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(
            text.contains("evil\\u{1b}[2J.example (mismatch: does not resolve back to 192.0.2.1)"),
            "{text}"
        );
        assert!(
            text.contains("AS64500 Org\\u{d}\\u{a}Injected: yes"),
            "{text}"
        );
        let none = describe(
            "192.0.2.2".parse().unwrap(),
            &Enrichment {
                dns_status: Some(DnsStatus::Timeout),
                ..Default::default()
            },
        );
        assert_eq!(
            none,
            "192.0.2.2\n  reverse DNS: - (timeout)\n  country:     -\n  AS:          -\n"
        );
    }

    #[test]
    fn statuses_are_the_documented_words() {
        let all = [
            DnsStatus::Ok,
            DnsStatus::Nxdomain,
            DnsStatus::Timeout,
            DnsStatus::Servfail,
            DnsStatus::Error,
            DnsStatus::Mismatch,
            DnsStatus::Disabled,
        ];
        let words: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            words,
            [
                "ok", "nxdomain", "timeout", "servfail", "error", "mismatch", "disabled"
            ]
        );
        assert!(DnsStatus::Ok.is_positive() && DnsStatus::Mismatch.is_positive());
        assert!(!DnsStatus::Timeout.is_positive() && !DnsStatus::Nxdomain.is_positive());
    }
}
