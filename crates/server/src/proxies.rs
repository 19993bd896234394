//! Who a client is behind a load balancer: the address a `Forwarded` (RFC 7239) or
//! `X-Forwarded-For` header names is believed only when the connection comes from a
//! configured trusted proxy (`trusted_proxies`); from anyone else the header is ignored,
//! since a client can write whatever it likes there.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The trusted proxies: addresses and networks (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`),
/// and the one header they write the client into.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<(IpAddr, u8)>,
    /// `Forwarded` (RFC 7239) rather than `X-Forwarded-For`. Only the header the proxies
    /// write is read: the other one, passed through untouched, is the client's to forge.
    rfc7239: bool,
}

impl TrustedProxies {
    /// Parses the config's list (`header`: `x-forwarded-for` or `forwarded`); the entry
    /// that is no address or network (or the header that is neither), if any.
    pub fn parse(list: &[String], header: &str) -> Result<Self, String> {
        let rfc7239 = match header.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => false,
            "forwarded" => true,
            _ => return Err(header.to_string()),
        };
        let mut nets = Vec::with_capacity(list.len());
        for entry in list {
            let (addr, len) = match entry.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (entry.as_str(), None),
            };
            let ip: IpAddr = addr.trim().parse().map_err(|_| entry.clone())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                Some(l) => l.trim().parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| entry.clone())?,
                None => max,
            };
            // An IPv4-mapped network is the IPv4 network it carries (addresses compare
            // that way too); a shorter prefix stays an IPv6 network.
            let (ip, len) = match canonical(ip) {
                IpAddr::V4(v4) if ip.is_ipv6() && len >= 96 => (IpAddr::V4(v4), len - 96),
                _ => (ip, len),
            };
            nets.push((ip, len));
        }
        Ok(TrustedProxies { nets, rfc7239 })
    }

    /// Whether none are configured.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|(net, len)| in_net(ip, *net, *len))
    }

    /// The client's address for a connection from `peer` with these request headers:
    /// `peer` itself unless it is a trusted proxy; then, walking the forwarded chain from
    /// the nearest hop back, the first address that is not a trusted proxy (the leftmost
    /// when all are). A chain that cannot be read is not followed past that point.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let chain = forwarded_chain(headers, self.rfc7239);
        let mut client = peer;
        for hop in chain.iter().rev() {
            let Some(ip) = hop else { break };
            client = *ip;
            if !self.contains(*ip) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The forwarded addresses, client first: from every `Forwarded` header's `for=`
/// parameters (`rfc7239`) or every `X-Forwarded-For`; None for an entry that is no
/// address (`unknown`, an obfuscated name, garbage, a `Forwarded` element without `for`).
fn forwarded_chain(headers: &HeaderMap, rfc7239: bool) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    if rfc7239 {
        return values("forwarded")
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_node(v.trim().trim_matches('"')))?
                })
            })
            .collect();
    }
    values("x-forwarded-for").iter().flat_map(|v| v.split(',')).map(|a| parse_node(a.trim())).collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let list = ["10.0.0.0/8".to_string(), "2001:db8::/32".into(), "192.0.2.7".into()];
        let t = TrustedProxies::parse(&list, "x-forwarded-for").unwrap();
        let xff = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(t.client_ip(ip("10.1.2.3"), &xff), ip("203.0.113.9"), "from a trusted proxy");
        assert_eq!(t.client_ip(ip("198.51.100.1"), &xff), ip("198.51.100.1"), "from anyone else: ignored");
        assert_eq!(t.client_ip(ip("::ffff:10.1.2.3"), &xff), ip("203.0.113.9"), "IPv4-mapped");
        assert_eq!(t.client_ip(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"), "no header: the proxy");
        // A client that writes its own header in front: the nearest untrusted hop wins.
        let forged = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.9.9.9")]);
        assert_eq!(t.client_ip(ip("192.0.2.7"), &forged), ip("203.0.113.9"));
        // Only the header the proxies write: a client's own `Forwarded` beside the
        // proxy's X-Forwarded-For changes nothing, and the other way round.
        let fwd = headers(&[
            ("forwarded", "for=\"[2001:db9::17]:4711\";proto=https, for=10.0.0.1"),
            ("x-forwarded-for", "203.0.113.50"),
        ]);
        assert_eq!(t.client_ip(ip("2001:db8::1"), &fwd), ip("203.0.113.50"));
        let t7239 = TrustedProxies::parse(&list, "Forwarded").unwrap();
        assert_eq!(t7239.client_ip(ip("2001:db8::1"), &fwd), ip("2001:db9::17"), "quoted IPv6 with a port");
        let no_for =
            headers(&[("forwarded", "for=203.0.113.50, proto=https"), ("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            t7239.client_ip(ip("10.0.0.1"), &no_for),
            ip("10.0.0.1"),
            "an element without for= stops the walk"
        );
        // Garbage is not followed: the hop before it stands.
        let junk = headers(&[("x-forwarded-for", "203.0.113.9, not-an-address, 10.0.0.2")]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &junk), ip("10.0.0.2"));
        // Nobody trusted: every header ignored.
        assert_eq!(TrustedProxies::default().client_ip(ip("10.1.2.3"), &xff), ip("10.1.2.3"));
    }

    #[test]
    fn bad_entries_are_named_and_mapped_networks_are_their_ipv4_ones() {
        let parse = |l: &[&str]| {
            TrustedProxies::parse(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "x-forwarded-for")
        };
        assert_eq!(parse(&["10.0.0.0/33"]).unwrap_err(), "10.0.0.0/33");
        assert_eq!(parse(&["proxy.example"]).unwrap_err(), "proxy.example");
        assert!(parse(&["::/0", "0.0.0.0/0"]).unwrap().contains(ip("8.8.8.8")));
        let mapped = parse(&["::ffff:10.0.0.0/104"]).unwrap();
        assert!(mapped.contains(ip("10.1.2.3")) && mapped.contains(ip("::ffff:10.1.2.3")));
        assert!(!mapped.contains(ip("11.0.0.1")));
        assert!(parse(&["::ffff:0:0/96"]).unwrap().contains(ip("192.0.2.1")));
        assert!(TrustedProxies::parse(&[], "x-real-ip").is_err());
    }
}

/// What the start of a connection from a load balancer that speaks the PROXY protocol
/// (HAProxy's, v1 text or v2 binary) says.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// More bytes are needed.
    Incomplete,
    /// Not a PROXY header (the connection is closed: a trusted proxy always sends one).
    Invalid,
    /// A header of `len` bytes naming the client (None: `UNKNOWN` or `LOCAL`, a health
    /// check: the proxy itself is the client).
    Done {
        /// Its length; what follows is the client's stream.
        len: usize,
        /// The client's address.
        client: Option<std::net::SocketAddr>,
    },
}

const V2_SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
/// A v1 header is at most this long (its spec).
const V1_MAX: usize = 107;

/// Reads a PROXY protocol header at the start of `buf`.
pub fn proxy_header(buf: &[u8]) -> ProxyHeader {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    let prefix = |sig: &[u8]| buf.len() < sig.len() && sig.starts_with(buf) || buf.starts_with(sig);
    if buf.starts_with(&V2_SIGNATURE) {
        if buf.len() < 16 {
            return ProxyHeader::Incomplete;
        }
        let (ver_cmd, fam) = (buf[12], buf[13]);
        let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if ver_cmd >> 4 != 2 {
            return ProxyHeader::Invalid;
        }
        if buf.len() < len {
            return ProxyHeader::Incomplete;
        }
        let a = &buf[16..len];
        let client = match (ver_cmd & 0x0F, fam >> 4) {
            (0, _) => None,
            (1, 1) if a.len() >= 12 => {
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
            }
            (1, 2) if a.len() >= 36 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[..16]);
                Some(SocketAddr::new(Ipv6Addr::from(o).into(), u16::from_be_bytes([a[32], a[33]])))
            }
            (1, _) => None,
            _ => return ProxyHeader::Invalid,
        };
        return ProxyHeader::Done { len, client };
    }
    if prefix(&V2_SIGNATURE) && buf.len() < V2_SIGNATURE.len() {
        return ProxyHeader::Incomplete;
    }
    if !prefix(b"PROXY ") {
        return ProxyHeader::Invalid;
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() < V1_MAX { ProxyHeader::Incomplete } else { ProxyHeader::Invalid };
    };
    let Ok(line) = std::str::from_utf8(&buf[..end]) else { return ProxyHeader::Invalid };
    let parts: Vec<&str> = line.split(' ').collect();
    let client = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", "TCP4" | "TCP6", src, _dst, sport, _dport] => {
            match (src.parse::<std::net::IpAddr>(), sport.parse()) {
                (Ok(ip), Ok(port)) => Some(SocketAddr::new(ip, port)),
                _ => return ProxyHeader::Invalid,
            }
        }
        _ => return ProxyHeader::Invalid,
    };
    ProxyHeader::Done { len: end + 2, client }
}

/// Reads the PROXY header from the start of `stream`; the stream with what came after
/// it, and the client it names. An error for anything that is no PROXY header.
pub async fn read_proxy_header<S>(
    mut stream: S,
) -> std::io::Result<(crate::tls::Rewound<S>, Option<std::net::SocketAddr>)>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        match proxy_header(&buf) {
            ProxyHeader::Done { len, client } => {
                let rest = buf.split_off(len);
                return Ok((crate::tls::Rewound::new(rest, stream), client));
            }
            ProxyHeader::Invalid => return Err(std::io::Error::other("no PROXY protocol header")),
            ProxyHeader::Incomplete => {}
        }
        if buf.len() > 16 + usize::from(u16::MAX) {
            return Err(std::io::Error::other("PROXY header too long"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod proxy_protocol_tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_name_the_client_and_say_how_long_they_are() {
        let v1 = b"PROXY TCP4 203.0.113.5 192.0.2.1 40000 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            proxy_header(v1),
            ProxyHeader::Done { len: 44, client: Some("203.0.113.5:40000".parse().unwrap()) }
        );
        assert_eq!(
            proxy_header(b"PROXY TCP6 2001:db8::5 2001:db8::1 1 2\r\n"),
            ProxyHeader::Done { len: 40, client: Some("[2001:db8::5]:1".parse().unwrap()) }
        );
        assert_eq!(proxy_header(b"PROXY UNKNOWN\r\n"), ProxyHeader::Done { len: 15, client: None });
        assert_eq!(proxy_header(b"PROXY TCP4 203.0"), ProxyHeader::Incomplete);
        assert_eq!(proxy_header(b"PRO"), ProxyHeader::Incomplete);
        assert_eq!(proxy_header(b"GET / HTTP/1.1\r\n"), ProxyHeader::Invalid);
        assert_eq!(proxy_header(b"PROXY TCP4 not-an-ip 192.0.2.1 1 2\r\n"), ProxyHeader::Invalid);
        assert_eq!(proxy_header(&[b'P'; 200]), ProxyHeader::Invalid);

        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 5, 192, 0, 2, 1, 0x9C, 0x40, 0x01, 0xBB]);
        v2.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            proxy_header(&v2),
            ProxyHeader::Done { len: 28, client: Some("203.0.113.5:40000".parse().unwrap()) }
        );
        assert_eq!(proxy_header(&v2[..20]), ProxyHeader::Incomplete);
        assert_eq!(proxy_header(&v2[..5]), ProxyHeader::Incomplete);
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(proxy_header(&local), ProxyHeader::Done { len: 16, client: None });
    }
}
