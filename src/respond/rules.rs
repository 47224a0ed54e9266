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
    /// `ip` and `net` rules: the latest failures of each key, oldest first (time, address,
    /// [`user_key`] of the username tried).
    keys: HashMap<IpNet, VecDeque<(i64, IpAddr, u64)>>,
    /// `username` rules: each username's failing addresses (as targets) and when each last failed.
    users: HashMap<String, HashMap<IpNet, i64>>,
    /// `username` rules: the addresses each username logged in from, and when (its owner's:
    /// their failures for it are typos, never a ban by this rule).
    trusted: HashMap<String, HashMap<IpNet, i64>>,
}

/// A username as failures remember it: a hash of its ASCII-lowercased bytes (0: none logged,
/// which any login from the address forgives, as it cannot be told apart).
fn user_key(username: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    match username.filter(|u| !u.is_empty()) {
        None => 0,
        Some(u) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            u.to_ascii_lowercase().hash(&mut h);
            h.finish().max(1)
        }
    }
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
                    q.push_back((ts, ip, user_key(username)));
                    // The window ends at the newest failure (one read late from another
                    // source may be older than those before it).
                    let newest = q.iter().map(|e| e.0).max().unwrap_or(ts);
                    q.retain(|&(t, _, _)| t > newest - window);
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
                    // One account whatever the case its name is typed in.
                    let user = user.to_ascii_lowercase();
                    let user = user.as_str();
                    if !st.users.contains_key(user) && st.users.len() >= MAX_KEYS {
                        self.not_counted += 1;
                        continue;
                    }
                    let target = self.settings.target(KeyKind::Ip, ip);
                    let owner = st
                        .trusted
                        .get(user)
                        .and_then(|a| a.get(&target))
                        .is_some_and(|&t| t > ts - window);
                    if owner {
                        // Where this username logged in from: its owner mistyping.
                        continue;
                    }
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

    /// A successful login from `ip` as `username`, logged at `ts`: the address's failures for
    /// that username (and those with no username logged) no longer count, in every rule (in a
    /// network's count too); for a `username` rule the address becomes the owner's until the
    /// window passes. Failures for other usernames still count: an attacker with one account of
    /// their own cannot log in to wipe their guesses at others. Whether it had any.
    pub fn forgive(&mut self, ip: IpAddr, username: Option<&str>, ts: i64) -> bool {
        let ip = super::canonical(ip);
        let who = user_key(username);
        let mut had = false;
        for (i, rule) in self.settings.rules.iter().enumerate() {
            let st = &mut self.state[i];
            match rule.key {
                KeyKind::Ip | KeyKind::Net => {
                    let target = self.settings.target(rule.key, ip);
                    if let Some(q) = st.keys.get_mut(&target) {
                        let before = q.len();
                        q.retain(|&(_, a, u)| !(a == ip && (u == who || u == 0)));
                        had |= q.len() != before;
                        if q.is_empty() {
                            st.keys.remove(&target);
                        }
                    }
                }
                KeyKind::Username => {
                    let target = self.settings.target(KeyKind::Ip, ip);
                    if let Some(u) = username.filter(|u| !u.is_empty()) {
                        let u = u.to_ascii_lowercase();
                        let u = u.as_str();
                        if let Some(addrs) = st.users.get_mut(u) {
                            had |= addrs.remove(&target).is_some();
                        }
                        if st.trusted.contains_key(u) || st.trusted.len() < MAX_KEYS {
                            let t = st.trusted.entry(u.to_string()).or_default();
                            if t.len() < MAX_ADDRESSES_PER_USERNAME || t.contains_key(&target) {
                                t.insert(target, ts);
                            }
                        }
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
            st.keys.retain(|_, q| q.iter().any(|&(t, _, _)| t > from));
            for map in [&mut st.users, &mut st.trusted] {
                map.retain(|_, a| {
                    a.retain(|_, &mut t| t > from);
                    !a.is_empty()
                });
            }
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
        assert!(e.forgive(phone, Some("Alice"), NOW));
        assert!(
            !e.forgive(phone, Some("alice"), NOW),
            "nothing left to forgive"
        );
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
    fn a_login_forgives_only_its_own_username_so_an_attacker_with_an_account_is_still_banned() {
        let mut e = Engine::new(settings(vec![rule(KeyKind::Ip, 3)]));
        let a = ip("203.0.113.9");
        assert!(e.failure(NOW, a, Some("alice"), NOW).is_empty());
        assert!(e.failure(NOW, a, Some("bob"), NOW).is_empty());
        // The attacker logs in to an account of their own: the guesses stay.
        assert!(!e.forgive(a, Some("mallory"), NOW));
        assert_eq!(e.failure(NOW, a, Some("carol"), NOW).len(), 1);
        // Failures with no username logged are forgiven by any login.
        assert!(e.failure(NOW, a, None, NOW).is_empty());
        assert!(e.forgive(a, Some("mallory"), NOW));
    }

    #[test]
    fn a_username_under_attack_does_not_ban_its_owner_s_address() {
        let mut e = Engine::new(settings(vec![rule(KeyKind::Username, 2)]));
        let home = ip("198.51.100.77");
        assert!(e.failure(NOW - 5, home, Some("alice"), NOW).is_empty());
        e.forgive(home, Some("alice"), NOW - 4);
        for i in 1..=2 {
            e.failure(NOW, ip(&format!("203.0.113.{i}")), Some("alice"), NOW);
        }
        // alice mistypes at home while her username is under attack: not banned...
        assert!(e.failure(NOW, home, Some("alice"), NOW).is_empty());
        // ...while another address is.
        assert_eq!(
            e.failure(NOW, ip("203.0.113.3"), Some("alice"), NOW).len(),
            1
        );
    }

    #[test]
    fn a_failure_read_late_does_not_widen_the_window() {
        let mut e = Engine::new(settings(vec![rule(KeyKind::Ip, 3)]));
        let a = ip("203.0.113.5");
        assert!(e.failure(NOW, a, None, NOW).is_empty());
        assert!(e.failure(NOW + 1, a, None, NOW + 1).is_empty());
        // From a source read late, 20 minutes older: outside the window of the others.
        assert!(e.failure(NOW - 1200, a, None, NOW + 1).is_empty());
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
