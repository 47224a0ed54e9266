//! The figures of a report, computed from the window's rows in one pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

/// Rows listed in each "top" table.
pub const TOP: usize = 10;

/// One CSV row as a report reads it (the columns it uses), borrowed from the CSV reader.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row<'a> {
    /// Seconds since the epoch.
    pub ts: i64,
    /// Client address.
    pub ip: &'a str,
    /// Username tried ("" when none was logged).
    pub username: &'a str,
    /// Client hostname Postfix logged.
    pub client_hostname: &'a str,
    /// Reverse DNS name.
    pub reverse_dns: &'a str,
    /// Reverse DNS status.
    pub dns_status: &'a str,
    /// Country code.
    pub country: &'a str,
    /// AS number.
    pub asn: &'a str,
    /// AS organisation.
    pub as_org: &'a str,
    /// SASL mechanism.
    pub mechanism: &'a str,
    /// Logging service.
    pub service: &'a str,
}

/// Counts `key` in `map`, allocating the key only the first time it is seen.
fn bump(map: &mut HashMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

/// Undoes the CSV's formula-injection guard for display (the report escapes for its own
/// medium instead).
pub fn unguard(cell: &str) -> &str {
    match cell.as_bytes() {
        [b'\'', b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r', ..] => &cell[1..],
        _ => cell,
    }
}

/// Totals of a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Failed logins.
    pub attempts: u64,
    /// Distinct client addresses.
    pub distinct_ips: u64,
    /// Distinct usernames (the empty one included when some lines had none).
    pub distinct_usernames: u64,
}

/// A top-list line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// What is counted.
    pub key: String,
    /// How often.
    pub count: u64,
}

/// An attacking address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IpLine {
    /// The address.
    pub ip: String,
    /// Attempts.
    pub count: u64,
    /// Reverse DNS name.
    pub reverse_dns: String,
    /// Country.
    pub country: String,
    /// AS number.
    pub asn: String,
    /// AS organisation.
    pub as_org: String,
}

/// A targeted username and how widely it was attacked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserLine {
    /// The username ("" for none).
    pub username: String,
    /// Attempts.
    pub count: u64,
    /// Distinct addresses that tried it.
    pub distinct_ips: u64,
    /// Distinct autonomous systems those addresses belong to.
    pub distinct_asns: u64,
}

/// An IPv6 /64 and its attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrefixLine {
    /// The /64.
    pub prefix: String,
    /// Attempts.
    pub count: u64,
    /// Distinct addresses in it.
    pub addresses: u64,
}

/// Everything a report shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Window start (RFC 3339).
    pub from: String,
    /// Window end (exclusive).
    pub to: String,
    /// This window's totals.
    pub totals: Totals,
    /// The previous window of the same length.
    pub previous: Totals,
    /// Top addresses.
    pub top_ips: Vec<IpLine>,
    /// Top usernames, with how many addresses and ASNs tried each.
    pub top_usernames: Vec<UserLine>,
    /// Usernames tried from the most distinct addresses: slow distributed brute force shows
    /// here even when no address tries often.
    pub distributed: Vec<UserLine>,
    /// Top countries.
    pub top_countries: Vec<Count>,
    /// Top autonomous systems (`AS123 Org`).
    pub top_asns: Vec<Count>,
    /// Top client hostnames (reverse DNS, else the name Postfix logged).
    pub top_hosts: Vec<Count>,
    /// IPv6 attackers grouped by /64.
    pub ipv6_prefixes: Vec<PrefixLine>,
    /// Attempts per hour (start of the hour, RFC 3339), every hour of the window.
    pub per_hour: Vec<Count>,
    /// Addresses not seen in the previous window (how many, and the first few).
    pub new_ips: u64,
    /// Up to 20 of them, busiest first.
    pub new_ip_sample: Vec<Count>,
    /// Reverse DNS outcomes.
    pub dns_status: Vec<Count>,
    /// Mechanisms used.
    pub mechanisms: Vec<Count>,
    /// Services attacked.
    pub services: Vec<Count>,
    /// Size of the CSV record, bytes.
    pub csv_bytes: u64,
    /// Failures of the mail server's own SASL backend in the window (the daemon records them).
    pub backend_failures: u64,
    /// Their reasons.
    pub backend_reasons: Vec<Count>,
}

#[derive(Default)]
struct IpAgg {
    count: u64,
    /// Kept small: a window may hold a million addresses. The country is shared between
    /// addresses, the AS organisation is kept once per AS (in `asns`).
    reverse_dns: Option<Box<str>>,
    country: Option<std::sync::Arc<str>>,
    asn: Option<u32>,
}

/// `entry` without allocating the key when it is already there.
trait EntryRef<V> {
    fn entry_ref(&mut self, key: &str) -> &mut V;
}

impl<V: Default> EntryRef<V> for HashMap<String, V> {
    fn entry_ref(&mut self, key: &str) -> &mut V {
        if !self.contains_key(key) {
            self.insert(key.to_string(), V::default());
        }
        self.get_mut(key).expect("just inserted")
    }
}

#[derive(Default)]
struct UserAgg {
    count: u64,
    ips: HashSet<IpAddr>,
    asns: HashSet<u32>,
}

/// Accumulates rows of the window.
#[derive(Default)]
pub struct Aggregator {
    /// Only totals and the address set (the previous period needs no more).
    light: bool,
    /// Light mode: the addresses seen.
    seen: HashSet<IpAddr>,
    /// Light mode: the usernames seen.
    light_users: HashSet<String>,
    interned: HashMap<String, std::sync::Arc<str>>,
    attempts: u64,
    // Addresses as `IpAddr`, not text: a botnet window holds a million of them.
    ips: HashMap<IpAddr, IpAgg>,
    users: HashMap<String, UserAgg>,
    countries: HashMap<String, u64>,
    /// AS number -> (attempts, organisation as first seen).
    asns: HashMap<u32, (u64, String)>,
    hosts: HashMap<String, u64>,
    /// /64 prefix -> (attempts, addresses).
    v6: HashMap<u64, (u64, HashSet<IpAddr>)>,
    hours: BTreeMap<i64, u64>,
    dns_status: HashMap<String, u64>,
    mechanisms: HashMap<String, u64>,
    services: HashMap<String, u64>,
}

fn top(map: HashMap<String, u64>, n: usize) -> Vec<Count> {
    let mut v: Vec<Count> = map
        .into_iter()
        .map(|(key, count)| Count { key, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v.truncate(n);
    v
}

fn slash64_text(prefix: u64) -> String {
    format!(
        "{:x}:{:x}:{:x}:{:x}::/64",
        prefix >> 48,
        (prefix >> 32) & 0xffff,
        (prefix >> 16) & 0xffff,
        prefix & 0xffff
    )
}

impl Aggregator {
    /// An aggregator that keeps only totals and the address set (for the previous period).
    pub fn light() -> Self {
        Aggregator {
            light: true,
            ..Aggregator::default()
        }
    }

    /// Adds one row.
    pub fn add(&mut self, r: &Row<'_>) {
        self.attempts += 1;
        let username = unguard(r.username);
        // The sink writes valid addresses; a row edited by hand into something else still
        // counts as an attempt.
        let Ok(addr) = r.ip.parse::<IpAddr>() else {
            self.users.entry_ref(username).count += 1;
            return;
        };
        if self.light {
            self.seen.insert(addr);
            self.light_users.insert(username.to_string());
            return;
        }
        let asn = r.asn.parse::<u32>().ok();
        let country = (!r.country.is_empty()).then(|| self.intern(r.country));
        let ip = self.ips.entry(addr).or_default();
        ip.count += 1;
        if ip.reverse_dns.is_none() && !r.reverse_dns.is_empty() {
            ip.reverse_dns = Some(unguard(r.reverse_dns).into());
        }
        if ip.country.is_none() {
            ip.country = country;
        }
        if ip.asn.is_none() {
            ip.asn = asn;
        }
        let user = self.users.entry_ref(username);
        user.count += 1;
        user.ips.insert(addr);
        if let Some(n) = asn {
            user.asns.insert(n);
        }
        if !r.country.is_empty() {
            bump(&mut self.countries, r.country);
        }
        if let Some(n) = asn {
            let e = self
                .asns
                .entry(n)
                .or_insert_with(|| (0, unguard(r.as_org).to_string()));
            e.0 += 1;
        }
        let host = if !r.reverse_dns.is_empty() {
            unguard(r.reverse_dns)
        } else {
            unguard(r.client_hostname)
        };
        if !host.is_empty() {
            bump(&mut self.hosts, host);
        }
        if let IpAddr::V6(v6) = addr {
            let e = self.v6.entry((u128::from(v6) >> 64) as u64).or_default();
            e.0 += 1;
            e.1.insert(addr);
        }
        *self.hours.entry(r.ts.div_euclid(3600) * 3600).or_default() += 1;
        bump(
            &mut self.dns_status,
            if r.dns_status.is_empty() {
                "(not enriched)"
            } else {
                r.dns_status
            },
        );
        bump(&mut self.mechanisms, unguard(r.mechanism));
        bump(&mut self.services, unguard(r.service));
    }

    /// The distinct addresses seen.
    pub fn ip_set(&self) -> HashSet<&IpAddr> {
        if self.light {
            self.seen.iter().collect()
        } else {
            self.ips.keys().collect()
        }
    }

    /// One shared copy of a short, much repeated value (a country code).
    fn intern(&mut self, s: &str) -> std::sync::Arc<str> {
        if let Some(v) = self.interned.get(s) {
            return v.clone();
        }
        let v: std::sync::Arc<str> = s.into();
        self.interned.insert(s.to_string(), v.clone());
        v
    }

    /// This period's totals.
    pub fn totals(&self) -> Totals {
        Totals {
            attempts: self.attempts,
            distinct_ips: if self.light {
                self.seen.len()
            } else {
                self.ips.len()
            } as u64,
            distinct_usernames: if self.light {
                self.light_users.len()
            } else {
                self.users.len()
            } as u64,
        }
    }

    /// The summary, given the window (seconds), the previous period's aggregate and the CSV size.
    pub fn finish(self, from: i64, to: i64, previous: &Aggregator, csv_bytes: u64) -> Summary {
        let rfc = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| {
                    d.with_timezone(&chrono::Local)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
                })
                .unwrap_or_default()
        };
        let totals = self.totals();
        let before = previous.ip_set();
        let mut new_ips: Vec<Count> = self
            .ips
            .iter()
            .filter(|(ip, _)| !before.contains(ip))
            .map(|(ip, a)| Count {
                key: ip.to_string(),
                count: a.count,
            })
            .collect();
        new_ips.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        let new_count = new_ips.len() as u64;
        new_ips.truncate(20);
        let mut by_count: Vec<(IpAddr, IpAgg)> = self.ips.into_iter().collect();
        by_count.sort_by(|(ia, a), (ib, b)| b.count.cmp(&a.count).then_with(|| ia.cmp(ib)));
        by_count.truncate(TOP);
        let asns = &self.asns;
        let ips: Vec<IpLine> = by_count
            .into_iter()
            .map(|(ip, a)| IpLine {
                ip: ip.to_string(),
                count: a.count,
                reverse_dns: a.reverse_dns.map(String::from).unwrap_or_default(),
                country: a.country.map(|c| c.to_string()).unwrap_or_default(),
                asn: a.asn.map(|n| n.to_string()).unwrap_or_default(),
                as_org: a
                    .asn
                    .and_then(|n| asns.get(&n))
                    .map(|(_, org)| org.clone())
                    .unwrap_or_default(),
            })
            .collect();
        let users: Vec<UserLine> = self
            .users
            .into_iter()
            .map(|(username, u)| UserLine {
                username,
                count: u.count,
                distinct_ips: u.ips.len() as u64,
                distinct_asns: u.asns.len() as u64,
            })
            .collect();
        let mut top_usernames = users.clone();
        top_usernames.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.username.cmp(&b.username))
        });
        top_usernames.truncate(TOP);
        let mut distributed = users;
        distributed.sort_by(|a, b| {
            b.distinct_ips
                .cmp(&a.distinct_ips)
                .then(b.distinct_asns.cmp(&a.distinct_asns))
                .then_with(|| a.username.cmp(&b.username))
        });
        distributed.retain(|u| u.distinct_ips > 1);
        distributed.truncate(TOP);
        let mut v6: Vec<PrefixLine> = self
            .v6
            .into_iter()
            .map(|(prefix, (count, addrs))| PrefixLine {
                prefix: slash64_text(prefix),
                count,
                addresses: addrs.len() as u64,
            })
            .collect();
        v6.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.prefix.cmp(&b.prefix)));
        v6.truncate(TOP);
        let first_hour = from.div_euclid(3600) * 3600;
        let per_hour = (0..)
            .map(|i| first_hour + i * 3600)
            .take_while(|h| *h < to)
            .take(24 * 366)
            .map(|h| Count {
                key: rfc(h),
                count: self.hours.get(&h).copied().unwrap_or(0),
            })
            .collect();
        Summary {
            from: rfc(from),
            to: rfc(to),
            totals,
            previous: previous.totals(),
            top_ips: ips,
            top_usernames,
            distributed,
            top_countries: top(self.countries, TOP),
            top_asns: top(
                self.asns
                    .into_iter()
                    .map(|(n, (count, org))| (format!("AS{n} {org}").trim_end().to_string(), count))
                    .collect(),
                TOP,
            ),
            top_hosts: top(self.hosts, TOP),
            ipv6_prefixes: v6,
            per_hour,
            new_ips: new_count,
            new_ip_sample: new_ips,
            dns_status: top(self.dns_status, 16),
            mechanisms: top(self.mechanisms, TOP),
            services: top(self.services, TOP),
            csv_bytes,
            backend_failures: 0,
            backend_reasons: Vec::new(),
        }
    }
}
