//! Bans in nftables: `table inet maillogsentinel`.
//!
//! Four sets with `flags timeout`, so the kernel lifts each ban when it ends (also while the
//! daemon is stopped, or gone): `addr4` (IPv4 addresses), `net4` (IPv4 /24 networks), `addr6`
//! (IPv6 addresses by `ipv6_prefix`) and `net6` (IPv6 /48 networks). A network is held as its
//! first address, and the set's rule masks the packet's source before the lookup (`ip saddr &
//! 255.255.255.0 @net4`): every element is one key, never an interval. That keeps a ban one
//! element on the wire ([`super::nfnl`] adds it over netlink, without starting a program), and
//! an address ban inside a network ban is two elements of two sets, never an overlap. One chain
//! on the input hook drops every packet from a set's members to the configured ports (new
//! connections, and the session an attacker is brute-forcing in).
//!
//! Setting the table up (at start) and reading the sets back (`nft -j`, the JSON nftables keeps
//! stable for programs) go through the `nft` program; bans and unbans through netlink. Why: see
//! docs/architecture.md ("The responder"). A table of the first layout (interval sets, in
//! builds before bans went over netlink) is replaced at start in the same transaction that
//! creates the new one; the running bans are then put back from the record.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ipnet::IpNet;

use super::nfnl::Element;

/// Our table's name (family `inet`).
pub const TABLE: &str = "maillogsentinel";

/// Our sets: IPv4 addresses, IPv4 /24 networks, IPv6 addresses (by `ipv6_prefix`), IPv6 /48.
pub const SETS: [&str; 4] = ["addr4", "net4", "addr6", "net6"];

/// An element of one of our sets, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its set.
    pub set: &'static str,
    /// Its key, what [`Nft::apply`] removes it by.
    pub key: IpAddr,
    /// The ban it holds: the network of the set's length starting at the key; `None` when the
    /// key does not start one (an element nobody could have recorded).
    pub held: Option<IpNet>,
    /// Its time left.
    pub left: Duration,
}

/// Why nftables could not be changed or read.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The program could not be run.
    #[error(
        "cannot run {program}: {source} (install the nftables package, or set [response] nftables = false)"
    )]
    Spawn {
        /// The program.
        program: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The process may not change the firewall.
    #[error(
        "nft: {message}: the daemon lacks CAP_NET_ADMIN. Install the drop-in that grants it (mkdir -p /etc/systemd/system/maillogsentinel.service.d && cp /usr/share/maillogsentinel/response.conf /etc/systemd/system/maillogsentinel.service.d/ && systemctl daemon-reload && systemctl restart maillogsentinel), run it as root, or set [response] mode = \"log\" to only log decisions"
    )]
    NotPermitted {
        /// What nft said.
        message: String,
    },
    /// nftables refused the change.
    #[error("nftables refused the change: {message}")]
    Failed {
        /// What nft or the kernel said.
        message: String,
    },
    /// An element to remove, a set or the table is not there (the kernel's ENOENT).
    #[error("nftables: {message}")]
    Missing {
        /// What the kernel said.
        message: String,
    },
    /// nft's answer could not be read.
    #[error("cannot read nft's listing: {0}")]
    Listing(String),
}

/// The `nft` program and our table.
#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
    ipv6_prefix: u8,
}

impl Nft {
    /// `nft` from the PATH; IPv6 address bans are by `ipv6_prefix`.
    pub fn new(ipv6_prefix: u8) -> Self {
        Nft {
            program: PathBuf::from("nft"),
            ipv6_prefix,
        }
    }

    /// The set a ban of `target` goes in.
    pub fn set_of(&self, target: &IpNet) -> &'static str {
        match target {
            IpNet::V4(n) if n.prefix_len() == 32 => "addr4",
            IpNet::V4(_) => "net4",
            IpNet::V6(n) if n.prefix_len() == 48 && self.ipv6_prefix != 48 => "net6",
            IpNet::V6(_) => "addr6",
        }
    }

    /// The prefix length of the elements of `set`.
    fn length_of(&self, set: &str) -> u8 {
        match set {
            "addr4" => 32,
            "net4" => 24,
            "net6" => 48,
            _ => self.ipv6_prefix,
        }
    }

    /// Whether a ban of `target` can be held as it is: a network of its set's length (an IPv6
    /// ban recorded under another `ipv6_prefix` cannot, and is neither widened nor narrowed).
    pub fn holds(&self, target: &IpNet) -> bool {
        target.prefix_len() == self.length_of(self.set_of(target))
    }

    /// The IPv6 mask of `addr6`'s rule.
    fn mask6(len: u8) -> std::net::Ipv6Addr {
        ipnet::Ipv6Net::new(std::net::Ipv6Addr::UNSPECIFIED, len.min(128))
            .map(|n| n.netmask())
            .unwrap_or(std::net::Ipv6Addr::from(u128::MAX))
    }

    /// Creates the table, its sets, chain and rules, or brings the rules up to date (ports,
    /// `ipv6_prefix`); the sets keep their elements. One transaction. A table of the first
    /// layout (interval sets) is deleted in that transaction and created anew, empty: the
    /// caller puts the running bans back.
    pub fn setup(&self, ports: &[u16]) -> Result<(), NftError> {
        let ports = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = String::new();
        if self.first_layout() {
            tracing::info!(
                "response: table inet {TABLE} has the first layout (interval sets); replacing it, the running bans are put back"
            );
            s.push_str(&format!("delete table inet {TABLE}\n"));
        }
        s.push_str(&format!("add table inet {TABLE}\n"));
        for (set, ty) in [
            ("addr4", "ipv4_addr"),
            ("net4", "ipv4_addr"),
            ("addr6", "ipv6_addr"),
            ("net6", "ipv6_addr"),
        ] {
            s.push_str(&format!(
                "add set inet {TABLE} {set} {{ type {ty}; flags timeout; }}\n"
            ));
        }
        s.push_str(&format!(
            "add chain inet {TABLE} input {{ type filter hook input priority -10; policy accept; }}\n\
             flush chain inet {TABLE} input\n"
        ));
        let masks = [
            ("ip", "addr4", String::new()),
            ("ip", "net4", " & 255.255.255.0".to_string()),
            (
                "ip6",
                "addr6",
                if self.ipv6_prefix >= 128 {
                    String::new()
                } else {
                    format!(" & {}", Self::mask6(self.ipv6_prefix))
                },
            ),
            ("ip6", "net6", format!(" & {}", Self::mask6(48))),
        ];
        for (family, set, mask) in masks {
            s.push_str(&format!(
                "add rule inet {TABLE} input {family} saddr{mask} @{set} tcp dport {{ {ports} }} counter drop\n"
            ));
        }
        self.run(&s)
    }

    /// Whether our table exists with the first layout's interval sets.
    fn first_layout(&self) -> bool {
        self.output(&["-j", "list", "set", "inet", TABLE, "net4"])
            .ok()
            .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
            .is_some_and(|v| {
                v["nftables"].as_array().is_some_and(|items| {
                    items.iter().any(|i| {
                        i["set"]["flags"]
                            .as_array()
                            .is_some_and(|f| f.iter().any(|f| f == "interval"))
                    })
                })
            })
    }

    /// Adds `add` (each with its time left; each one the sets [`Nft::holds`]) and removes
    /// `delete` (each by the set and key [`Nft::list`] found it under), over netlink: one
    /// transaction per 64 KiB of messages (about 2,000 IPv4 bans), in order. Elements to
    /// remove must be there (the kernel refuses the whole batch otherwise): take them from a
    /// fresh [`Nft::list`], or use [`Nft::remove`].
    pub fn apply(
        &self,
        add: &[(IpNet, Duration)],
        delete: &[(&'static str, IpAddr)],
    ) -> Result<(), NftError> {
        let delete: Vec<Element> = delete
            .iter()
            .map(|(set, key)| Element {
                set,
                key: *key,
                timeout: None,
            })
            .collect();
        let add: Vec<Element> = add
            .iter()
            .map(|(t, d)| {
                debug_assert!(self.holds(t), "{t} is not held by the sets");
                Element {
                    set: self.set_of(t),
                    key: t.network(),
                    timeout: Some((*d).max(Duration::from_secs(1))),
                }
            })
            .collect();
        super::nfnl::transact(TABLE, &delete, &add)
    }

    /// Removes elements: all at once, or, when the kernel refuses that, one at a time, an
    /// element already gone (expired since the listing) counting as removed. Returns those that
    /// could not be removed (their index in `delete`) and why.
    pub fn remove(&self, delete: &[(&'static str, IpAddr)]) -> Vec<(usize, NftError)> {
        remove_with(delete, |d| self.apply(&[], d))
    }

    /// Whether nftables can be read and changed here: by `nft` (`nft list tables` needs the
    /// same capability as a change) and by this process over netlink (an empty batch).
    pub fn probe(&self) -> Result<(), NftError> {
        self.output(&["list", "tables"])?;
        super::nfnl::probe()
    }

    /// Every element of our sets: its set, its key, the ban it holds and its time left.
    pub fn list(&self) -> Result<Vec<Listed>, NftError> {
        let mut out = Vec::new();
        for set in SETS {
            let json = self.output(&["-j", "list", "set", "inet", TABLE, set])?;
            let len = self.length_of(set);
            out.extend(parse_listing(&json)?.into_iter().map(|(t, left)| {
                // A network is held as its first address: the network of the set's length
                // starting at the key is the ban, if the key does start one (a key put there by
                // hand, or under another `ipv6_prefix`, may not).
                let held = if t.prefix_len() == t.max_prefix_len() {
                    IpNet::new(t.network(), len)
                        .ok()
                        .map(|n| n.trunc())
                        .filter(|n| n.network() == t.network())
                } else {
                    Some(t).filter(|t| t.prefix_len() == len)
                };
                Listed {
                    set,
                    key: t.network(),
                    held,
                    left,
                }
            }));
        }
        Ok(out)
    }

    /// How a ban of `t` is written in a set (a host without its prefix length).
    pub fn element(&self, t: &IpNet) -> String {
        match t {
            IpNet::V4(n) if n.prefix_len() == 32 => n.addr().to_string(),
            IpNet::V6(n) if n.prefix_len() == 128 => n.addr().to_string(),
            t => t.to_string(),
        }
    }

    fn run(&self, script: &str) -> Result<(), NftError> {
        let mut child = Command::new(&self.program)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| self.spawn_error(source))?;
        let mut stdin = child.stdin.take().expect("piped");
        let written = stdin.write_all(script.as_bytes());
        drop(stdin);
        let out = child
            .wait_with_output()
            .map_err(|source| self.spawn_error(source))?;
        if out.status.success() {
            return Ok(());
        }
        written.map_err(|source| self.spawn_error(source))?;
        Err(failure(&out.stderr))
    }

    fn output(&self, args: &[&str]) -> Result<String, NftError> {
        let out = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| self.spawn_error(source))?;
        if !out.status.success() {
            return Err(failure(&out.stderr));
        }
        String::from_utf8(out.stdout).map_err(|e| NftError::Listing(e.to_string()))
    }

    fn spawn_error(&self, source: std::io::Error) -> NftError {
        NftError::Spawn {
            program: self.program.display().to_string(),
            source,
        }
    }
}

/// [`Nft::remove`]'s way, with the deleting call given: all at once, else one at a time, an
/// element already gone counting as removed.
fn remove_with<T>(
    delete: &[T],
    apply: impl Fn(&[T]) -> Result<(), NftError>,
) -> Vec<(usize, NftError)> {
    if delete.is_empty() || apply(delete).is_ok() {
        return Vec::new();
    }
    delete
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match apply(std::slice::from_ref(d)) {
            Ok(()) | Err(NftError::Missing { .. }) => None,
            Err(e) => Some((i, e)),
        })
        .collect()
}

/// nft's complaint as an error (the first lines; "Operation not permitted" is a missing
/// capability).
fn failure(stderr: &[u8]) -> NftError {
    let text = String::from_utf8_lossy(stderr);
    let message: String = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" / ");
    if text.contains("Operation not permitted") {
        NftError::NotPermitted { message }
    } else {
        NftError::Failed { message }
    }
}

/// The elements of one `nft -j list set` answer, with their time left.
pub fn parse_listing(json: &str) -> Result<Vec<(IpNet, Duration)>, NftError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| NftError::Listing(e.to_string()))?;
    let mut out = Vec::new();
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    for item in items {
        let Some(elems) = item["set"]["elem"].as_array() else {
            continue;
        };
        for e in elems {
            // With a timeout, each is {"elem": {"val": ..., "expires": s}}; without, a value.
            let (val, expires) = match e.get("elem") {
                Some(inner) => (&inner["val"], inner["expires"].as_f64().unwrap_or(0.0)),
                None => (e, 0.0),
            };
            let net = match val {
                serde_json::Value::String(s) => s.parse::<IpAddr>().ok().map(IpNet::from),
                v => v["prefix"]["addr"]
                    .as_str()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .zip(v["prefix"]["len"].as_u64())
                    .and_then(|(a, l)| IpNet::new(a, l as u8).ok()),
            };
            if let Some(net) = net {
                out.push((net, Duration::from_secs_f64(expires.max(0.0))));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_of_addresses_and_prefixes_are_read() {
        let a = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "addr4", "table": "maillogsentinel", "type": "ipv4_addr", "handle": 1, "flags": ["timeout"], "elem": [{"elem": {"val": "203.0.113.5", "timeout": 3600, "expires": 3599}}, {"elem": {"val": "203.0.113.6", "timeout": 10, "expires": 9}}]}}]}"#;
        let got = parse_listing(a).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.to_string(), "203.0.113.5/32");
        assert_eq!(got[0].1, Duration::from_secs(3599));
        let n = r#"{"nftables": [{"set": {"name": "net4", "elem": [{"elem": {"val": {"prefix": {"addr": "198.51.100.0", "len": 24}}, "timeout": 3600, "expires": 3599}}]}}]}"#;
        assert_eq!(
            parse_listing(n).unwrap()[0].0.to_string(),
            "198.51.100.0/24"
        );
        // An empty set has no "elem".
        let e = r#"{"nftables": [{"set": {"name": "net6"}}]}"#;
        assert!(parse_listing(e).unwrap().is_empty());
        assert!(parse_listing("not json").is_err());
    }

    #[test]
    fn each_prefix_length_has_its_set() {
        let nft = Nft::new(64);
        let set = |s: &str| nft.set_of(&s.parse().unwrap());
        assert_eq!(set("203.0.113.5/32"), "addr4");
        assert_eq!(set("203.0.113.0/24"), "net4");
        assert_eq!(set("2001:db8:1:2::/64"), "addr6");
        assert_eq!(set("2001:db8:1::/48"), "net6");
        assert_eq!(
            Nft::new(48).set_of(&"2001:db8:1::/48".parse().unwrap()),
            "addr6"
        );
        assert_eq!(
            nft.element(&"203.0.113.5/32".parse().unwrap()),
            "203.0.113.5"
        );
        assert_eq!(
            nft.element(&"2001:db8:1::/48".parse().unwrap()),
            "2001:db8:1::/48"
        );
    }

    /// A batch the kernel refuses is tried element by element: an element already gone is
    /// removed as far as anyone can tell, one refused for another reason is said, by its index.
    #[test]
    fn a_refused_removal_is_tried_element_by_element() {
        let gone = |m: &str| NftError::Missing { message: m.into() };
        let tried = std::cell::RefCell::new(Vec::new());
        let apply = |d: &[u8]| {
            tried.borrow_mut().push(d.to_vec());
            if d.len() > 1 {
                Err(gone("batch"))
            } else if d[0] == 2 {
                Err(gone("expired since the listing"))
            } else if d[0] == 3 {
                Err(NftError::Failed {
                    message: "refused".into(),
                })
            } else {
                Ok(())
            }
        };
        let left = remove_with(&[1u8, 2, 3, 4], apply);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, 2);
        assert_eq!(
            *tried.borrow(),
            vec![vec![1, 2, 3, 4], vec![1], vec![2], vec![3], vec![4]]
        );
        // Nothing to remove: nothing is sent.
        tried.borrow_mut().clear();
        assert!(remove_with(&[], apply).is_empty());
        assert!(tried.borrow().is_empty());
        // A batch that goes through is not tried again.
        assert!(remove_with(&[1u8], apply).is_empty());
        assert_eq!(tried.borrow().len(), 1);
    }

    #[test]
    fn a_missing_capability_is_told_apart() {
        assert!(matches!(
            failure(b"Error: Could not process rule: Operation not permitted\n"),
            NftError::NotPermitted { .. }
        ));
        assert!(matches!(
            failure(b"Error: syntax error\n"),
            NftError::Failed { .. }
        ));
    }
}
