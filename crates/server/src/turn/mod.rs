//! The embedded TURN server (RFC 8656) for clients whose network lets nothing but a
//! TURN server through. Sans IO: a client's message and the time go in
//! ([`Turn::handle_client`]), a datagram from a peer arrives at an allocation
//! ([`Turn::handle_peer`]), and what to send comes out ([`Turn::poll`]); the shell
//! ([`shell`]) owns the sockets.
//!
//! Credentials follow the TURN REST convention: the username is `expiry:user` and the
//! password `base64(HMAC-SHA1(secret, username))`, so the signaling server hands out
//! short-lived ones ([`credentials`]) and nothing is stored. It is not an open relay:
//! a permission, a channel or a send to any address but the relay's own media
//! addresses is refused (403), each user has a bounded number of allocations and each
//! allocation a bandwidth budget.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};

pub mod metrics;
pub mod shell;

use stun::{attr, method, Builder, Class, Message};
pub use switchboard_protocol::stun;

/// The realm of the long-term credentials.
pub const REALM: &str = "switchboard";
/// Allocation lifetime when the client asks for none (RFC 8656: 10 minutes) ...
const DEFAULT_LIFETIME: u32 = 600;
/// ... and the longest granted.
const MAX_LIFETIME: u32 = 3600;
/// A permission lasts this long unless refreshed (RFC 8656 §9).
const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// A nonce is good this long; then 438 Stale Nonce and the client retries.
const NONCE_SECS: u64 = 3600;
/// UDP, the only transport relayed (REQUESTED-TRANSPORT).
const UDP: u8 = 17;

/// The transport a client reached the TURN server by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP (terminated by the shell).
    Tls,
}

/// A client of the TURN server: its transport and address (the 5-tuple's client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    /// How it came.
    pub transport: Transport,
    /// From where.
    pub addr: SocketAddr,
}

/// What the shell is to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send to a client (over its transport).
    ToClient(Client, Vec<u8>),
    /// Send from an allocation's relayed address to a peer.
    ToPeer {
        /// The allocation's relayed address (its socket).
        relayed: SocketAddr,
        /// The peer.
        peer: SocketAddr,
        /// The payload.
        data: Vec<u8>,
    },
    /// An allocation is gone: close its socket.
    Release(SocketAddr),
}

/// Settings of the TURN server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The secret the credentials are derived from.
    pub secret: Vec<u8>,
    /// The only addresses allocations may relay to: the relay's media addresses.
    pub peers: Vec<SocketAddr>,
    /// Allocations one user may hold at once.
    pub max_allocations_per_user: usize,
    /// Bytes per second one allocation may relay each way (bursts of one second).
    pub bytes_per_sec: u64,
}

struct Allocation {
    client: Client,
    user: String,
    key: [u8; 16],
    username: String,
    relayed: SocketAddr,
    expires: Instant,
    /// Peer IP → permission expiry.
    permissions: HashMap<IpAddr, Instant>,
    /// Channel → peer, and peer → channel.
    channels: HashMap<u16, SocketAddr>,
    by_peer: HashMap<SocketAddr, u16>,
    /// Token bucket: bytes left, refilled per second.
    budget: f64,
    refilled: Instant,
}

impl Allocation {
    fn permitted(&self, now: Instant, peer: SocketAddr) -> bool {
        self.permissions.get(&peer.ip()).is_some_and(|t| *t > now)
    }

    fn spend(&mut self, now: Instant, rate: u64, bytes: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.budget = (self.budget + elapsed * rate as f64).min(rate as f64);
        if self.budget >= bytes as f64 {
            self.budget -= bytes as f64;
            true
        } else {
            false
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TurnStats {
    /// Allocations made.
    pub allocations: u64,
    /// Requests refused for their credentials (401 after a nonce was given, 438).
    pub unauthorized: u64,
    /// Permissions, channels or sends to an address that is not the relay's (403).
    pub forbidden: u64,
    /// Packets dropped over an allocation's bandwidth budget.
    pub over_budget: u64,
    /// Packets relayed, client → peer and peer → client.
    pub relayed: [u64; 2],
}

/// The TURN server's state. See the module docs.
pub struct Turn {
    settings: Settings,
    allocations: HashMap<Client, Allocation>,
    by_relayed: HashMap<SocketAddr, Client>,
    out: VecDeque<Output>,
    stats: TurnStats,
}

/// The TURN credentials' secret, derived from the server secret: a TURN credential
/// reveals nothing of the server's other keys.
pub fn secret(server_secret: &[u8]) -> Vec<u8> {
    let mut h = Hmac::<sha2::Sha256>::new_from_slice(server_secret).expect("HMAC takes any key");
    h.update(b"switchboard turn credentials");
    h.finalize().into_bytes().to_vec()
}

/// Short-lived TURN credentials for `user` (TURN REST convention), good for `ttl`.
pub fn credentials(secret: &[u8], user: &str, now_secs: u64, ttl: u64) -> (String, String) {
    let username = format!("{}:{user}", now_secs + ttl);
    (username.clone(), password(secret, &username))
}

fn password(secret: &[u8], username: &str) -> String {
    let mut h = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap_or_else(|_| {
        // HMAC takes a key of any length: this never happens.
        Hmac::<sha1::Sha1>::new_from_slice(b"-").expect("a one-byte key")
    });
    h.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize().into_bytes())
}

impl Turn {
    /// A server with no allocations.
    pub fn new(settings: Settings) -> Self {
        Turn {
            settings,
            allocations: HashMap::new(),
            by_relayed: HashMap::new(),
            out: VecDeque::new(),
            stats: TurnStats::default(),
        }
    }

    /// What to send next.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The counters so far.
    pub fn stats(&self) -> TurnStats {
        self.stats.clone()
    }

    /// Live allocations.
    pub fn len(&self) -> usize {
        self.allocations.len()
    }

    /// Allocations alive now by how their clients came: UDP, TCP, TLS.
    pub fn live_by_transport(&self) -> [usize; 3] {
        let mut n = [0; 3];
        for c in self.allocations.keys() {
            n[c.transport as usize] += 1;
        }
        n
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty()
    }

    fn nonce(&self, now_secs: u64) -> String {
        let mut h = Hmac::<sha1::Sha1>::new_from_slice(&self.settings.secret).expect("HMAC takes any key");
        h.update(&now_secs.to_be_bytes());
        let tag = h.finalize().into_bytes();
        let hex: String = tag.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{now_secs:x}-{hex}")
    }

    fn nonce_fresh(&self, nonce: &str, now_secs: u64) -> bool {
        let Some((t, _)) = nonce.split_once('-') else { return false };
        let Ok(t) = u64::from_str_radix(t, 16) else { return false };
        now_secs.saturating_sub(t) < NONCE_SECS && t <= now_secs && self.nonce(t) == nonce
    }

    fn reply(&mut self, client: Client, bytes: Vec<u8>) {
        self.out.push_back(Output::ToClient(client, bytes));
    }

    fn error(
        &mut self,
        client: Client,
        m: &Message,
        code: u16,
        reason: &str,
        key: Option<&[u8]>,
        now_secs: u64,
    ) {
        let mut b = Builder::new(m.method, Class::Error, m.tid).error(code, reason);
        if matches!(code, 401 | 438) {
            b = b.attr(attr::REALM, REALM.as_bytes()).attr(attr::NONCE, self.nonce(now_secs).as_bytes());
        }
        let bytes = match key {
            Some(k) => b.integrity(k).build(),
            None => b.build(),
        };
        self.reply(client, bytes);
    }

    /// Checks a request's long-term credentials: its user and key, or the error sent.
    fn authenticate(
        &mut self,
        client: Client,
        m: &Message,
        now_secs: u64,
    ) -> Option<(String, String, [u8; 16])> {
        let (Some(username), Some(nonce)) = (m.text(attr::USERNAME), m.text(attr::NONCE)) else {
            // The first request of a client: it learns the realm and a nonce.
            self.error(client, m, 401, "Unauthorized", None, now_secs);
            return None;
        };
        if !self.nonce_fresh(nonce, now_secs) {
            self.stats.unauthorized += 1;
            self.error(client, m, 438, "Stale Nonce", None, now_secs);
            return None;
        }
        let (expiry, user) = username.split_once(':').unwrap_or(("", username));
        let expired = expiry.parse::<u64>().map_or(true, |e| e < now_secs);
        let key = stun::long_term_key(username, REALM, &password(&self.settings.secret, username));
        if expired || m.text(attr::REALM) != Some(REALM) || !m.integrity_ok(&key) {
            self.stats.unauthorized += 1;
            self.error(client, m, 401, "Unauthorized", None, now_secs);
            return None;
        }
        Some((username.to_string(), user.to_string(), key))
    }

    /// A message from a client (a STUN message or ChannelData). `bind` opens a relayed
    /// socket for a new allocation and says its address (the shell's). `now_secs` is
    /// the wall clock (credentials expire on it).
    pub fn handle_client(
        &mut self,
        now: Instant,
        now_secs: u64,
        client: Client,
        data: &[u8],
        bind: &mut dyn FnMut() -> Option<SocketAddr>,
    ) {
        if let Some((channel, payload)) = stun::parse_channel_data(data) {
            return self.channel_data(now, client, channel, payload);
        }
        let Some(m) = Message::parse(data) else { return };
        match (m.method, m.class) {
            (method::BINDING, Class::Request) => {
                let b = Builder::new(method::BINDING, Class::Success, m.tid)
                    .xor_address(attr::XOR_MAPPED_ADDRESS, client.addr);
                self.reply(client, b.build());
            }
            (method::SEND, Class::Indication) => self.send_indication(now, client, &m),
            (method::ALLOCATE, Class::Request) => self.allocate(now, now_secs, client, &m, bind),
            (method::REFRESH | method::CREATE_PERMISSION | method::CHANNEL_BIND, Class::Request) => {
                let Some((username, ..)) = self.authenticate(client, &m, now_secs) else { return };
                let Some(a) = self.allocations.get(&client) else {
                    return self.error(client, &m, 437, "Allocation Mismatch", None, now_secs);
                };
                if a.username != username {
                    return self.error(client, &m, 441, "Wrong Credentials", None, now_secs);
                }
                match m.method {
                    method::REFRESH => self.refresh(now, now_secs, client, &m),
                    method::CREATE_PERMISSION => self.create_permission(now, now_secs, client, &m),
                    _ => self.channel_bind(now, now_secs, client, &m),
                }
            }
            (_, Class::Request) => self.error(client, &m, 400, "Bad Request", None, now_secs),
            _ => {}
        }
    }

    fn allocate(
        &mut self,
        now: Instant,
        now_secs: u64,
        client: Client,
        m: &Message,
        bind: &mut dyn FnMut() -> Option<SocketAddr>,
    ) {
        let Some((username, user, key)) = self.authenticate(client, m, now_secs) else { return };
        if self.allocations.contains_key(&client) {
            return self.error(client, m, 437, "Allocation Mismatch", Some(&key), now_secs);
        }
        if m.get(attr::REQUESTED_TRANSPORT).and_then(|v| v.first()) != Some(&UDP) {
            return self.error(client, m, 442, "Unsupported Transport Protocol", Some(&key), now_secs);
        }
        let held = self.allocations.values().filter(|a| a.user == user).count();
        if held >= self.settings.max_allocations_per_user {
            return self.error(client, m, 486, "Allocation Quota Reached", Some(&key), now_secs);
        }
        let Some(relayed) = bind() else {
            return self.error(client, m, 508, "Insufficient Capacity", Some(&key), now_secs);
        };
        let lifetime = m.u32(attr::LIFETIME).unwrap_or(DEFAULT_LIFETIME).clamp(1, MAX_LIFETIME);
        let rate = self.settings.bytes_per_sec as f64;
        self.allocations.insert(
            client,
            Allocation {
                client,
                user,
                key,
                username,
                relayed,
                expires: now + Duration::from_secs(u64::from(lifetime)),
                permissions: HashMap::new(),
                channels: HashMap::new(),
                by_peer: HashMap::new(),
                budget: rate,
                refilled: now,
            },
        );
        self.by_relayed.insert(relayed, client);
        self.stats.allocations += 1;
        tracing::debug!(client = %client.addr, transport = ?client.transport, %relayed, lifetime, "TURN allocation");
        let b = Builder::new(method::ALLOCATE, Class::Success, m.tid)
            .xor_address(attr::XOR_RELAYED_ADDRESS, relayed)
            .xor_address(attr::XOR_MAPPED_ADDRESS, client.addr)
            .attr(attr::LIFETIME, &lifetime.to_be_bytes())
            .integrity(&key);
        self.reply(client, b.build());
    }

    fn refresh(&mut self, now: Instant, _now_secs: u64, client: Client, m: &Message) {
        let lifetime = m.u32(attr::LIFETIME).unwrap_or(DEFAULT_LIFETIME).min(MAX_LIFETIME);
        let Some(a) = self.allocations.get_mut(&client) else { return };
        let key = a.key;
        if lifetime == 0 {
            self.release(&client);
        } else {
            a.expires = now + Duration::from_secs(u64::from(lifetime));
        }
        let b = Builder::new(method::REFRESH, Class::Success, m.tid)
            .attr(attr::LIFETIME, &lifetime.to_be_bytes())
            .integrity(&key);
        self.reply(client, b.build());
    }

    /// Whether an allocation may relay to `peer`: only the relay's own media addresses.
    fn allowed(&self, peer: SocketAddr) -> bool {
        self.settings.peers.contains(&peer)
    }

    fn allowed_ip(&self, ip: IpAddr) -> bool {
        self.settings.peers.iter().any(|p| p.ip() == ip)
    }

    fn create_permission(&mut self, now: Instant, now_secs: u64, client: Client, m: &Message) {
        let peers = m.xor_addresses(attr::XOR_PEER_ADDRESS);
        let Some(key) = self.allocations.get(&client).map(|a| a.key) else { return };
        if peers.is_empty() {
            return self.error(client, m, 400, "Bad Request", Some(&key), now_secs);
        }
        if !peers.iter().all(|p| self.allowed_ip(p.ip())) {
            self.stats.forbidden += 1;
            tracing::debug!(client = %client.addr, ?peers, "TURN permission for an address not the relay's refused");
            return self.error(client, m, 403, "Forbidden", Some(&key), now_secs);
        }
        if let Some(a) = self.allocations.get_mut(&client) {
            for p in peers {
                a.permissions.insert(p.ip(), now + PERMISSION_LIFETIME);
            }
        }
        self.reply(
            client,
            Builder::new(method::CREATE_PERMISSION, Class::Success, m.tid).integrity(&key).build(),
        );
    }

    fn channel_bind(&mut self, now: Instant, now_secs: u64, client: Client, m: &Message) {
        let Some(key) = self.allocations.get(&client).map(|a| a.key) else { return };
        let channel =
            m.get(attr::CHANNEL_NUMBER).and_then(|v| v.get(..2)).map(|v| u16::from_be_bytes([v[0], v[1]]));
        let peer = m.xor_addresses(attr::XOR_PEER_ADDRESS).first().copied();
        let (Some(channel), Some(peer)) = (channel.filter(|c| (0x4000..=0x7FFF).contains(c)), peer) else {
            return self.error(client, m, 400, "Bad Request", Some(&key), now_secs);
        };
        if !self.allowed(peer) {
            self.stats.forbidden += 1;
            tracing::debug!(client = %client.addr, %peer, "TURN channel to an address not the relay's refused");
            return self.error(client, m, 403, "Forbidden", Some(&key), now_secs);
        }
        let Some(a) = self.allocations.get_mut(&client) else { return };
        let taken = a.channels.get(&channel).is_some_and(|p| *p != peer)
            || a.by_peer.get(&peer).is_some_and(|c| *c != channel);
        if taken {
            return self.error(client, m, 400, "Bad Request", Some(&key), now_secs);
        }
        a.channels.insert(channel, peer);
        a.by_peer.insert(peer, channel);
        a.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        self.reply(client, Builder::new(method::CHANNEL_BIND, Class::Success, m.tid).integrity(&key).build());
    }

    fn send_indication(&mut self, now: Instant, client: Client, m: &Message) {
        let (Some(peer), Some(data)) =
            (m.xor_addresses(attr::XOR_PEER_ADDRESS).first().copied(), m.get(attr::DATA))
        else {
            return;
        };
        self.relay_out(now, client, peer, data);
    }

    fn channel_data(&mut self, now: Instant, client: Client, channel: u16, payload: &[u8]) {
        let Some(peer) = self.allocations.get(&client).and_then(|a| a.channels.get(&channel).copied()) else {
            return;
        };
        self.relay_out(now, client, peer, payload);
    }

    fn relay_out(&mut self, now: Instant, client: Client, peer: SocketAddr, data: &[u8]) {
        if !self.allowed(peer) {
            self.stats.forbidden += 1;
            tracing::debug!(client = %client.addr, %peer, "TURN send to an address not the relay's dropped");
            return;
        }
        let rate = self.settings.bytes_per_sec;
        let Some(a) = self.allocations.get_mut(&client) else { return };
        if !a.permitted(now, peer) {
            tracing::debug!(client = %client.addr, %peer, "TURN send without a permission dropped");
            return;
        }
        if !a.spend(now, rate, data.len()) {
            self.stats.over_budget += 1;
            return;
        }
        self.stats.relayed[0] += 1;
        self.out.push_back(Output::ToPeer { relayed: a.relayed, peer, data: data.to_vec() });
    }

    /// A datagram from `peer` arrived at the allocation whose relayed address is
    /// `relayed`: to its client, if the peer is permitted.
    pub fn handle_peer(&mut self, now: Instant, relayed: SocketAddr, peer: SocketAddr, data: &[u8]) {
        let rate = self.settings.bytes_per_sec;
        let Some(client) = self.by_relayed.get(&relayed).copied() else { return };
        let Some(a) = self.allocations.get_mut(&client) else { return };
        if !a.permitted(now, peer) {
            tracing::debug!(%relayed, %peer, "TURN datagram from a peer without a permission dropped");
            return;
        }
        if !a.spend(now, rate, data.len()) {
            self.stats.over_budget += 1;
            return;
        }
        self.stats.relayed[1] += 1;
        let bytes = match a.by_peer.get(&peer) {
            Some(channel) => stun::channel_data(*channel, data, a.client.transport != Transport::Udp),
            None => {
                let mut tid = [0u8; 12];
                let n = self.stats.relayed[1].to_be_bytes();
                tid[4..].copy_from_slice(&n);
                Builder::new(method::DATA, Class::Indication, tid)
                    .xor_address(attr::XOR_PEER_ADDRESS, peer)
                    .attr(attr::DATA, data)
                    .build()
            }
        };
        self.out.push_back(Output::ToClient(client, bytes));
    }

    /// A client's connection closed (TCP): its allocation goes with it.
    pub fn client_gone(&mut self, client: Client) {
        self.release(&client);
    }

    fn release(&mut self, client: &Client) {
        if let Some(a) = self.allocations.remove(client) {
            self.by_relayed.remove(&a.relayed);
            self.out.push_back(Output::Release(a.relayed));
        }
    }

    /// Allocations past their lifetime go (the shell calls this on its timer, not per
    /// packet: it walks every allocation).
    pub fn expire(&mut self, now: Instant) {
        let gone: Vec<Client> =
            self.allocations.iter().filter(|(_, a)| a.expires <= now).map(|(c, _)| *c).collect();
        for c in gone {
            self.release(&c);
        }
    }
}

#[cfg(test)]
mod tests;
