//! The figures of a report, computed from the window's rows in one pass.
//!
//! [`Summary`] is also the JSON report (`report --format json`), so its fields are data:
//! numbers as numbers, keys apart from display strings, a [`SCHEMA`] version that changes
//! whenever a field changes meaning (docs/report-json.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

/// Rows listed in each "top" table.
pub const TOP: usize = 10;

/// Servers listed in a report (a fleet's database may hold many).
pub const MAX_SERVERS: usize = 1000;

/// The JSON report's schema version (docs/report-json.md). Version 1 was the unversioned
/// output before it: `asn` as text, `top_asns[].key` a display string, hours in `key`.
pub const SCHEMA: u32 = 2;

/// One CSV row as a report reads it (the columns it uses), borrowed from the CSV reader.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row<'a> {
    /// Seconds since the epoch.
    pub ts: i64,
    /// The mail server that logged it.
    pub server: &'a str,
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
    /// How often in the previous period (for the top tables that compare periods).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<u64>,
}

/// An attacking address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IpLine {
    /// The address.
    pub ip: String,
    /// Attempts.
    pub count: u64,
    /// Attempts in the previous period.
    pub previous: u64,
    /// Reverse DNS name, as the PTR record gave it: a claim unless `dns_status` is `ok`.
    pub reverse_dns: String,
    /// What the reverse lookup found: `ok` (the name resolves back to the address),
    /// `mismatch` (it does not: the name is unconfirmed, possibly spoofed), `nxdomain`,
    /// `timeout`, `servfail`, `error`, `disabled`; "" when the row was not enriched.
    pub dns_status: String,
    /// Country.
    pub country: String,
    /// AS number.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: String,
}

impl IpLine {
    /// Whether the reverse DNS name is confirmed (resolves back to the address).
    pub fn name_confirmed(&self) -> bool {
        self.dns_status == "ok"
    }
}

/// An autonomous system and its attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AsLine {
    /// The AS number.
    pub asn: u32,
    /// Its organisation, as first seen in the window.
    pub org: String,
    /// Attempts.
    pub count: u64,
    /// Attempts in the previous period.
    pub previous: u64,
}

/// Attempts in one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HourCount {
    /// Start of the hour (RFC 3339, local time).
    pub start: String,
    /// The same, seconds since the epoch (for the chart and the labels; not in the JSON).
    #[serde(skip)]
    pub ts: i64,
    /// Failed logins.
    pub count: u64,
}

/// The responder's decisions in the window (from `state_dir/bans.csv`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BanCounts {
    /// Bans carried out.
    pub applied: u64,
    /// Bans decided in `mode = "log"` (dry run: nothing blocked).
    pub logged: u64,
    /// Bans that could not be carried out (nftables refused).
    pub failed: u64,
}

/// A targeted username and how widely it was attacked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserLine {
    /// The username ("" for none).
    pub username: String,
    /// Attempts.
    pub count: u64,
    /// Attempts in the previous period.
    pub previous: u64,
    /// Distinct addresses that tried it.
    pub distinct_ips: u64,
    /// Distinct autonomous systems those addresses belong to.
    pub distinct_asns: u64,
}

/// A successful login after failed logins (an alert the daemon raised).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoginAfterFailures {
    /// When the login was logged (RFC 3339).
    pub time: String,
    /// The client address.
    pub ip: String,
    /// The username that logged in.
    pub username: String,
    /// Why it is suspicious: `address`, `username`, `network`, joined with `+`.
    pub signals: String,
    /// Failures from the address in the alert window before the login.
    pub address_failures: u64,
    /// Distinct addresses that failed on the username in the window.
    pub username_addresses: u64,
    /// Country code.
    pub country: String,
    /// AS number.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: String,
}

/// A username that logged in from a country or AS not seen for it before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewOrigin {
    /// When (RFC 3339).
    pub time: String,
    /// The username.
    pub username: String,
    /// The address.
    pub ip: String,
    /// Country code ("" when unknown).
    pub country: String,
    /// AS number.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: String,
    /// What is new: `country`, `AS` or `country+AS`.
    pub new: String,
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
    /// [`SCHEMA`].
    pub schema: u32,
    /// The report in one line: server(s), failures and change, addresses and new ones,
    /// logins after failures, bans, backend outages (filled by `report::build`).
    pub verdict: String,
    /// Window start (RFC 3339).
    pub from: String,
    /// Window end (exclusive).
    pub to: String,
    /// Window start, seconds since the epoch.
    pub from_ts: i64,
    /// Window end, seconds since the epoch.
    pub to_ts: i64,
    /// The servers whose failures are in the window, most first (the record's `server`
    /// column).
    pub servers: Vec<Count>,
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
    /// Top autonomous systems.
    pub top_asns: Vec<AsLine>,
    /// Top client host names: confirmed names only (a reverse DNS name that resolves back
    /// to the address, or the name Postfix logged, which Postfix confirms the same way).
    pub top_hosts: Vec<Count>,
    /// Reverse DNS names not known to resolve back to the address that claimed them
    /// (`dns_status` `mismatch`, or a name recorded without `ok`): anyone can publish such a
    /// PTR record, so these are claims, never the host's name.
    pub unconfirmed_names: Vec<Count>,
    /// IPv6 attackers grouped by /64.
    pub ipv6_prefixes: Vec<PrefixLine>,
    /// Attempts per hour, every hour of the window.
    pub per_hour: Vec<HourCount>,
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
    /// Size of the record, bytes (the CSV file, or the database file).
    pub record_bytes: u64,
    /// Which store the record is in (`CSV`, `SQLite`).
    pub record: String,
    /// The one server reported on (`report --server`); absent: every server in the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Failures of the mail server's own SASL backend in the window, and relays refusing its
    /// own SASL login (the daemon records both).
    pub backend_failures: u64,
    /// Whether this host's backend record was read (not for `report --server` on another
    /// server): without it, no outage is "not known", not "none".
    pub backend_watched: bool,
    /// Their reasons (for a relay, Postfix's text naming it).
    pub backend_reasons: Vec<Count>,
    /// Successful logins after failed logins in the window (the daemon's alerts), oldest first.
    pub logins_after_failures: Vec<LoginAfterFailures>,
    /// Whether logins are watched (the daemon keeps `alerts.csv`): without it, "no login
    /// after failures" would be a guess.
    pub logins_watched: bool,
    /// The responder's bans in the window; absent when it never ran (no `bans.csv`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bans: Option<BanCounts>,
    /// Logins in the window from a country or AS not seen for that username in the 30 days
    /// before it (usernames with logins in those 30 days only).
    pub new_origins: Vec<NewOrigin>,
    /// Dovecot's verdicts in the window (with `auth_verbose = yes`): attempts on usernames that
    /// exist (wrong password).
    pub known_user_attempts: u64,
    /// Attempts on usernames that do not exist.
    pub unknown_user_attempts: u64,
    /// The existing usernames attacked, most attempts first (at most 20).
    pub known_usernames: Vec<Count>,
}

#[derive(Default)]
struct IpAgg {
    count: u64,
    /// Kept small (48 bytes): a window may hold a million addresses. The country is shared
    /// between addresses, the AS organisation is kept once per AS (in `asns`).
    reverse_dns: Option<Box<str>>,
    country: Option<std::sync::Arc<str>>,
    /// The AS number, when `has_asn`.
    asn: u32,
    has_asn: bool,
    /// The `dns_status` word: 0 none, else 1 + its place in the aggregator's `statuses`.
    dns_status: u8,
}

impl IpAgg {
    fn asn(&self) -> Option<u32> {
        self.has_asn.then_some(self.asn)
    }
}

/// The client's host name, confirmed: the reverse DNS name when it resolves back to the
/// address (`ok`), else the name Postfix logged (Postfix logs `unknown` for a name that does
/// not resolve back, and the parser leaves that out).
pub fn confirmed_host<'a>(r: &Row<'a>) -> Option<&'a str> {
    let rdns = unguard(r.reverse_dns);
    if !rdns.is_empty() && r.dns_status == "ok" {
        return Some(rdns);
    }
    let logged = unguard(r.client_hostname);
    (!logged.is_empty()).then_some(logged)
}

/// The reverse DNS name a row's address claims without it being known to resolve back: a
/// `mismatch`, or a name recorded with any other status (an import's).
pub fn unconfirmed_name<'a>(r: &Row<'a>) -> Option<&'a str> {
    let rdns = unguard(r.reverse_dns);
    (!rdns.is_empty() && r.dns_status != "ok").then_some(rdns)
}

/// Failures by server. Rows come in runs of one server (a whole file of one host), so the
/// last server's count is kept apart and the map is only looked up when the server changes:
/// no hash per row.
#[derive(Default)]
struct ServerCounts {
    map: HashMap<String, u64>,
    last: Option<(String, u64)>,
}

impl ServerCounts {
    fn add(&mut self, server: &str) {
        let Some((name, n)) = &mut self.last else {
            self.last = Some((server.to_string(), 1));
            return;
        };
        if name == server {
            *n += 1;
            return;
        }
        // Another server: the run so far into the map (allocating a key only the first time),
        // and the buffer reused for the new run.
        match self.map.get_mut(name.as_str()) {
            Some(count) => *count += *n,
            None => {
                self.map.insert(name.clone(), *n);
            }
        }
        name.clear();
        name.push_str(server);
        *n = 1;
    }

    fn into_map(mut self) -> HashMap<String, u64> {
        if let Some((name, n)) = self.last.take() {
            *self.map.entry(name).or_default() += n;
        }
        self.map
    }
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
    /// The `dns_status` words seen, in order ([`IpAgg::dns_status`] codes).
    statuses: Vec<String>,
    attempts: u64,
    // Addresses as `IpAddr`, not text: a botnet window holds a million of them.
    ips: HashMap<IpAddr, IpAgg>,
    users: HashMap<String, UserAgg>,
    countries: HashMap<String, u64>,
    /// AS number -> (attempts, organisation as first seen).
    asns: HashMap<u32, (u64, String)>,
    hosts: HashMap<String, u64>,
    unconfirmed: HashMap<String, u64>,
    servers: ServerCounts,
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
        .map(|(key, count)| Count {
            key,
            count,
            previous: None,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v.truncate(n);
    v
}

/// The code of a `dns_status` word in `statuses` (added the first time): 0 for none. Past
/// 255 distinct words (only a hand-edited record has more than seven), the last one stands
/// for the rest.
fn status_code(statuses: &mut Vec<String>, word: &str) -> u8 {
    if word.is_empty() {
        return 0;
    }
    if let Some(i) = statuses.iter().position(|w| w == word) {
        return i as u8 + 1;
    }
    if statuses.len() < usize::from(u8::MAX) {
        statuses.push(word.to_string());
    }
    statuses.len() as u8
}

/// One shared copy of a short, much repeated value (a country code, a `dns_status` word).
fn intern(interned: &mut HashMap<String, std::sync::Arc<str>>, s: &str) -> std::sync::Arc<str> {
    if let Some(v) = interned.get(s) {
        return v.clone();
    }
    let v: std::sync::Arc<str> = s.into();
    interned.insert(s.to_string(), v.clone());
    v
}

/// An IPv6 /64 (its upper 64 bits) as text.
pub fn slash64_text(prefix: u64) -> String {
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
        if !self.light {
            self.servers.add(unguard(r.server));
        }
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
        // Shared texts are looked up only for an address that has none yet (its first rows),
        // not for every row.
        let (interned, statuses) = (&mut self.interned, &mut self.statuses);
        let ip = self.ips.entry(addr).or_default();
        ip.count += 1;
        if ip.reverse_dns.is_none() && !r.reverse_dns.is_empty() {
            // The name with its status: the first row that had a name says both.
            ip.reverse_dns = Some(unguard(r.reverse_dns).into());
            ip.dns_status = status_code(statuses, r.dns_status);
        } else if ip.dns_status == 0 && ip.reverse_dns.is_none() {
            ip.dns_status = status_code(statuses, r.dns_status);
        }
        if ip.country.is_none() && !r.country.is_empty() {
            ip.country = Some(intern(interned, r.country));
        }
        if let (false, Some(n)) = (ip.has_asn, asn) {
            (ip.asn, ip.has_asn) = (n, true);
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
        if let Some(host) = confirmed_host(r) {
            bump(&mut self.hosts, host);
        }
        if let Some(name) = unconfirmed_name(r) {
            bump(&mut self.unconfirmed, name);
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
                previous: None,
            })
            .collect();
        new_ips.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        let new_count = new_ips.len() as u64;
        new_ips.truncate(20);
        let mut by_count: Vec<(IpAddr, IpAgg)> = self.ips.into_iter().collect();
        by_count.sort_by(|(ia, a), (ib, b)| b.count.cmp(&a.count).then_with(|| ia.cmp(ib)));
        by_count.truncate(TOP);
        let (asns, statuses) = (&self.asns, &self.statuses);
        let ips: Vec<IpLine> = by_count
            .into_iter()
            .map(|(ip, a)| {
                let asn = a.asn();
                (ip, a, asn)
            })
            .map(|(ip, a, asn)| IpLine {
                ip: ip.to_string(),
                count: a.count,
                previous: 0,
                reverse_dns: a.reverse_dns.map(String::from).unwrap_or_default(),
                dns_status: match a.dns_status {
                    0 => String::new(),
                    n => statuses[n as usize - 1].clone(),
                },
                country: a.country.map(|c| c.to_string()).unwrap_or_default(),
                asn,
                as_org: asn
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
                previous: 0,
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
            .map(|h| HourCount {
                start: rfc(h),
                ts: h,
                count: self.hours.get(&h).copied().unwrap_or(0),
            })
            .collect();
        let mut top_asns: Vec<AsLine> = self
            .asns
            .into_iter()
            .map(|(asn, (count, org))| AsLine {
                asn,
                org,
                count,
                previous: 0,
            })
            .collect();
        top_asns.sort_by(|a, b| b.count.cmp(&a.count).then(a.asn.cmp(&b.asn)));
        top_asns.truncate(TOP);
        Summary {
            schema: SCHEMA,
            verdict: String::new(),
            from: rfc(from),
            to: rfc(to),
            from_ts: from,
            to_ts: to,
            servers: top(self.servers.into_map(), MAX_SERVERS),
            totals,
            previous: previous.totals(),
            top_ips: ips,
            top_usernames,
            distributed,
            top_countries: top(self.countries, TOP),
            top_asns,
            top_hosts: top(self.hosts, TOP),
            unconfirmed_names: top(self.unconfirmed, TOP),
            ipv6_prefixes: v6,
            per_hour,
            new_ips: new_count,
            new_ip_sample: new_ips,
            dns_status: top(self.dns_status, 16),
            mechanisms: top(self.mechanisms, TOP),
            services: top(self.services, TOP),
            record_bytes: csv_bytes,
            record: "CSV".into(),
            server: None,
            backend_failures: 0,
            backend_watched: false,
            backend_reasons: Vec::new(),
            logins_after_failures: Vec::new(),
            logins_watched: false,
            bans: None,
            new_origins: Vec::new(),
            known_user_attempts: 0,
            unknown_user_attempts: 0,
            known_usernames: Vec::new(),
        }
    }
}

/// Counts, in the previous period, only the keys a summary's top tables show.
#[derive(Default)]
pub struct Watch {
    ips: HashMap<IpAddr, u64>,
    users: HashMap<String, u64>,
    countries: HashMap<String, u64>,
    asns: HashMap<u32, u64>,
}

impl Watch {
    /// The keys of `s`'s top tables.
    pub fn of(s: &Summary) -> Watch {
        Watch {
            ips: s
                .top_ips
                .iter()
                .filter_map(|i| i.ip.parse().ok())
                .map(|ip| (ip, 0))
                .collect(),
            users: s
                .top_usernames
                .iter()
                .chain(&s.distributed)
                .map(|u| (u.username.clone(), 0))
                .collect(),
            countries: s.top_countries.iter().map(|c| (c.key.clone(), 0)).collect(),
            asns: s.top_asns.iter().map(|a| (a.asn, 0)).collect(),
        }
    }

    /// Whether there is nothing to count.
    pub fn is_empty(&self) -> bool {
        self.ips.is_empty()
            && self.users.is_empty()
            && self.countries.is_empty()
            && self.asns.is_empty()
    }

    /// Counts one row of the previous period.
    pub fn add(&mut self, r: &Row<'_>) {
        if let Ok(ip) = r.ip.parse::<IpAddr>()
            && let Some(n) = self.ips.get_mut(&ip)
        {
            *n += 1;
        }
        if let Some(n) = self.users.get_mut(unguard(r.username)) {
            *n += 1;
        }
        if let Some(n) = self.countries.get_mut(r.country) {
            *n += 1;
        }
        if let Some(n) = r
            .asn
            .parse::<u32>()
            .ok()
            .and_then(|a| self.asns.get_mut(&a))
        {
            *n += 1;
        }
    }

    /// Writes the counts into the summary's top tables.
    pub fn fill(&self, s: &mut Summary) {
        for i in &mut s.top_ips {
            i.previous =
                i.ip.parse()
                    .ok()
                    .and_then(|ip| self.ips.get(&ip))
                    .copied()
                    .unwrap_or(0);
        }
        for u in s.top_usernames.iter_mut().chain(&mut s.distributed) {
            u.previous = self.users.get(&u.username).copied().unwrap_or(0);
        }
        for c in &mut s.top_countries {
            c.previous = Some(self.countries.get(&c.key).copied().unwrap_or(0));
        }
        for a in &mut s.top_asns {
            a.previous = self.asns.get(&a.asn).copied().unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(ts: i64, ip: &'a str, user: &'a str, country: &'a str, asn: &'a str) -> Row<'a> {
        Row {
            ts,
            ip,
            username: user,
            country,
            asn,
            as_org: "Org",
            dns_status: "ok",
            ..Row::default()
        }
    }

    #[test]
    fn an_address_costs_48_bytes() {
        // A window may hold a million addresses: what each costs beside its key.
        assert!(
            std::mem::size_of::<IpAgg>() <= 48,
            "{}",
            std::mem::size_of::<IpAgg>()
        );
    }

    #[test]
    fn totals_tops_new_addresses_and_the_previous_period() {
        let now = [
            row(7200, "192.0.2.1", "admin", "FR", "64500"),
            row(7201, "192.0.2.1", "admin", "FR", "64500"),
            row(7202, "198.51.100.2", "admin", "DE", "64501"),
            row(7203, "2001:db8::1", "info", "JP", "64503"),
            row(7204, "2001:db8::2", "'=cmd", "JP", "64503"),
        ];
        let before = [
            row(3600, "192.0.2.1", "admin", "FR", "64500"),
            row(3601, "203.0.113.9", "root", "BR", "64502"),
        ];
        let mut cur = Aggregator::default();
        now.iter().for_each(|r| cur.add(r));
        let mut prev = Aggregator::light();
        before.iter().for_each(|r| prev.add(r));
        let mut s = cur.finish(7200, 10800, &prev, 123);
        assert_eq!(
            s.totals,
            Totals {
                attempts: 5,
                distinct_ips: 4,
                distinct_usernames: 3
            }
        );
        assert_eq!(
            s.previous,
            Totals {
                attempts: 2,
                distinct_ips: 2,
                distinct_usernames: 2
            }
        );
        assert_eq!(
            (s.top_ips[0].ip.as_str(), s.top_ips[0].count),
            ("192.0.2.1", 2)
        );
        assert_eq!(s.new_ips, 3, "192.0.2.1 was seen before");
        assert_eq!(s.top_usernames[0].username, "admin");
        assert_eq!(
            (
                s.top_usernames[0].distinct_ips,
                s.top_usernames[0].distinct_asns
            ),
            (2, 2)
        );
        assert!(
            s.top_usernames.iter().any(|u| u.username == "=cmd"),
            "the CSV guard is undone"
        );
        assert_eq!(
            s.ipv6_prefixes[0],
            PrefixLine {
                prefix: "2001:db8:0:0::/64".into(),
                count: 2,
                addresses: 2
            }
        );
        assert_eq!(
            (s.top_asns[0].asn, s.top_asns[0].org.as_str()),
            (64500, "Org")
        );
        assert_eq!(s.per_hour.len(), 1);
        let mut watch = Watch::of(&s);
        before.iter().for_each(|r| watch.add(r));
        watch.fill(&mut s);
        assert_eq!(s.top_ips[0].previous, 1);
        assert_eq!(s.top_usernames[0].previous, 1);
        let fr = s.top_countries.iter().find(|c| c.key == "FR").unwrap();
        assert_eq!((fr.count, fr.previous), (2, Some(1)));
        let de = s.top_countries.iter().find(|c| c.key == "DE").unwrap();
        assert_eq!(de.previous, Some(0));
        assert_eq!(s.top_asns[0].previous, 1);
    }
}
