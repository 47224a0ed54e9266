//! The responder: bans attackers, opt-in (`[response] enabled = true`).
//!
//! A consumer of committed events, like the alerts: the sink hands it each commit's failures and
//! logins once they are durable, so that no ban rests on a row a crash could take back. It
//! counts failures per rule ([`rules::Engine`]: by address, by network, or by username across
//! addresses), decides bans (doubling for repeat offenders up to `max_ban`), and carries them out:
//!
//! - [`nft`]: elements with a timeout in the sets of `table inet maillogsentinel`, so that the
//!   kernel lifts a ban itself when it ends, also while the daemon is stopped;
//! - [`exec`]: a command of the postmaster's, with the ban's facts as separate arguments.
//!
//! Every ban, unban and forgiveness is a row of the ban record ([`record`],
//! `state_dir/bans.csv`): what `maillogsentinel bans` lists, what a restart reconciles the sets
//! with, and what repeat offenders are counted from.
//!
//! What is never banned: an address in `ignore` or one of the host's own; an address that is not
//! global unicast (loopback, private, link-local, multicast...: banning those locks out the
//! postmaster's own network, never an attacker on the internet); a network holding either.

pub mod exec;
pub mod fleet;
pub mod nfnl;
pub mod nft;
pub mod record;
pub mod responder;
pub mod rules;

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use responder::{Command, spawn};

/// The mail ports banned addresses lose by default: SMTP, submissions, submission, POP3, POP3S,
/// IMAP, IMAPS, ManageSieve.
pub const MAIL_PORTS: [u16; 8] = [25, 465, 587, 110, 995, 143, 993, 4190];

/// Whether bans are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Bans are carried out.
    #[default]
    Ban,
    /// A dry run: decisions are logged and recorded, nothing is blocked.
    Log,
}

impl Mode {
    /// The word in the configuration and the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ban => "ban",
            Mode::Log => "log",
        }
    }
}

/// What a rule counts failures by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// The address (IPv6: its `ipv6_prefix`).
    Ip,
    /// The network: IPv4 /24, IPv6 /48.
    Net,
    /// The username: failures from more than `max` addresses ban every further one.
    Username,
}

/// One `[[response.rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// What it counts by.
    pub key: KeyKind,
    /// Failures (addresses, for `username`) that make a ban.
    pub max: u32,
    /// How far back failures count.
    pub window: Duration,
    /// A first ban's length.
    pub ban: Duration,
}

/// `[response]` as the daemon uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSettings {
    /// Whether the responder runs.
    pub enabled: bool,
    /// Ban, or only log.
    pub mode: Mode,
    /// The rules.
    pub rules: Vec<Rule>,
    /// IPv6 addresses are banned by this prefix.
    pub ipv6_prefix: u8,
    /// Longest ban (repeat offenders' bans double up to it; also how far back they count).
    pub max_ban: Duration,
    /// Never banned (the host's own addresses are added at start).
    pub ignore: Vec<IpNet>,
    /// A successful login clears its address's failures.
    pub forgive_on_success: bool,
    /// Ports closed to banned addresses.
    pub ports: Vec<u16>,
    /// Most bans active at once.
    pub max_bans: usize,
    /// Carry bans out in nftables.
    pub nftables: bool,
    /// The command run per ban (empty: none).
    pub exec: Vec<String>,
    /// Its time limit.
    pub exec_timeout: Duration,
    /// Share bans with the fleet through the PostgreSQL store.
    pub share: bool,
}

impl ResponseSettings {
    /// The settings of `[response]` as written.
    pub fn from_raw(raw: &crate::config::RawResponse) -> Self {
        ResponseSettings {
            enabled: raw.enabled,
            mode: raw.mode,
            rules: raw
                .rule
                .iter()
                .map(|r| Rule {
                    name: r.name.clone(),
                    key: r.key,
                    max: r.max,
                    window: r.window.0,
                    ban: r.ban.0,
                })
                .collect(),
            ipv6_prefix: raw.ipv6_prefix,
            max_ban: raw.max_ban.0,
            ignore: raw.ignore.iter().filter_map(|s| parse_net(s)).collect(),
            forgive_on_success: raw.forgive_on_success,
            ports: raw.ports.clone(),
            max_bans: raw.max_bans,
            nftables: raw.nftables,
            exec: raw.exec.clone(),
            exec_timeout: raw.exec_timeout.0,
            share: raw.share,
        }
    }

    /// The longest rule window: how much of the record a restart reads back.
    pub fn longest_window(&self) -> Duration {
        self.rules
            .iter()
            .map(|r| r.window)
            .max()
            .unwrap_or_default()
    }

    /// What a ban of `ip` by a rule counting by `key` covers.
    pub fn target(&self, key: KeyKind, ip: IpAddr) -> IpNet {
        let len = match (key, ip) {
            (KeyKind::Net, IpAddr::V4(_)) => 24,
            (KeyKind::Net, IpAddr::V6(_)) => 48,
            (_, IpAddr::V4(_)) => 32,
            (_, IpAddr::V6(_)) => self.ipv6_prefix,
        };
        IpNet::new(ip, len)
            .expect("prefix lengths are checked with the configuration")
            .trunc()
    }
}

/// An address (`192.0.2.7`, a host network) or a network (`198.51.100.0/24`), truncated to
/// its prefix; `None` when it is neither.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|a| IpNet::from(canonical(a))))
}

/// The ranges that are not global unicast (see [`not_bannable`]), as networks: a ban wider
/// than an address must not cover any of them.
const NOT_GLOBAL: [(&str, &str); 14] = [
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/3", "not global unicast"),
    ("4000::/2", "not global unicast"),
    ("8000::/1", "not global unicast"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
];

/// Why a ban of `target` (an address or a network) may not be made, when it may not: its
/// address is not global unicast, or the network holds a range that is not.
pub fn not_bannable_net(target: &IpNet) -> Option<String> {
    if let Some(why) = not_bannable(target.network()) {
        return Some(why.to_string());
    }
    NOT_GLOBAL.iter().find_map(|(net, why)| {
        let n: IpNet = net.parse().expect("valid constant");
        (target.contains(&n.network()) || n.contains(&target.network()))
            .then(|| format!("a network holding {net} ({why})"))
    })
}

/// Whether a ban of `target` fits the nftables sets: an address, or a network of a length
/// the rules ban (IPv4 /24; IPv6 `ipv6_prefix` or /48). Each set's rule masks the source to
/// one length, so each set holds bans of that length only.
pub fn fits(target: &IpNet, ipv6_prefix: u8) -> bool {
    match target {
        IpNet::V4(n) => matches!(n.prefix_len(), 32 | 24),
        IpNet::V6(n) => n.prefix_len() == 48 || n.prefix_len() == ipv6_prefix,
    }
}

/// The address as its own family: an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) is the IPv4
/// address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Why an address may not be banned, when it may not: it is not a global unicast address.
///
/// The documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are
/// accepted: the internet never routes them, so they only reach a log from a test bed or a
/// demonstration, where banning them is the point.
pub fn not_bannable(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_unspecified() || o[0] == 0 {
                Some("an unspecified address (0.0.0.0/8)")
            } else if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_private() {
                Some("a private address (RFC 1918)")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("a carrier-grade NAT address (100.64.0.0/10)")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if v4.is_multicast() {
                Some("a multicast address")
            } else if v4.is_broadcast() || o[0] >= 240 {
                Some("a reserved address (240.0.0.0/4)")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("the unspecified address")
            } else if v6.is_loopback() {
                Some("the loopback address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("a link-local address")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("a unique local address (fc00::/7)")
            } else if (s[0] & 0xe000) != 0x2000 {
                Some("not a global unicast address (2000::/3)")
            } else {
                None
            }
        }
    }
}

/// The host's own addresses (never banned), as host networks.
pub fn own_addresses() -> Vec<IpNet> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list.into_iter().map(|i| IpNet::from(i.ip())).collect(),
        Err(e) => {
            tracing::warn!(
                "response: cannot list this host's addresses ({e}); only [response] ignore protects them"
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_global_unicast_and_documentation_addresses_may_be_banned() {
        for ok in [
            "203.0.113.5",
            "198.51.100.1",
            "8.8.8.8",
            "2001:db8::1",
            "2a00:1450::1",
            "::ffff:203.0.113.9",
        ] {
            assert_eq!(not_bannable(ip(ok)), None, "{ok}");
        }
        for no in [
            "0.0.0.0",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(not_bannable(ip(no)).is_some(), "{no}");
        }
    }

    #[test]
    fn targets_follow_the_key_and_the_ipv6_prefix() {
        let s = ResponseSettings::from_raw(&Default::default());
        let t = |k, a| s.target(k, ip(a)).to_string();
        assert_eq!(t(KeyKind::Ip, "203.0.113.5"), "203.0.113.5/32");
        assert_eq!(t(KeyKind::Net, "203.0.113.5"), "203.0.113.0/24");
        assert_eq!(t(KeyKind::Ip, "2001:db8:1:2:3::4"), "2001:db8:1:2::/64");
        assert_eq!(t(KeyKind::Net, "2001:db8:1:2:3::4"), "2001:db8:1::/48");
        assert_eq!(t(KeyKind::Username, "203.0.113.5"), "203.0.113.5/32");
        assert_eq!(
            parse_net("198.51.100.7/24").unwrap().to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert!(parse_net("example.org").is_none());
        assert_eq!(
            parse_net("::ffff:203.0.113.9").unwrap().to_string(),
            "203.0.113.9/32"
        );
        let n = |s: &str| not_bannable_net(&s.parse().unwrap());
        assert!(n("8.0.0.0/5").unwrap().contains("10.0.0.0/8"));
        assert!(n("2000::/2").is_some());
        assert_eq!(n("2001:db8::/32"), None);
        assert_eq!(n("203.0.113.0/24"), None);
        assert!(fits(&"203.0.113.0/24".parse().unwrap(), 64));
        assert!(!fits(&"203.0.112.0/23".parse().unwrap(), 64));
        assert!(fits(&"2001:db8:1:2::/64".parse().unwrap(), 64));
        assert!(!fits(&"2001:db8:1:2::/56".parse().unwrap(), 64));
    }
}
