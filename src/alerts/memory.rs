//! The alert window's memory of recent failed logins: per address, per username and per network
//! (`/24`, IPv6 `/64`), what a successful login is checked against.
//!
//! Bounded by design: an entry is a few dozen bytes (usernames are kept once, addresses as
//! 64-bit hashes inside a username's entry), entries older than the window are dropped by
//! [`Memory::prune`], and each map holds at most [`MAX_KEYS`] keys: past that, new keys are not
//! remembered and are counted ([`Memory::full`]), never silently.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

/// Most keys per map (addresses, usernames, networks): about 150 MB at worst; the window's
/// pruning keeps a real server far below it.
pub const MAX_KEYS: usize = 1_000_000;

/// An address's failures in the window.
#[derive(Debug, Clone, Copy)]
struct AddrEntry {
    last: i64,
    count: u32,
    /// Hash of the first username it tried; `several` once it tried another.
    user: u64,
    several: bool,
}

/// A username's failures in the window: from how many addresses.
#[derive(Debug, Clone)]
struct UserEntry {
    last: i64,
    count: u32,
    /// Hashes of the distinct addresses seen, at most the configured threshold (then it is
    /// reached, and more are not needed).
    addrs: Vec<u64>,
}

/// A network's failures in the window.
#[derive(Debug, Clone, Copy)]
struct NetEntry {
    last: i64,
    count: u32,
}

/// What the memory knows about a login's address, username and network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Failures from the address in the window.
    pub address_failures: u32,
    /// Whether those failures were all for the login's own username.
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
    window: i64,
    distinct: usize,
    addrs: HashMap<IpAddr, AddrEntry>,
    users: HashMap<Box<str>, UserEntry>,
    nets: HashMap<IpAddr, NetEntry>,
    hasher: std::collections::hash_map::RandomState,
    full: u64,
}

impl Memory {
    /// A memory of `window_secs`, counting distinct addresses per username up to `distinct`.
    pub fn new(window_secs: i64, distinct: usize) -> Self {
        Memory {
            window: window_secs.max(1),
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

    /// Remembers a failed login at `ts` (seconds since the epoch).
    pub fn failure(&mut self, ts: i64, ip: IpAddr, username: Option<&str>) {
        let user = username.unwrap_or("");
        let user_hash = self.hash(user);
        let ip_hash = self.hash(&ip);
        let window = self.window;
        let fresh = |last: i64| ts - last <= window;
        let room = (
            self.addrs.len() < MAX_KEYS,
            self.users.len() < MAX_KEYS,
            self.nets.len() < MAX_KEYS,
        );
        match self.addrs.get_mut(&ip) {
            Some(e) if fresh(e.last) => {
                e.last = e.last.max(ts);
                e.count = e.count.saturating_add(1);
                e.several |= e.user != user_hash;
            }
            Some(e) => {
                *e = AddrEntry {
                    last: ts,
                    count: 1,
                    user: user_hash,
                    several: false,
                }
            }
            None if room.0 => {
                self.addrs.insert(
                    ip,
                    AddrEntry {
                        last: ts,
                        count: 1,
                        user: user_hash,
                        several: false,
                    },
                );
            }
            None => self.full += 1,
        }
        if !user.is_empty() {
            let distinct = self.distinct;
            match self.users.get_mut(user) {
                Some(e) => {
                    if !fresh(e.last) {
                        e.count = 0;
                        e.addrs.clear();
                    }
                    e.last = e.last.max(ts);
                    e.count = e.count.saturating_add(1);
                    if e.addrs.len() < distinct && !e.addrs.contains(&ip_hash) {
                        e.addrs.push(ip_hash);
                    }
                }
                None if room.1 => {
                    self.users.insert(
                        user.into(),
                        UserEntry {
                            last: ts,
                            count: 1,
                            addrs: vec![ip_hash],
                        },
                    );
                }
                None => self.full += 1,
            }
        }
        let net = network(ip);
        match self.nets.get_mut(&net) {
            Some(e) if fresh(e.last) => {
                e.last = e.last.max(ts);
                e.count = e.count.saturating_add(1);
            }
            Some(e) => *e = NetEntry { last: ts, count: 1 },
            None if room.2 => {
                self.nets.insert(net, NetEntry { last: ts, count: 1 });
            }
            None => self.full += 1,
        }
    }

    /// What the window holds about a login at `ts` from `ip` as `username`.
    pub fn seen(&self, ts: i64, ip: IpAddr, username: Option<&str>) -> Seen {
        let fresh = |last: i64| ts - last <= self.window;
        let mut seen = Seen::default();
        if let Some(e) = self.addrs.get(&ip).filter(|e| fresh(e.last)) {
            seen.address_failures = e.count;
            seen.address_same_user_only = !e.several && e.user == self.hash(username.unwrap_or(""));
        }
        if let Some(e) = username
            .filter(|u| !u.is_empty())
            .and_then(|u| self.users.get(u))
            .filter(|e| fresh(e.last))
        {
            seen.username_addresses = e.addrs.len();
            seen.username_failures = e.count;
        }
        if let Some(e) = self.nets.get(&network(ip)).filter(|e| fresh(e.last)) {
            seen.network_failures = e.count;
        }
        seen
    }

    /// Drops what is older than the window at `now`.
    pub fn prune(&mut self, now: i64) {
        let window = self.window;
        self.addrs.retain(|_, e| now - e.last <= window);
        self.users.retain(|_, e| now - e.last <= window);
        self.nets.retain(|_, e| now - e.last <= window);
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
        let mut m = Memory::new(100, 3);
        m.failure(1000, ip("192.0.2.1"), Some("alice"));
        m.failure(1010, ip("192.0.2.1"), Some("bob"));
        let s = m.seen(1050, ip("192.0.2.1"), Some("carol"));
        assert_eq!(s.address_failures, 2);
        assert!(!s.address_same_user_only);
        assert_eq!(s.network_failures, 2);
        // Another address of the /24.
        let s = m.seen(1050, ip("192.0.2.200"), Some("carol"));
        assert_eq!((s.address_failures, s.network_failures), (0, 2));
        // Past the window: forgotten, also before pruning.
        assert_eq!(m.seen(1111, ip("192.0.2.1"), None), Seen::default());
        m.prune(1111);
        assert!(m.is_empty());
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
    }

    #[test]
    fn own_typos_are_told_apart() {
        let mut m = Memory::new(3600, 3);
        m.failure(1000, ip("192.0.2.1"), Some("alice"));
        let s = m.seen(1001, ip("192.0.2.1"), Some("alice"));
        assert!(s.address_same_user_only && s.address_failures == 1);
        let s = m.seen(1001, ip("192.0.2.1"), Some("bob"));
        assert!(!s.address_same_user_only);
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
