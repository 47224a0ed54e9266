//! Reverse DNS of attacker addresses with hickory-resolver, optionally forward-confirmed.
//!
//! Each answer carries a status, so a postmaster can tell "no name" from "the resolver is
//! broken": `ok`, `nxdomain`, `timeout`, `servfail`, `error`, `mismatch` (the PTR name does not
//! resolve back to the address: anyone can publish any PTR for their own addresses, so an
//! unconfirmed name is recorded but flagged) and `disabled`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;

/// The outcome of a reverse lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsStatus {
    /// A name was found (and confirmed, when verification is on).
    Ok,
    /// The address has no reverse name.
    Nxdomain,
    /// No answer within `dns_timeout`.
    Timeout,
    /// The server failed (SERVFAIL).
    Servfail,
    /// Any other failure.
    Error,
    /// The name does not resolve back to the address.
    Mismatch,
    /// Reverse DNS is turned off.
    Disabled,
}

impl DnsStatus {
    /// The word written in the CSV's `dns_status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsStatus::Ok => "ok",
            DnsStatus::Nxdomain => "nxdomain",
            DnsStatus::Timeout => "timeout",
            DnsStatus::Servfail => "servfail",
            DnsStatus::Error => "error",
            DnsStatus::Mismatch => "mismatch",
            DnsStatus::Disabled => "disabled",
        }
    }

    /// The status a `dns_status` column's word names.
    pub fn parse(word: &str) -> Option<DnsStatus> {
        Some(match word {
            "ok" => DnsStatus::Ok,
            "nxdomain" => DnsStatus::Nxdomain,
            "timeout" => DnsStatus::Timeout,
            "servfail" => DnsStatus::Servfail,
            "error" => DnsStatus::Error,
            "mismatch" => DnsStatus::Mismatch,
            "disabled" => DnsStatus::Disabled,
            _ => return None,
        })
    }

    /// Whether the answer is a definite one worth caching for the full TTL.
    pub fn is_positive(self) -> bool {
        matches!(self, DnsStatus::Ok | DnsStatus::Mismatch)
    }
}

impl fmt::Display for DnsStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reverse lookup's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The PTR name, without its final dot (kept also when it does not confirm).
    pub name: Option<String>,
    /// How the lookup went.
    pub status: DnsStatus,
}

/// Reverse DNS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Servers to ask; empty: the system's resolv.conf.
    pub servers: Vec<SocketAddr>,
    /// Per-query timeout.
    pub timeout: Duration,
    /// Check that the PTR name resolves back to the address.
    pub verify: bool,
}

/// Why the resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the DNS resolver: {0}")]
pub struct DnsSetupError(String);

/// The reverse resolver.
pub struct ReverseDns {
    resolver: TokioResolver,
    settings: DnsSettings,
}

impl ReverseDns {
    /// A resolver per `settings`. Its own cache is off: answers are cached by the enricher
    /// (one place, with the configured size and TTLs).
    pub fn new(settings: DnsSettings) -> Result<Self, DnsSetupError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if settings.servers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| DnsSetupError(format!("reading resolv.conf: {e}")))?
        } else {
            let servers = settings
                .servers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let opts = builder.options_mut();
        opts.timeout = settings.timeout;
        opts.attempts = 1;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        let resolver = builder.build().map_err(|e| DnsSetupError(e.to_string()))?;
        Ok(ReverseDns { resolver, settings })
    }

    /// The settings in use.
    pub fn settings(&self) -> &DnsSettings {
        &self.settings
    }

    /// Looks `ip` up, never taking longer than about twice the timeout (PTR, then the
    /// forward check). Servers that stop answering are said once (and again when they answer
    /// again), not at every address.
    pub async fn lookup(&self, ip: IpAddr) -> DnsAnswer {
        let answer = self.lookup_once(ip).await;
        // Only silence says the servers are down: SERVFAIL and the like are one zone's (broken
        // reverse delegations are common where attacks come from), and say nothing of them.
        match answer.status {
            DnsStatus::Timeout => {
                if crate::ratelimit::problem(DNS_PROBLEM) {
                    tracing::warn!(
                        "reverse DNS: the servers do not answer (timeout); addresses are recorded without their names until they do (check [enrich] dns_servers)"
                    );
                }
            }
            DnsStatus::Ok | DnsStatus::Nxdomain | DnsStatus::Mismatch => {
                if crate::ratelimit::resolved(DNS_PROBLEM) {
                    tracing::info!("resolved: the DNS servers answer again");
                }
            }
            DnsStatus::Servfail | DnsStatus::Error | DnsStatus::Disabled => {}
        }
        answer
    }

    async fn lookup_once(&self, ip: IpAddr) -> DnsAnswer {
        let limit = self.settings.timeout + Duration::from_millis(100);
        let ptr = match tokio::time::timeout(limit, self.resolver.reverse_lookup(ip)).await {
            Err(_) => {
                return DnsAnswer {
                    name: None,
                    status: DnsStatus::Timeout,
                };
            }
            Ok(Err(e)) => {
                return DnsAnswer {
                    name: None,
                    status: classify(&e),
                };
            }
            Ok(Ok(lookup)) => lookup,
        };
        let name = ptr.answers().iter().find_map(|r| match &r.data {
            RData::PTR(name) => Some(name.to_string()),
            _ => None,
        });
        let Some(name) = name else {
            return DnsAnswer {
                name: None,
                status: DnsStatus::Nxdomain,
            };
        };
        let shown = name.strip_suffix('.').unwrap_or(&name).to_string();
        if !self.settings.verify {
            return DnsAnswer {
                name: Some(shown),
                status: DnsStatus::Ok,
            };
        }
        let status = match tokio::time::timeout(limit, self.resolver.lookup_ip(name.as_str())).await
        {
            Ok(Ok(addrs)) if addrs.iter().any(|a| a.to_canonical() == ip) => DnsStatus::Ok,
            Ok(Ok(_)) => DnsStatus::Mismatch,
            Ok(Err(e)) if matches!(classify(&e), DnsStatus::Nxdomain) => DnsStatus::Mismatch,
            Ok(Err(e)) => classify(&e),
            Err(_) => DnsStatus::Timeout,
        };
        DnsAnswer {
            name: Some(shown),
            status,
        }
    }
}

/// The problem "the DNS servers do not answer" (see [`crate::ratelimit::problem`]).
const DNS_PROBLEM: &str = "reverse DNS";

fn classify(e: &NetError) -> DnsStatus {
    match e {
        NetError::Timeout => DnsStatus::Timeout,
        NetError::Dns(DnsError::NoRecordsFound(_)) => DnsStatus::Nxdomain,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => DnsStatus::Servfail,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::NXDomain)) => DnsStatus::Nxdomain,
        other => {
            let text = other.to_string().to_ascii_lowercase();
            if text.contains("timed out") || text.contains("timeout") {
                DnsStatus::Timeout
            } else if text.contains("servfail") || text.contains("server failure") {
                DnsStatus::Servfail
            } else {
                DnsStatus::Error
            }
        }
    }
}
