//! Who a client is behind a load balancer: the address a `Forwarded` (RFC 7239) or
//! `X-Forwarded-For` header names is believed only when the connection comes from a
//! configured trusted proxy (`trusted_proxies`); from anyone else the header is ignored,
//! since a client can write whatever it likes there.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The trusted proxies: addresses and networks (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses the config's list; the entry that is no address or network, if any.
    pub fn parse(list: &[String]) -> Result<Self, String> {
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
            nets.push((ip, len));
        }
        Ok(TrustedProxies(nets))
    }

    /// Whether none are configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|(net, len)| in_net(ip, canonical(*net), *len))
    }

    /// The client's address for a connection from `peer` with these request headers:
    /// `peer` itself unless it is a trusted proxy; then, walking the forwarded chain from
    /// the nearest hop back, the first address that is not a trusted proxy (the leftmost
    /// when all are). A chain that cannot be read is not followed past that point.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let chain = forwarded_chain(headers);
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
/// parameters, or if there is none from every `X-Forwarded-For`; None for an entry that
/// is no address (`unknown`, an obfuscated name, garbage).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
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
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "2001:db8::/32".into(), "192.0.2.7".into()])
            .unwrap();
        let xff = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(t.client_ip(ip("10.1.2.3"), &xff), ip("203.0.113.9"), "from a trusted proxy");
        assert_eq!(t.client_ip(ip("198.51.100.1"), &xff), ip("198.51.100.1"), "from anyone else: ignored");
        assert_eq!(t.client_ip(ip("::ffff:10.1.2.3"), &xff), ip("203.0.113.9"), "IPv4-mapped");
        assert_eq!(t.client_ip(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"), "no header: the proxy");
        // A client that writes its own header in front: the nearest untrusted hop wins.
        let forged = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.9.9.9")]);
        assert_eq!(t.client_ip(ip("192.0.2.7"), &forged), ip("203.0.113.9"));
        // Forwarded (RFC 7239) first, quoted IPv6 with a port.
        let fwd = headers(&[
            ("forwarded", "for=\"[2001:db9::17]:4711\";proto=https, for=10.0.0.1"),
            ("x-forwarded-for", "203.0.113.50"),
        ]);
        assert_eq!(t.client_ip(ip("2001:db8::1"), &fwd), ip("2001:db9::17"));
        // Garbage is not followed: the hop before it stands.
        let junk = headers(&[("x-forwarded-for", "203.0.113.9, not-an-address, 10.0.0.2")]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &junk), ip("10.0.0.2"));
        // Nobody trusted: every header ignored.
        assert_eq!(TrustedProxies::default().client_ip(ip("10.1.2.3"), &xff), ip("10.1.2.3"));
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(TrustedProxies::parse(&["10.0.0.0/33".into()]).unwrap_err(), "10.0.0.0/33");
        assert_eq!(TrustedProxies::parse(&["proxy.example".into()]).unwrap_err(), "proxy.example");
        assert!(TrustedProxies::parse(&["::/0".into(), "0.0.0.0/0".into()]).unwrap().contains(ip("8.8.8.8")));
    }
}
