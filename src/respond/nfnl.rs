//! Set elements through netlink: the bans' hot path, without starting a program.
//!
//! A ban is an element added to one of our sets; starting `nft` for it cost 2-3 ms of the 6 ms
//! from a log line to the kernel (docs/benchmarks.md, "The responder"). Here the daemon talks to
//! nf_tables itself: one `NETLINK_NETFILTER` socket per change, and batches (`BATCH_BEGIN`, the
//! element messages, `BATCH_END`), each of which the kernel applies as one transaction, all or
//! nothing. A change of up to 64 KiB of messages (about 2,000 IPv4 bans) is one batch; a larger
//! one is several, applied in order, and an error says which were not.
//! The messages are built by `netlink-packet-netfilter` (rust-netlink, MIT), the same family of
//! crates as `rtnetlink`; this module only says which table, set, keys and timeouts.
//!
//! Only what is simple on the wire is done here: elements of sets without the `interval` flag
//! (one key each; see `nft.rs` for why our sets have none). Creating the table, its sets and
//! rules, and reading the sets back, stay with the `nft` program: they happen at start, where
//! its stable syntax and JSON are worth the milliseconds.
//!
//! The kernel handles a batch inside the `send` call and queues one answer per message that asks
//! for one (`NLM_F_ACK`) before `send` returns, so the answers are read without waiting
//! (non-blocking, until the socket is empty): a change never hangs on the kernel.

use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    ErrorBuffer, ErrorMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NLMSG_ERROR, NetlinkBuffer,
    NetlinkMessage, Parseable,
};
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList,
    SetElementMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::nft::NftError;

/// nf_tables' subsystem number, the `res_id` of a batch's begin and end.
const NFNL_SUBSYS_NFTABLES: u16 = 10;

/// Elements per message. All of a message's elements are one attribute, whose length is 16
/// bits: an IPv6 addition takes 40 bytes (nest 4, timeout 12, key 24), so 1,638 would be the
/// most; 1,000 keeps it at 40,000 bytes.
const ELEMENTS_PER_MESSAGE: usize = 1_000;

/// The most an attribute's 16-bit length field can say, less its own header.
const ATTRIBUTE_VALUE_MAX: usize = u16::MAX as usize - 4;

/// Bytes per batch. The kernel refuses a `send` larger than the socket's send buffer
/// (`net.core.wmem_default`: 208 KiB on Debian, and rarely lowered below 64 KiB); a larger
/// change is several batches, each one transaction.
const BATCH_BYTES: usize = 64 * 1024;

/// One element to add (with its time left) or delete: the set and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// One of our sets.
    pub set: &'static str,
    /// The key (written in network order, 4 or 16 bytes).
    pub key: IpAddr,
    /// For an addition, how long the element stays (the kernel removes it then).
    pub timeout: Option<Duration>,
}

/// Deletes `delete` and adds `add` in `table` (family `inet`): one transaction per 64 KiB of
/// messages, in order, deletions first. Nothing is sent for nothing.
pub fn transact(table: &str, delete: &[Element], add: &[Element]) -> Result<(), NftError> {
    let messages = messages(table, delete, add);
    if messages.is_empty() {
        return Ok(());
    }
    let socket = open()?;
    let mut seq = first_sequence();
    let mut begin = seq;
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    let mut asked: Vec<u32> = Vec::new();
    for m in messages {
        if !asked.is_empty() && batch.len() + m.buffer_len() + 64 > BATCH_BYTES {
            seq = send_batch(&socket, &mut batch, &mut asked, seq, begin)?;
        }
        if asked.is_empty() {
            begin = seq;
            seq = begin_batch(&mut batch, seq);
        }
        emit(&mut batch, m, seq, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
        asked.push(seq);
        seq = seq.wrapping_add(1);
    }
    send_batch(&socket, &mut batch, &mut asked, seq, begin)?;
    Ok(())
}

/// Whether this process may change nf_tables: an empty batch, which the kernel refuses at once
/// without CAP_NET_ADMIN (the capability is the daemon's own, not only `nft`'s).
pub fn probe() -> Result<(), NftError> {
    let socket = open()?;
    let begin = first_sequence();
    let mut batch = Vec::with_capacity(64);
    let seq = begin_batch(&mut batch, begin);
    send_batch(&socket, &mut batch, &mut Vec::new(), seq, begin).map(drop)
}

/// The element messages: per set, its deletions then its additions, at most
/// [`ELEMENTS_PER_MESSAGE`] elements each.
fn messages(
    table: &str,
    delete: &[Element],
    add: &[Element],
) -> Vec<NetlinkMessage<NetfilterMessage>> {
    let mut out = Vec::new();
    for (elements, adding) in [(delete, false), (add, true)] {
        let mut sets: Vec<&'static str> = elements.iter().map(|e| e.set).collect();
        sets.sort_unstable();
        sets.dedup();
        for set in sets {
            let of_set: Vec<&Element> = elements.iter().filter(|e| e.set == set).collect();
            for chunk in of_set.chunks(ELEMENTS_PER_MESSAGE) {
                let list = chunk
                    .iter()
                    .map(|e| {
                        let mut attrs = Vec::with_capacity(2);
                        if let Some(t) = e.timeout.filter(|_| adding) {
                            // Milliseconds; at least one, since 0 means "never expires".
                            attrs.push(SetElementAttribute::Timeout((t.as_millis() as u64).max(1)));
                        }
                        let key = match e.key {
                            IpAddr::V4(a) => a.octets().to_vec(),
                            IpAddr::V6(a) => a.octets().to_vec(),
                        };
                        attrs.push(SetElementAttribute::Key(DataAttribute::Value(key)));
                        ListAttribute::Element(attrs)
                    })
                    .collect();
                let elements = SetElementList::Elements(list);
                debug_assert!(
                    netlink_packet_core::Nla::value_len(&elements) <= ATTRIBUTE_VALUE_MAX,
                    "a message's elements overflow their attribute's length"
                );
                let body = SetElementMessage {
                    attributes: vec![
                        SetElementList::Table(table.to_string()),
                        SetElementList::Set(set.to_string()),
                        elements,
                    ],
                };
                let inner = if adding {
                    NfTablesMessage::NewSetElement(body)
                } else {
                    NfTablesMessage::DeleteSetElement(body)
                };
                out.push(NetlinkMessage::from(NetfilterMessage::new(
                    NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
                    inner,
                )));
            }
        }
    }
    out
}

/// Opens a batch in `buf` with sequence number `seq`; returns the next one.
fn begin_batch(buf: &mut Vec<u8>, seq: u32) -> u32 {
    emit(buf, control(ControlMessage::BatchBegin), seq, NLM_F_REQUEST);
    seq.wrapping_add(1)
}

fn control(m: ControlMessage) -> NetlinkMessage<NetfilterMessage> {
    NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
        m,
    ))
}

fn emit(buf: &mut Vec<u8>, mut m: NetlinkMessage<NetfilterMessage>, seq: u32, flags: u16) {
    m.header.flags = flags;
    m.header.sequence_number = seq;
    m.finalize();
    let at = buf.len();
    buf.resize(at + m.buffer_len(), 0);
    m.serialize(&mut buf[at..]);
}

/// A socket to nf_tables, answers capped (an error does not echo the whole message back) and
/// read without blocking.
fn open() -> Result<Socket, NftError> {
    let io = |e: std::io::Error| NftError::Failed {
        message: format!("netlink socket: {e}"),
    };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(io)?;
    socket.bind_auto().map_err(io)?;
    socket.set_cap_ack(true).map_err(io)?;
    socket.set_non_blocking(true).map_err(io)?;
    Ok(socket)
}

/// Closes the batch (begun with sequence number `begin`), sends it and reads the kernel's
/// answers: every message in `asked` wants one, and an error on the batch's beginning refuses
/// it whole; an error names what went wrong. Returns the next sequence number.
fn send_batch(
    socket: &Socket,
    batch: &mut Vec<u8>,
    asked: &mut Vec<u32>,
    seq: u32,
    begin: u32,
) -> Result<u32, NftError> {
    emit(batch, control(ControlMessage::BatchEnd), seq, NLM_F_REQUEST);
    let sent = socket.send_to(batch, &SocketAddr::new(0, 0), 0);
    batch.clear();
    let expected = std::mem::take(asked);
    if let Err(e) = sent {
        return Err(os_error(e.raw_os_error().unwrap_or(0), e.to_string()));
    }
    let mut answered = 0usize;
    let mut first_error: Option<NftError> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        match socket.recv(&mut buf, 0) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(os_error(e.raw_os_error().unwrap_or(0), e.to_string())),
        }
        let mut at = 0;
        while at < buf.len() {
            let Ok(nl) = NetlinkBuffer::new_checked(&buf[at..]) else {
                break;
            };
            let len = (nl.length() as usize).max(16);
            let (kind, this_seq) = (nl.message_type(), nl.sequence_number());
            if kind == NLMSG_ERROR
                && (this_seq == begin || expected.contains(&this_seq))
                && let Ok(eb) = ErrorBuffer::new_checked(&nl.payload())
                && let Ok(err) = ErrorMessage::parse(&eb)
            {
                answered += usize::from(this_seq != begin);
                let code = -err.raw_code();
                if code != 0 && first_error.is_none() {
                    first_error = Some(os_error(code, err.to_io().to_string()));
                }
                if this_seq == begin && code != 0 {
                    // The whole batch was refused before any message was looked at.
                    answered = expected.len();
                }
            }
            at += (len + 3) & !3;
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if answered < expected.len() {
        return Err(NftError::Failed {
            message: format!(
                "nf_tables answered {answered} of {} messages of a batch",
                expected.len()
            ),
        });
    }
    Ok(seq.wrapping_add(1))
}

/// The kernel's error as ours: a missing capability is told apart, a missing table or set says
/// what to do.
fn os_error(code: i32, text: String) -> NftError {
    match code {
        libc_codes::EPERM => NftError::NotPermitted {
            message: format!("netlink: {text}"),
        },
        libc_codes::ENOENT => NftError::Missing {
            message: format!(
                "netlink: {text} (the table inet maillogsentinel, one of its sets, or an element to remove is missing; restarting the daemon sets the table up again)"
            ),
        },
        _ => NftError::Failed {
            message: format!("netlink: {text}"),
        },
    }
}

/// The two error numbers told apart (the same on every Linux architecture).
mod libc_codes {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
}

/// Sequence numbers only have to differ from those of this socket's earlier batches; a fresh
/// socket each time makes any start do, and the clock makes them readable in `nlmon` captures.
fn first_sequence() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], secs: Option<u64>) -> Element {
        Element {
            set: "addr4",
            key: IpAddr::from(a),
            timeout: secs.map(Duration::from_secs),
        }
    }

    /// The message `nft add element inet t addr4 { 203.0.113.5 timeout 60s }` sends (nftables
    /// 1.0.6, `nft --debug=mnl`), less the set id nft adds for its own cache and our ACK and
    /// CREATE flags: our element message is nft's.
    #[test]
    fn an_added_element_is_the_message_nft_sends() {
        let mut m = messages("t", &[], &[v4([203, 0, 113, 5], Some(60))]);
        assert_eq!(m.len(), 1);
        let mut buf = Vec::new();
        emit(&mut buf, m.remove(0), 1, NLM_F_REQUEST);
        #[rustfmt::skip]
        let nft: Vec<u8> = vec![
            // length 72, type 0x0a0c (NEWSETELEM), flags REQUEST, seq 1, port 0
            72, 0, 0, 0, 0x0c, 0x0a, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0,
            // nfgenmsg: family inet, version 0, res_id 0
            1, 0, 0, 0,
            // NFTA_SET_ELEM_LIST_TABLE "t"
            6, 0, 1, 0, b't', 0, 0, 0,
            // NFTA_SET_ELEM_LIST_SET "addr4"
            10, 0, 2, 0, b'a', b'd', b'd', b'r', b'4', 0, 0, 0,
            // NFTA_SET_ELEM_LIST_ELEMENTS { NFTA_LIST_ELEM { TIMEOUT 60000 ms, KEY { VALUE } } }
            32, 0, 3, 0x80, 28, 0, 1, 0x80,
            12, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0xea, 0x60,
            12, 0, 1, 0x80, 8, 0, 1, 0, 203, 0, 113, 5,
        ];
        assert_eq!(buf, nft);
    }

    #[test]
    fn deletions_come_first_and_carry_no_timeout() {
        let del = v4([198, 51, 100, 7], Some(5));
        let m = messages(
            "t",
            std::slice::from_ref(&del),
            &[v4([203, 0, 113, 5], Some(1))],
        );
        assert_eq!(m.len(), 2);
        let kinds: Vec<bool> = m
            .iter()
            .map(|m| {
                matches!(
                    &m.payload,
                    netlink_packet_core::NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: netlink_packet_netfilter::NetfilterMessageInner::NfTables(
                            NfTablesMessage::DeleteSetElement(_)
                        ),
                        ..
                    })
                )
            })
            .collect();
        assert_eq!(kinds, [true, false]);
        let mut buf = Vec::new();
        emit(&mut buf, m.into_iter().next().unwrap(), 1, NLM_F_REQUEST);
        // No NFTA_SET_ELEM_TIMEOUT (type 4 inside an element) in the deletion.
        assert!(!buf.windows(4).any(|w| w == [12, 0, 4, 0]));
    }

    #[test]
    fn many_elements_are_split_into_messages_per_set() {
        let add: Vec<Element> = (0..4_500u32)
            .map(|i| v4(i.to_be_bytes(), Some(60)))
            .chain([Element {
                set: "addr6",
                key: "2001:db8::".parse().unwrap(),
                timeout: Some(Duration::from_secs(60)),
            }])
            .collect();
        let m = messages("t", &[], &add);
        // 4,500 IPv4 elements: 1,000 x 4 + 500; one IPv6.
        assert_eq!(m.len(), 6);
        assert!(m.iter().all(|m| m.buffer_len() < BATCH_BYTES));
    }

    /// 2,000 IPv6 additions to one set: each message's element list says its true length in
    /// its 16-bit field (80,000 bytes in one attribute would wrap to 14,464 and the kernel would
    /// read 361 elements).
    #[test]
    fn a_message_s_element_list_never_outgrows_its_length_field() {
        let add: Vec<Element> = (0..2_000u128)
            .map(|i| Element {
                set: "addr6",
                key: IpAddr::from(std::net::Ipv6Addr::from(
                    (0x2001_0db8_u128 << 96) | (i << 64),
                )),
                timeout: Some(Duration::from_secs(3600)),
            })
            .collect();
        let m = messages("t", &[], &add);
        assert_eq!(m.len(), 2);
        for m in m {
            let mut buf = Vec::new();
            emit(&mut buf, m, 1, NLM_F_REQUEST);
            // After the headers (16 + 4), table "t" (8) and set "addr6" (12): the list.
            let at = 16 + 4 + 8 + 12;
            let said = u16::from_le_bytes([buf[at], buf[at + 1]]) as usize;
            assert_eq!(u16::from_le_bytes([buf[at + 2], buf[at + 3]]), 3 | 0x8000);
            assert_eq!(said, buf.len() - at, "the list's length field");
            assert_eq!(said, 4 + 1_000 * 40);
        }
    }

    #[test]
    fn a_short_timeout_is_never_zero() {
        let m = messages("t", &[], &[v4([203, 0, 113, 5], Some(0))]);
        let mut buf = Vec::new();
        emit(&mut buf, m.into_iter().next().unwrap(), 1, NLM_F_REQUEST);
        // TIMEOUT of 1 ms, not 0 (which would mean "never expires").
        assert!(
            buf.windows(12)
                .any(|w| w == [12, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        );
    }
}
