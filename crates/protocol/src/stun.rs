//! The STUN messages (RFC 8489) TURN (RFC 8656) speaks, for the server's embedded TURN
//! server and the SDK's TURN client: the header, the attributes TURN uses,
//! XOR-mangled addresses, MESSAGE-INTEGRITY with a long-term key, and ChannelData
//! framing. Pure functions over bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};

/// The magic cookie of every STUN message.
pub const MAGIC: u32 = 0x2112_A442;
/// Longest message or ChannelData packet taken (a UDP datagram's worth).
pub const MAX_LEN: usize = 4096;

/// Methods.
pub mod method {
    /// Binding.
    pub const BINDING: u16 = 0x001;
    /// Allocate.
    pub const ALLOCATE: u16 = 0x003;
    /// Refresh.
    pub const REFRESH: u16 = 0x004;
    /// Send (indication).
    pub const SEND: u16 = 0x006;
    /// Data (indication).
    pub const DATA: u16 = 0x007;
    /// CreatePermission.
    pub const CREATE_PERMISSION: u16 = 0x008;
    /// ChannelBind.
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// Message classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A request.
    Request,
    /// An indication.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

/// Attribute types.
pub mod attr {
    /// MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// CHANNEL-NUMBER.
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME.
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS.
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA.
    pub const DATA: u16 = 0x0013;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS.
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-TRANSPORT.
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
}

/// A parsed STUN message: the attributes are slices of the datagram it came in.
#[derive(Debug)]
pub struct Message<'a> {
    /// The method.
    pub method: u16,
    /// The class.
    pub class: Class,
    /// The transaction ID.
    pub tid: [u8; 12],
    /// Attributes in order: type, value, and where the attribute starts.
    attrs: Vec<(u16, &'a [u8], usize)>,
    raw: &'a [u8],
}

/// Whether `data` starts like a STUN message (first two bits zero, the cookie).
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] & 0xC0 == 0 && data[4..8] == MAGIC.to_be_bytes()
}

/// Whether `data` starts like ChannelData (a channel number 0x4000-0x7FFF).
pub fn is_channel_data(data: &[u8]) -> bool {
    data.len() >= 4 && (0x40..=0x7F).contains(&data[0])
}

/// How many bytes the STUN message or ChannelData packet at the head of a TCP stream
/// takes (ChannelData padded to 4 over a stream, RFC 8656 §12.5), if its header is there.
pub fn framed_len(data: &[u8]) -> Option<usize> {
    if data.len() < 4 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    if is_channel_data(data) {
        Some(4 + len.div_ceil(4) * 4)
    } else {
        Some(20 + len)
    }
}

impl<'a> Message<'a> {
    /// Parses a STUN message; `None` if it is not one or is malformed.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        if !is_stun(data) || data.len() > MAX_LEN {
            return None;
        }
        let kind = u16::from_be_bytes([data[0], data[1]]);
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        if !len.is_multiple_of(4) || data.len() < 20 + len {
            return None;
        }
        let method = (kind & 0x000F) | ((kind & 0x00E0) >> 1) | ((kind & 0x3E00) >> 2);
        let class = match ((kind >> 7) & 0x2) | ((kind >> 4) & 0x1) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        };
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&data[8..20]);
        let mut attrs = Vec::new();
        let mut at = 20;
        while at + 4 <= 20 + len {
            let t = u16::from_be_bytes([data[at], data[at + 1]]);
            let l = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
            let end = at + 4 + l;
            if end > 20 + len {
                return None;
            }
            attrs.push((t, &data[at + 4..end], at));
            at = at + 4 + l.div_ceil(4) * 4;
        }
        Some(Message { method, class, tid, attrs, raw: &data[..20 + len] })
    }

    /// The first attribute of type `t`.
    pub fn get(&self, t: u16) -> Option<&'a [u8]> {
        self.attrs.iter().find(|(k, ..)| *k == t).map(|(_, v, _)| *v)
    }

    /// A text attribute (USERNAME, REALM, NONCE).
    pub fn text(&self, t: u16) -> Option<&'a str> {
        std::str::from_utf8(self.get(t)?).ok()
    }

    /// A 32-bit attribute (LIFETIME).
    pub fn u32(&self, t: u16) -> Option<u32> {
        let v = self.get(t)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    /// Every XOR-mangled address of type `t` (a CreatePermission may carry several).
    pub fn xor_addresses(&self, t: u16) -> Vec<SocketAddr> {
        self.attrs.iter().filter(|(k, ..)| *k == t).filter_map(|(_, v, _)| unxor(v, &self.tid)).collect()
    }

    /// Whether MESSAGE-INTEGRITY is there and right for `key` (RFC 8489 §14.5: the HMAC
    /// of the message up to it, with the length covering it).
    pub fn integrity_ok(&self, key: &[u8]) -> bool {
        let Some((_, mac, start)) = self.attrs.iter().find(|(k, ..)| *k == attr::MESSAGE_INTEGRITY) else {
            return false;
        };
        if mac.len() != 20 {
            return false;
        }
        let mut head = self.raw[..*start].to_vec();
        let covered = (*start + 24 - 20) as u16;
        head[2..4].copy_from_slice(&covered.to_be_bytes());
        let Ok(mut h) = Hmac::<sha1::Sha1>::new_from_slice(key) else { return false };
        h.update(&head);
        h.verify_slice(mac).is_ok()
    }
}

fn unxor(v: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 8 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
    match v[1] {
        0x01 => {
            let ip = u32::from_be_bytes(v[4..8].try_into().ok()?) ^ MAGIC;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        0x02 if v.len() >= 20 => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC.to_be_bytes());
            key[4..].copy_from_slice(tid);
            let mut ip = [0u8; 16];
            for (i, b) in ip.iter_mut().enumerate() {
                *b = v[4 + i] ^ key[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Writes a STUN message.
pub struct Builder {
    buf: Vec<u8>,
    tid: [u8; 12],
}

impl Builder {
    /// A message of `method` and `class` with transaction `tid`.
    pub fn new(method: u16, class: Class, tid: [u8; 12]) -> Self {
        let c = match class {
            Class::Request => 0,
            Class::Indication => 1,
            Class::Success => 2,
            Class::Error => 3,
        };
        let kind = (method & 0x000F)
            | ((method & 0x0070) << 1)
            | ((method & 0x0F80) << 2)
            | ((c & 1) << 4)
            | ((c & 2) << 7);
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&kind.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC.to_be_bytes());
        buf.extend_from_slice(&tid);
        Builder { buf, tid }
    }

    /// Adds an attribute.
    pub fn attr(mut self, t: u16, value: &[u8]) -> Self {
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self.set_len();
        self
    }

    /// Adds an XOR-mangled address.
    pub fn xor_address(self, t: u16, addr: SocketAddr) -> Self {
        let port = addr.port() ^ (MAGIC >> 16) as u16;
        let mut v = Vec::with_capacity(20);
        match addr.ip() {
            IpAddr::V4(ip) => {
                v.extend_from_slice(&[0, 0x01]);
                v.extend_from_slice(&port.to_be_bytes());
                v.extend_from_slice(&(u32::from(ip) ^ MAGIC).to_be_bytes());
            }
            IpAddr::V6(ip) => {
                v.extend_from_slice(&[0, 0x02]);
                v.extend_from_slice(&port.to_be_bytes());
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&MAGIC.to_be_bytes());
                key[4..].copy_from_slice(&self.tid);
                for (i, b) in ip.octets().iter().enumerate() {
                    v.push(b ^ key[i]);
                }
            }
        }
        self.attr(t, &v)
    }

    /// Adds ERROR-CODE.
    pub fn error(self, code: u16, reason: &str) -> Self {
        let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        v.extend_from_slice(reason.as_bytes());
        self.attr(attr::ERROR_CODE, &v)
    }

    /// Ends with MESSAGE-INTEGRITY under `key`.
    pub fn integrity(mut self, key: &[u8]) -> Self {
        let covered = (self.buf.len() + 24 - 20) as u16;
        self.buf[2..4].copy_from_slice(&covered.to_be_bytes());
        let mac = match Hmac::<sha1::Sha1>::new_from_slice(key) {
            Ok(mut h) => {
                h.update(&self.buf);
                h.finalize().into_bytes().to_vec()
            }
            Err(_) => vec![0; 20],
        };
        self.attr(attr::MESSAGE_INTEGRITY, &mac)
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - 20) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// The bytes.
    pub fn build(self) -> Vec<u8> {
        self.buf
    }
}

/// A ChannelData packet (over a stream it is padded to 4: `padded`).
pub fn channel_data(channel: u16, data: &[u8], padded: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + data.len() + 3);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    if padded {
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    out
}

/// The channel and payload of a ChannelData packet.
pub fn parse_channel_data(data: &[u8]) -> Option<(u16, &[u8])> {
    if !is_channel_data(data) {
        return None;
    }
    let channel = u16::from_be_bytes([data[0], data[1]]);
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    Some((channel, data.get(4..4 + len)?))
}

/// The long-term key (RFC 8489 §9.2.2): MD5(username ":" realm ":" password).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    use md5::Digest as _;
    let mut h = md5::Md5::new();
    h.update(format!("{username}:{realm}:{password}").as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_integrity_and_addresses() {
        let tid = [7u8; 12];
        let key = long_term_key("1700000000:alice", "switchboard", "secret");
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let peer6: SocketAddr = "[2001:db8::9]:5000".parse().unwrap();
        let bytes = Builder::new(method::CREATE_PERMISSION, Class::Request, tid)
            .attr(attr::USERNAME, b"1700000000:alice")
            .xor_address(attr::XOR_PEER_ADDRESS, peer)
            .xor_address(attr::XOR_PEER_ADDRESS, peer6)
            .integrity(&key)
            .build();
        let m = Message::parse(&bytes).expect("parses");
        assert_eq!((m.method, m.class, m.tid), (method::CREATE_PERMISSION, Class::Request, tid));
        assert_eq!(m.text(attr::USERNAME), Some("1700000000:alice"));
        assert_eq!(m.xor_addresses(attr::XOR_PEER_ADDRESS), [peer, peer6]);
        assert!(m.integrity_ok(&key));
        assert!(!m.integrity_ok(&long_term_key("1700000000:alice", "switchboard", "wrong")));
        let mut tampered = bytes.clone();
        tampered[30] ^= 1;
        assert!(!Message::parse(&tampered).is_some_and(|m| m.integrity_ok(&key)));
    }

    #[test]
    fn channel_data_and_stream_framing() {
        let p = channel_data(0x4001, b"hello", true);
        assert_eq!(p.len(), 12);
        assert_eq!(framed_len(&p), Some(12));
        assert_eq!(parse_channel_data(&p), Some((0x4001, &b"hello"[..])));
        let m = Builder::new(method::BINDING, Class::Request, [1; 12]).build();
        assert_eq!(framed_len(&m), Some(20));
        assert!(is_stun(&m) && !is_channel_data(&m));
        assert!(Message::parse(&[0u8; 19]).is_none());
    }
}
