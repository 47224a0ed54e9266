//! A real DNS server on loopback for the enrichment tests: it speaks the DNS wire protocol over
//! UDP (messages built with hickory-proto, the protocol crate of the hickory DNS server) and
//! answers PTR, A and AAAA queries from a table, with NXDOMAIN for unknown names, SERVFAIL or
//! silence for chosen addresses, and an optional delay on every answer.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// What the server answers.
#[derive(Default, Clone)]
pub struct Zone {
    ptr: HashMap<String, String>,
    forward: HashMap<String, Vec<IpAddr>>,
    servfail: HashSet<String>,
    silent: HashSet<String>,
    /// Every answer waits this long.
    pub delay: Duration,
}

fn reverse_name(ip: IpAddr) -> String {
    Name::from(ip).to_string().to_ascii_lowercase()
}

fn fqdn(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

impl Zone {
    /// `ip` has PTR `name`, and `name` resolves back to `ip` (forward-confirmed).
    pub fn host(mut self, ip: &str, name: &str) -> Self {
        let ip: IpAddr = ip.parse().unwrap();
        self.ptr.insert(reverse_name(ip), fqdn(name));
        self.forward.entry(fqdn(name)).or_default().push(ip);
        self
    }

    /// `ip` has PTR `name`, but `name` does not resolve to it.
    pub fn liar(mut self, ip: &str, name: &str, resolves_to: Option<&str>) -> Self {
        let ip: IpAddr = ip.parse().unwrap();
        self.ptr.insert(reverse_name(ip), fqdn(name));
        if let Some(other) = resolves_to {
            self.forward
                .entry(fqdn(name))
                .or_default()
                .push(other.parse().unwrap());
        }
        self
    }

    /// Every answer waits `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Queries about `ip` get SERVFAIL.
    pub fn servfail(mut self, ip: &str) -> Self {
        self.servfail.insert(reverse_name(ip.parse().unwrap()));
        self
    }

    /// Queries about `ip` are never answered.
    pub fn silent(mut self, ip: &str) -> Self {
        self.silent.insert(reverse_name(ip.parse().unwrap()));
        self
    }

    fn answer(&self, request: &Message) -> Option<Message> {
        let query = request.queries.first()?;
        let name = query.name.to_string().to_ascii_lowercase();
        if self.silent.contains(&name) {
            return None;
        }
        let id = request.metadata.id;
        let op = request.metadata.op_code;
        if self.servfail.contains(&name) {
            let mut m = Message::error_msg(id, op, ResponseCode::ServFail);
            m.add_query(query.clone());
            return Some(m);
        }
        let mut m = Message::response(id, op);
        m.metadata.authoritative = true;
        m.metadata.recursion_desired = request.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.add_query(query.clone());
        let qname = query.name.clone();
        let mut found_name = false;
        match query.query_type {
            RecordType::PTR => {
                if let Some(target) = self.ptr.get(&name) {
                    found_name = true;
                    m.add_answer(Record::from_rdata(
                        qname,
                        300,
                        RData::PTR(PTR(target.parse().unwrap())),
                    ));
                }
            }
            RecordType::A | RecordType::AAAA => {
                if let Some(addrs) = self.forward.get(&name) {
                    found_name = true;
                    for a in addrs {
                        match (a, query.query_type) {
                            (IpAddr::V4(v4), RecordType::A) => {
                                m.add_answer(Record::from_rdata(
                                    qname.clone(),
                                    300,
                                    RData::A(A(*v4)),
                                ));
                            }
                            (IpAddr::V6(v6), RecordType::AAAA) => {
                                m.add_answer(Record::from_rdata(
                                    qname.clone(),
                                    300,
                                    RData::AAAA(AAAA(*v6)),
                                ));
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
        if !found_name {
            m.metadata.response_code = ResponseCode::NXDomain;
        }
        Some(m)
    }
}

/// A running server; stops when dropped.
pub struct DnsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Queries received.
    pub queries: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Starts a server on 127.0.0.1 (a free port) answering from `zone`.
    pub fn start(zone: Zone) -> DnsServer {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let queries = Arc::new(AtomicU64::new(0));
        let counter = queries.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
                addr_tx.send(socket.local_addr().unwrap()).unwrap();
                let zone = Arc::new(zone);
                let mut buf = vec![0u8; 4096];
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        r = socket.recv_from(&mut buf) => {
                            let Ok((n, peer)) = r else { continue };
                            counter.fetch_add(1, Ordering::Relaxed);
                            let Ok(request) = Message::from_vec(&buf[..n]) else { continue };
                            let (zone, socket) = (zone.clone(), socket.clone());
                            tokio::spawn(async move {
                                if let Some(answer) = zone.answer(&request) {
                                    if !zone.delay.is_zero() {
                                        tokio::time::sleep(zone.delay).await;
                                    }
                                    let _ = socket.send_to(&answer.to_vec().unwrap(), peer).await;
                                }
                            });
                        }
                    }
                }
            });
        });
        let addr = addr_rx.recv().unwrap();
        DnsServer {
            addr,
            queries,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
