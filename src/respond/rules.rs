//! When to ban: each rule's window of failures, per key, in log time.
//!
//! The engine only counts and decides; carrying out a ban, knowing which bans are active and
//! counting repeat offenders belong to the [`super::responder`]. Windows use the failures' own
//! timestamps, so that a batch read late (a backlog, a restart) counts as it happened; a
//! decision is only made for a failure within its rule's window of `now`, so that history read
//! at a first start (`backfill`) fills the windows but bans nobody for last week.
//!
//! Memory is bounded: a key keeps at most `max` timestamps (a ban needs no more), a username at
//! most [`MAX_ADDRESSES_PER_USERNAME`] addresses, and a rule at most [`MAX_KEYS`] keys (beyond
//! which new keys are not counted, and that is counted).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;

use super::{KeyKind, ResponseSettings, Rule};

/// Keys one rule remembers at most.
pub const MAX_KEYS: usize = 1_000_000;
/// Addresses remembered per username at most.
pub const MAX_ADDRESSES_PER_USERNAME: usize = 4096;

/// A ban the rules ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What is banned.
    pub target: IpNet,
    /// The rule that fired (its index in the settings).
    pub rule: usize,
    /// The address whose failure made it.
    pub ip: IpAddr,
    /// The username it tried.
    pub username: Option<String>,
    /// Failures (for `username`: addresses) within the window.
    pub count: u32,
}

#[derive(Debug, Default)]
struct RuleState {
    /// `ip` and `net` rules: the latest failures of each key, oldest first (time, address).
    keys: HashMap<IpNet, VecDeque<(i64, IpAddr)>>,
    /// `username` rules: each username's failing addresses (as targets) and when each last failed.
    users: HashMap<String, HashMap<IpNet, i64>>,
}

/// Every rule's windows.
#[derive(Debug)]
pub struct Engine {
    settings: ResponseSettings,
    state: Vec<RuleState>,
    /// Failures not counted because a rule's memory was full.
    pub not_counted: u64,
}

impl Engine {
    /// An engine with empty windows.
    pub fn new(settings: ResponseSettings) -> Self {
        let state = settings
            .rules
            .iter()
            .map(|_| RuleState::default())
            .collect();
        Engine {
            settings,
            state,
            not_counted: 0,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ResponseSettings {
        &self.settings
    }

    /// Counts a failure of `ip` (for `username`) logged at `ts`, and returns the bans it makes
    /// when it is within its rule's window of `now`. A rule that fires forgets the key's
    /// failures, as a ban starts afresh (a restart replaying the window does the same, so it
    /// neither forgets a count nor bans twice).
    pub fn failure(
        &mut self,
        ts: i64,
        ip: IpAddr,
        username: Option<&str>,
        now: i64,
    ) -> Vec<Decision> {
        let ip = super::canonical(ip);
        let mut out = Vec::new();
        for (i, rule) in self.settings.rules.iter().enumerate() {
            let window = rule.window.as_secs() as i64;
            let live = ts > now - window;
            let st = &mut self.state[i];
            match rule.key {
                KeyKind::Ip | KeyKind::Net => {
                    let target = self.settings.target(rule.key, ip);
                    if !st.keys.contains_key(&target) && st.keys.len() >= MAX_KEYS {
                        self.not_counted += 1;
                        continue;
                    }
                    let q = st.keys.entry(target).or_default();
                    while q.front().is_some_and(|&(t, _)| t <= ts - window) {
                        q.pop_front();
                    }
                    q.push_back((ts, ip));
                    while q.len() > rule.max as usize {
                        q.pop_front();
                    }
                    if q.len() >= rule.max as usize {
                        let count = q.len() as u32;
                        st.keys.remove(&target);
                        if live {
                            out.push(Decision {
                                target,
                                rule: i,
                                ip,
                                username: username.map(str::to_string),
                                count,
                            });
                        }
                    }
                }
                KeyKind::Username => {
                    let Some(user) = username.filter(|u| !u.is_empty()) else {
                        continue;
                    };
                    if !st.users.contains_key(user) && st.users.len() >= MAX_KEYS {
                        self.not_counted += 1;
                        continue;
                    }
                    let target = self.settings.target(KeyKind::Ip, ip);
                    let addrs = st.users.entry(user.to_string()).or_default();
                    addrs.retain(|_, &mut t| t > ts - window);
                    if addrs.len() >= MAX_ADDRESSES_PER_USERNAME && !addrs.contains_key(&target) {
                        // Keep the newest: drop the oldest address.
                        if let Some((&old, _)) = addrs.iter().min_by_key(|(_, t)| **t) {
                            addrs.remove(&old);
                        }
                    }
                    addrs.insert(target, ts);
                    let count = addrs.len() as u32;
                    if count > rule.max {
                        // Every further address: this one is banned, and forgotten (a ban
                        // starts afresh), while the username stays under attack.
                        addrs.remove(&target);
                        if live {
                            out.push(Decision {
                                target,
                                rule: i,
                                ip,
                                username: Some(user.to_string()),
                                count,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// A successful login from `ip` (as `username`): its failures no longer count, in every
    /// rule (in a network's count too, and in the username's addresses). Whether it had any.
    pub fn forgive(&mut self, ip: IpAddr, username: Option<&str>) -> bool {
        let ip = super::canonical(ip);
        let mut had = false;
        for (i, rule) in self.settings.rules.iter().enumerate() {
            let st = &mut self.state[i];
            match rule.key {
                KeyKind::Ip | KeyKind::Net => {
                    let target = self.settings.target(rule.key, ip);
                    if let Some(q) = st.keys.get_mut(&target) {
                        let before = q.len();
                        q.retain(|&(_, a)| a != ip);
                        had |= q.len() != before;
                        if q.is_empty() {
                            st.keys.remove(&target);
                        }
                    }
                }
                KeyKind::Username => {
                    let target = self.settings.target(KeyKind::Ip, ip);
                    if let Some(addrs) = username.and_then(|u| st.users.get_mut(u)) {
                        had |= addrs.remove(&target).is_some();
                    }
                }
            }
        }
        had
    }

    /// Drops what has left every window at `now`.
    pub fn prune(&mut self, now: i64) {
        for (rule, st) in self.settings.rules.iter().zip(&mut self.state) {
            let from = now - rule.window.as_secs() as i64;
            st.keys
                .retain(|_, q| q.back().is_some_and(|&(t, _)| t > from));
            st.users.retain(|_, a| {
                a.retain(|_, &mut t| t > from);
                !a.is_empty()
            });
        }
    }

    /// Keys remembered, all rules together (for status).
    pub fn keys(&self) -> usize {
        self.state
            .iter()
            .map(|s| s.keys.len() + s.users.len())
            .sum()
    }

    /// The rule at `i`.
    pub fn rule(&self, i: usize) -> &Rule {
        &self.settings.rules[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(rules: Vec<Rule>) -> ResponseSettings {
        let mut s = ResponseSettings::from_raw(&Default::default());
        s.rules = rules;
        s
    }

    fn rule(key: KeyKind, max: u32) -> Rule {
        Rule {
            name: format!("{key:?}"),
            key,
            max,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(3600),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn the_max_th_failure_in_the_window_bans_and_starts_afresh() {
        let mut e = Engine::new(settings(vec![rule(KeyKind::Ip, 3)]));
        assert!(
            e.failure(NOW - 10, ip("203.0.113.5"), Some("a"), NOW)
                .is_empty()
        );
        assert!(
            e.failure(NOW - 9, ip("203.0.113.5"), Some("b"), NOW)
                .is_empty()
        );
        let d = e.failure(NOW - 8, ip("203.0.113.5"), Some("c"), NOW);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].target.to_string(), "203.0.113.5/32");
        assert_eq!(d[0].count, 3);
        // Forgotten once banned: two more do not ban again.
        assert!(e.failure(NOW - 7, ip("203.0.113.5"), None, NOW).is_empty());
        assert!(e.failure(NOW - 6, ip("203.0.113.5"), None, NOW).is_empty());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let mut e = Engine::new(settings(vec![rule(KeyKind::Ip, 3)]));
        assert!(
            e.failure(NOW - 1300, ip("203.0.113.5"), None, NOW)
                .is_empty()
        );
        assert!(
            e.failure(NOW - 1200, ip("203.0.113.5"), None, NOW)
                .is_empty()
        );
        // 600 s after the first two: they left the window.
        assert!(
            e.failure(NOW - 600, ip("203.0.113.5"), None, NOW)
                .is_empty()
        );
        assert!(e.failure(NOW - 5, ip("203.0.113.5"), None, NOW).is_empty());
        assert_eq!(e.failure(NOW - 4, ip("203.0.113.5"), None, NOW).len(), 1);
    }

    #[test]
    fn history_older_than_the_window_fills_it_but_bans_nobody() {
        let mut e = Engine::new(settings(vec![rule(KeyKind::Ip, 2)]));
        let old = NOW - 86_400;
        assert!(e.failure(old, ip("203.0.113.5"), None, NOW).is_empty());
        assert!(e.failure(old + 1, ip("203.0.113.5"), None, NOW).is_empty());
    }

    #[test]
    fn networks_add_up_their_addresses_and_ipv6_counts_by_prefix() {
        let mut e = Engine::new(settings(vec![rule(KeyKind::Net, 3), rule(KeyKind::Ip, 2)]));
        assert!(e.failure(NOW, ip("198.51.100.1"), None, NOW).is_empty());
        assert!(e.failure(NOW, ip("198.51.100.2"), None, NOW).is_empty());
        let d = e.failure(NOW, ip("198.51.100.3"), None, NOW);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].target.to_string(), "198.51.100.0/24");
        // Two addresses of one /64 are one key for `ip`.
        assert!(e.failure(NOW, ip("2001:db8:0:1::a"), None, NOW).is_empty());
        let d = e.failure(NOW, ip("2001:db8:0:1::b"), None, NOW);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].target.to_string(), "2001:db8:0:1::/64");
    }

    #[test]
    fn a_username_failing_from_more_than_max_addresses_bans_every_further_one() {
        let mut e = Engine::new(settings(vec![rule(KeyKind::Username, 3)]));
        for i in 1..=3 {
            let a = ip(&format!("198.51.100.{i}"));
            assert!(e.failure(NOW, a, Some("info"), NOW).is_empty());
        }
        // Another username does not count.
        assert!(
            e.failure(NOW, ip("203.0.113.1"), Some("bob"), NOW)
                .is_empty()
        );
        for i in 4..=6 {
            let a = ip(&format!("203.0.113.{i}"));
            let d = e.failure(NOW, a, Some("info"), NOW);
            assert_eq!(d.len(), 1, "address {i}");
            assert_eq!(d[0].target, IpNet::from(a));
        }
    }

    #[test]
    fn a_successful_login_clears_its_address_failures_everywhere() {
        let mut e = Engine::new(settings(vec![
            rule(KeyKind::Ip, 3),
            rule(KeyKind::Net, 3),
            rule(KeyKind::Username, 1),
        ]));
        let phone = ip("203.0.113.5");
        assert!(e.failure(NOW, phone, Some("alice"), NOW).is_empty());
        assert!(e.failure(NOW, phone, Some("alice"), NOW).is_empty());
        assert!(e.forgive(phone, Some("alice")));
        assert!(!e.forgive(phone, Some("alice")), "nothing left to forgive");
        // Two more failures: not a ban (the first two were forgiven), and the username rule
        // counts one address, not two.
        assert!(e.failure(NOW, phone, Some("alice"), NOW).is_empty());
        assert!(e.failure(NOW, phone, Some("alice"), NOW).is_empty());
        // The network counts the two failures since, and another address's: a ban now (it
        // would have come at the phone's third failure without forgiveness).
        let d = e.failure(NOW, ip("203.0.113.6"), None, NOW);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].target.to_string(), "203.0.113.0/24");
    }

    #[test]
    fn prune_forgets_what_left_every_window() {
        let mut e = Engine::new(settings(vec![
            rule(KeyKind::Ip, 5),
            rule(KeyKind::Username, 5),
        ]));
        e.failure(NOW, ip("203.0.113.5"), Some("x"), NOW);
        assert_eq!(e.keys(), 2);
        e.prune(NOW + 599);
        assert_eq!(e.keys(), 2);
        e.prune(NOW + 600);
        assert_eq!(e.keys(), 0);
    }
}
