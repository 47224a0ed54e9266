//! The alert window's memory of recent failed logins: per address, per username and per network
//! (`/24`, IPv6 `/64`), what a successful login is checked against.
//!
//! A window, to a quarter of it: each entry counts its failures in [`BUCKETS`] buckets a quarter
//! of the window wide, so a login sees the failures of the last three quarters and the current
//! one (failures older than that are not counted, however steady; failures logged after the
//! login in its own quarter are). Bounded in bytes: usernames (the attacker's text, of any
//! length) are kept as 64-bit hashes, addresses as themselves, a username's distinct addresses
//! as at most the configured threshold of hashes; each entry is a few dozen bytes. Entries are
//! swept by [`Memory::prune`]; each map holds at most [`MAX_KEYS`] keys, and failures past that
//! are counted ([`Memory::full`]), never silently lost.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

/// Most keys per map (addresses, usernames, networks): about 200 MB at worst, all three full;
/// the window's pruning keeps a real server far below it.
pub const MAX_KEYS: usize = 1_000_000;

/// Buckets per window.
pub const BUCKETS: u32 = 4;

/// Failure counts in the last [`BUCKETS`] quarter-windows. Slots are stored plus one, so that
/// 0 means an empty bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Buckets {
    slots: [u32; BUCKETS as usize],
    counts: [u32; BUCKETS as usize],
}

impl Buckets {
    fn add(&mut self, slot: u32) {
        let i = (slot % BUCKETS) as usize;
        let tag = slot + 1;
        if self.slots[i] < tag {
            self.slots[i] = tag;
            self.counts[i] = 0;
        } else if self.slots[i] > tag {
            // A whole window older than what is there: outside any window it shares.
            return;
        }
        self.counts[i] = self.counts[i].saturating_add(1);
    }

    /// Failures in the window ending with quarter `slot`.
    fn count(&self, slot: u32) -> u32 {
        let tag = slot + 1;
        (0..BUCKETS as usize)
            .filter(|&i| {
                self.slots[i] != 0 && self.slots[i] <= tag && self.slots[i] + BUCKETS > tag
            })
            .map(|i| self.counts[i])
            .sum()
    }

    /// The newest quarter with a failure (plus one; 0 when empty).
    fn newest(&self) -> u32 {
        self.slots.iter().copied().max().unwrap_or(0)
    }
}

/// An address's failures.
#[derive(Debug, Clone, Copy)]
struct AddrEntry {
    buckets: Buckets,
    /// Hash of the first username it tried (`None` until one was logged); `several` once it
    /// tried another.
    user: Option<u64>,
    several: bool,
}

/// A username's failures: from which addresses (hash, quarter last seen), at most the
/// threshold of them.
#[derive(Debug, Clone)]
struct UserEntry {
    buckets: Buckets,
    addrs: Vec<(u64, u32)>,
}

/// What the memory knows about a login's address, username and network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Failures from the address in the window.
    pub address_failures: u32,
    /// Whether those failures were all for the login's own username (or logged none).
    pub address_same_user_only: bool,
    /// Distinct addresses that failed on the username in the window (capped at the threshold).
    pub username_addresses: usize,
    /// Failures on the username in the window.
    pub username_failures: u32,
    /// Failures from the address's network (`/24`, `/64`) in the window.
    pub network_failures: u32,
}

/// The memory of failures within a window.
#[derive(Debug)]
pub struct Memory {
    /// A quarter of the window, in seconds.
    quarter: i64,
    distinct: usize,
    addrs: HashMap<IpAddr, AddrEntry>,
    users: HashMap<u64, UserEntry>,
    nets: HashMap<IpAddr, Buckets>,
    hasher: std::collections::hash_map::RandomState,
    full: u64,
}

impl Memory {
    /// A memory of `window_secs`, counting distinct addresses per username up to `distinct`.
    pub fn new(window_secs: i64, distinct: usize) -> Self {
        Memory {
            quarter: (window_secs / i64::from(BUCKETS)).max(1),
            distinct: distinct.max(1),
            addrs: HashMap::new(),
            users: HashMap::new(),
            nets: HashMap::new(),
            hasher: Default::default(),
            full: 0,
        }
    }

    /// Failures not remembered because a map was full.
    pub fn full(&self) -> u64 {
        self.full
    }

    /// Keys held: addresses, usernames, networks.
    pub fn len(&self) -> (usize, usize, usize) {
        (self.addrs.len(), self.users.len(), self.nets.len())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty() && self.users.is_empty() && self.nets.is_empty()
    }

    fn hash<T: Hash + ?Sized>(&self, v: &T) -> u64 {
        self.hasher.hash_one(v)
    }

    /// The quarter-window `ts` (seconds since the epoch) falls in.
    fn slot(&self, ts: i64) -> u32 {
        (ts.max(0) / self.quarter).min(i64::from(u32::MAX - BUCKETS - 1)) as u32
    }

    /// Remembers a failed login at `ts` (seconds since the epoch).
    pub fn failure(&mut self, ts: i64, ip: IpAddr, username: Option<&str>) {
        let slot = self.slot(ts);
        let user = username.filter(|u| !u.is_empty()).map(|u| self.hash(u));
        let ip_hash = self.hash(&ip);
        let room = (
            self.addrs.len() < MAX_KEYS,
            self.users.len() < MAX_KEYS,
            self.nets.len() < MAX_KEYS,
        );
        match self.addrs.get_mut(&ip) {
            Some(e) => {
                if e.buckets.count(slot) == 0 {
                    // What it tried before is out of the window.
                    e.user = None;
                    e.several = false;
                }
                e.buckets.add(slot);
                match (e.user, user) {
                    (None, u) => e.user = u,
                    (Some(a), Some(b)) if a != b => e.several = true,
                    _ => {}
                }
            }
            None if room.0 => {
                let mut buckets = Buckets::default();
                buckets.add(slot);
                self.addrs.insert(
                    ip,
                    AddrEntry {
                        buckets,
                        user,
                        several: false,
                    },
                );
            }
            None => self.full += 1,
        }
        if let Some(user) = user {
            let distinct = self.distinct;
            let tag = slot + 1;
            match self.users.get_mut(&user) {
                Some(e) => {
                    e.buckets.add(slot);
                    // Addresses out of the window make room.
                    e.addrs.retain(|&(_, seen)| seen + BUCKETS > tag);
                    let has_room = e.addrs.len() < distinct;
                    match e.addrs.iter_mut().find(|(h, _)| *h == ip_hash) {
                        Some(a) => a.1 = a.1.max(tag),
                        None if has_room => e.addrs.push((ip_hash, tag)),
                        None => {}
                    }
                }
                None if room.1 => {
                    let mut buckets = Buckets::default();
                    buckets.add(slot);
                    self.users.insert(
                        user,
                        UserEntry {
                            buckets,
                            addrs: vec![(ip_hash, tag)],
                        },
                    );
                }
                None => self.full += 1,
            }
        }
        let net = network(ip);
        match self.nets.get_mut(&net) {
            Some(b) => b.add(slot),
            None if room.2 => {
                let mut b = Buckets::default();
                b.add(slot);
                self.nets.insert(net, b);
            }
            None => self.full += 1,
        }
    }

    /// What the window holds about a login at `ts` from `ip` as `username`.
    pub fn seen(&self, ts: i64, ip: IpAddr, username: Option<&str>) -> Seen {
        let slot = self.slot(ts);
        let tag = slot + 1;
        let user = username.filter(|u| !u.is_empty()).map(|u| self.hash(u));
        let mut seen = Seen::default();
        if let Some(e) = self.addrs.get(&ip) {
            seen.address_failures = e.buckets.count(slot);
            seen.address_same_user_only = !e.several && (e.user.is_none() || e.user == user);
        }
        if let Some(e) = user.and_then(|u| self.users.get(&u)) {
            seen.username_failures = e.buckets.count(slot);
            seen.username_addresses = e
                .addrs
                .iter()
                .filter(|&&(_, seen)| seen <= tag && seen + BUCKETS > tag)
                .count();
        }
        if let Some(b) = self.nets.get(&network(ip)) {
            seen.network_failures = b.count(slot);
        }
        seen
    }

    /// Drops what is older than the window at `now`.
    pub fn prune(&mut self, now: i64) {
        let tag = self.slot(now) + 1;
        let live = |b: &Buckets| b.newest() + BUCKETS > tag;
        self.addrs.retain(|_, e| live(&e.buckets));
        self.users.retain(|_, e| live(&e.buckets));
        self.nets.retain(|_, b| live(b));
    }
}

/// The network an address is in: its `/24` (IPv4) or `/64` (IPv6).
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xFFFF_FF00).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

/// `network(ip)` written with its prefix length.
pub fn network_name(ip: IpAddr) -> String {
    match network(ip) {
        n @ IpAddr::V4(_) => format!("{n}/24"),
        n @ IpAddr::V6(_) => format!("{n}/64"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_are_remembered_within_the_window_only() {
        let mut m = Memory::new(400, 3);
        m.failure(1000, ip("192.0.2.1"), Some("alice"));
        m.failure(1010, ip("192.0.2.1"), Some("bob"));
        let s = m.seen(1050, ip("192.0.2.1"), Some("carol"));
        assert_eq!(s.address_failures, 2);
        assert!(!s.address_same_user_only);
        assert_eq!(s.network_failures, 2);
        // Another address of the /24.
        let s = m.seen(1050, ip("192.0.2.200"), Some("carol"));
        assert_eq!((s.address_failures, s.network_failures), (0, 2));
        // A window later: forgotten, also before pruning.
        assert_eq!(m.seen(1500, ip("192.0.2.1"), None), Seen::default());
        m.prune(1500);
        assert!(m.is_empty());
    }

    #[test]
    fn steady_failures_do_not_add_up_past_the_window() {
        // One failure a "day" for ten days, window of a day: a login sees one or two, never ten.
        let day = 86_400;
        let mut m = Memory::new(day, 3);
        for d in 0..10 {
            m.failure(1_000_000 + d * day, ip("192.0.2.1"), Some("alice"));
        }
        let s = m.seen(1_000_000 + 9 * day + 60, ip("192.0.2.1"), Some("alice"));
        assert!((1..=2).contains(&s.address_failures), "{s:?}");
        assert!(s.username_failures <= 2, "{s:?}");
    }

    #[test]
    fn a_username_counts_distinct_addresses_up_to_the_threshold() {
        let mut m = Memory::new(3600, 3);
        for i in 0..10 {
            m.failure(1000 + i, ip(&format!("198.51.100.{i}")), Some("info"));
            m.failure(1000 + i, ip(&format!("198.51.100.{i}")), Some("info"));
        }
        let s = m.seen(2000, ip("203.0.113.9"), Some("info"));
        assert_eq!((s.username_addresses, s.username_failures), (3, 20));
        assert_eq!(s.address_failures, 0);
        // Out of the window, the addresses are not counted.
        let s = m.seen(1000 + 3 * 3600, ip("203.0.113.9"), Some("info"));
        assert_eq!((s.username_addresses, s.username_failures), (0, 0));
    }

    #[test]
    fn own_typos_are_told_apart_and_failures_without_a_username_are_no_other_user() {
        let mut m = Memory::new(3600, 3);
        m.failure(1000, ip("192.0.2.1"), Some("alice"));
        let s = m.seen(1001, ip("192.0.2.1"), Some("alice"));
        assert!(s.address_same_user_only && s.address_failures == 1);
        let s = m.seen(1001, ip("192.0.2.1"), Some("bob"));
        assert!(!s.address_same_user_only);
        // Postfix before 3.7.8 logs no username: such a failure is not "another user".
        m.failure(1000, ip("192.0.2.2"), None);
        let s = m.seen(1001, ip("192.0.2.2"), Some("alice"));
        assert!(s.address_same_user_only && s.address_failures == 1);
    }

    #[test]
    fn ipv6_networks_are_64s() {
        assert_eq!(
            network_name(ip("2001:db8:1:2:3:4:5:6")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(network_name(ip("192.0.2.77")), "192.0.2.0/24");
    }
}
