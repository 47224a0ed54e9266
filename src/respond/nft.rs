//! Bans in nftables: `table inet maillogsentinel`, through the `nft` program.
//!
//! Four sets with `flags timeout`, so the kernel lifts each ban when it ends (also while the
//! daemon is stopped, or gone): `addr4` (IPv4 addresses), `net4` (IPv4 /24 networks), `addr6`
//! (IPv6 addresses by `ipv6_prefix`) and `net6` (IPv6 /48 networks). One set per prefix length,
//! because elements of an interval set may not overlap: an address ban inside a network ban is
//! then two elements of two sets, never a conflict. One chain on the input hook drops every
//! packet from a set's members to the configured ports (new connections, and the session an
//! attacker is brute-forcing in).
//!
//! Why the `nft` program and not netlink from Rust: see docs/architecture.md ("The
//! responder"). In short, each batch of bans is one `nft -f -` transaction (all applied or
//! none), built only from typed addresses (no attacker text reaches it), and the sets are read
//! back as JSON (`nft -j`), the interface nftables keeps stable for programs.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ipnet::IpNet;

/// Our table's name (family `inet`).
pub const TABLE: &str = "maillogsentinel";

/// Our sets: IPv4 addresses, IPv4 /24 networks, IPv6 addresses (by `ipv6_prefix`), IPv6 /48.
pub const SETS: [&str; 4] = ["addr4", "net4", "addr6", "net6"];

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
    /// nft refused the commands.
    #[error("nft refused the change: {message}")]
    Failed {
        /// What nft said.
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

    /// Creates the table, its sets, chain and rules, or brings the rules up to date (ports);
    /// the sets keep their elements. One transaction.
    pub fn setup(&self, ports: &[u16]) -> Result<(), NftError> {
        let ports = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = format!("add table inet {TABLE}\n");
        for (set, ty, interval) in [
            ("addr4", "ipv4_addr", false),
            ("net4", "ipv4_addr", true),
            ("addr6", "ipv6_addr", true),
            ("net6", "ipv6_addr", true),
        ] {
            let flags = if interval {
                "interval, timeout"
            } else {
                "timeout"
            };
            s.push_str(&format!(
                "add set inet {TABLE} {set} {{ type {ty}; flags {flags}; }}\n"
            ));
        }
        s.push_str(&format!(
            "add chain inet {TABLE} input {{ type filter hook input priority -10; policy accept; }}\n\
             flush chain inet {TABLE} input\n"
        ));
        for (family, set) in [
            ("ip", "addr4"),
            ("ip", "net4"),
            ("ip6", "addr6"),
            ("ip6", "net6"),
        ] {
            s.push_str(&format!(
                "add rule inet {TABLE} input {family} saddr @{set} tcp dport {{ {ports} }} counter drop\n"
            ));
        }
        self.run(&s)
    }

    /// Adds `add` (each with its time left) and removes `delete` (each from the set
    /// [`Nft::list`] found it in), in one transaction. Elements to remove must be there (nft
    /// refuses the whole change otherwise): take them from a fresh [`Nft::list`].
    pub fn apply(
        &self,
        add: &[(IpNet, Duration)],
        delete: &[(&'static str, IpNet)],
    ) -> Result<(), NftError> {
        if add.is_empty() && delete.is_empty() {
            return Ok(());
        }
        let mut s = String::with_capacity(64 + 48 * (add.len() + delete.len()));
        for set in SETS {
            let dels: Vec<String> = delete
                .iter()
                .filter(|(s, _)| *s == set)
                .map(|(_, t)| self.element(t))
                .collect();
            if !dels.is_empty() {
                s.push_str(&format!(
                    "delete element inet {TABLE} {set} {{ {} }}\n",
                    dels.join(", ")
                ));
            }
            let adds: Vec<String> = add
                .iter()
                .filter(|(t, _)| self.set_of(t) == set)
                .map(|(t, d)| format!("{} timeout {}s", self.element(t), d.as_secs().max(1)))
                .collect();
            if !adds.is_empty() {
                s.push_str(&format!(
                    "add element inet {TABLE} {set} {{ {} }}\n",
                    adds.join(", ")
                ));
            }
        }
        self.run(&s)
    }

    /// Whether nftables can be read and changed here (`nft list tables` needs the same
    /// capability as a change).
    pub fn probe(&self) -> Result<(), NftError> {
        self.output(&["list", "tables"]).map(drop)
    }

    /// Every element of our sets: its set, and its time left.
    pub fn list(&self) -> Result<Vec<(&'static str, IpNet, Duration)>, NftError> {
        let mut out = Vec::new();
        for set in SETS {
            let json = self.output(&["-j", "list", "set", "inet", TABLE, set])?;
            out.extend(parse_listing(&json)?.into_iter().map(|(t, d)| (set, t, d)));
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
