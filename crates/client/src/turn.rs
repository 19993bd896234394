//! A TURN client (RFC 8656) for the SDK's media, for networks that let nothing through
//! but the server's TURN server: one allocation over UDP, TCP or TLS with the credentials of
//! `welcome`, a channel per peer ICE sends to, refreshed while the media lives. ICE sees
//! the allocation as a relayed candidate; what it sends from there goes through here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use switchboard_protocol::stun::{self, attr, method, Builder, Class, Message};
use switchboard_protocol::IceServer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::ClientError;

/// How the TURN server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TurnTransport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP (a `turns:` URL).
    Tls,
}

/// Allocation and permissions are refreshed this often (they last 10 and 5 minutes).
const REFRESH_EVERY: Duration = Duration::from_secs(240);
/// One request's wait for its answer (UDP: sent again meanwhile).
const ANSWER: Duration = Duration::from_secs(5);

/// A TCP or TLS stream to the server.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin> Stream for S {}

/// The way to the server: a UDP socket, or a TCP or TLS stream (and what was read of
/// it past the last whole frame).
enum Conn {
    Udp(UdpSocket),
    Tcp(Box<dyn Stream>, Vec<u8>),
}

impl Conn {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(bytes).await.map(drop),
            Conn::Tcp(s, _) => {
                s.write_all(bytes).await?;
                // TLS holds what it was given until flushed.
                s.flush().await
            }
        }
    }

    /// The next STUN message or ChannelData packet from the server.
    async fn recv(&mut self) -> std::io::Result<Vec<u8>> {
        match self {
            Conn::Udp(s) => {
                let mut buf = vec![0u8; stun::MAX_LEN];
                let n = s.recv(&mut buf).await?;
                buf.truncate(n);
                Ok(buf)
            }
            Conn::Tcp(s, pending) => loop {
                if let Some(len) = stun::framed_len(pending) {
                    if len > stun::MAX_LEN {
                        return Err(std::io::Error::other("oversized TURN frame"));
                    }
                    if pending.len() >= len {
                        return Ok(pending.drain(..len).collect());
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                pending.extend_from_slice(&chunk[..n]);
            },
        }
    }
}

/// The long-term credential state: what every request after the first carries.
struct Auth {
    username: String,
    realm: String,
    nonce: String,
    key: [u8; 16],
}

impl Auth {
    fn sign(&self, b: Builder) -> Vec<u8> {
        b.attr(attr::USERNAME, self.username.as_bytes())
            .attr(attr::REALM, self.realm.as_bytes())
            .attr(attr::NONCE, self.nonce.as_bytes())
            .integrity(&self.key)
            .build()
    }
}

/// A transaction ID no other request of this process has.
fn tid() -> [u8; 12] {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut t = [0u8; 12];
    let n =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    t[..8].copy_from_slice(&n.to_be_bytes());
    t[8..].copy_from_slice(&NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_be_bytes());
    t
}

/// The server's host and port for `transport` from `server`'s URLs
/// (`turn:host:port?transport=udp|tcp`, `turns:host:port?transport=tcp`).
fn server_at(server: &IceServer, transport: TurnTransport) -> Option<(String, u16)> {
    let (scheme, want) = match transport {
        TurnTransport::Udp => ("turn:", "transport=udp"),
        TurnTransport::Tcp => ("turn:", "transport=tcp"),
        TurnTransport::Tls => ("turns:", "transport=tcp"),
    };
    server.urls.iter().find(|u| u.starts_with(scheme) && u.ends_with(want)).and_then(|u| {
        let hostport = u.strip_prefix(scheme)?.split('?').next()?;
        let (host, port) = hostport.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some((host.to_string(), port.parse().ok()?))
    })
}

/// A request and its answer (UDP: sent again until answered).
async fn transact(conn: &mut Conn, tid: [u8; 12], bytes: &[u8]) -> Result<Vec<u8>, ClientError> {
    let deadline = tokio::time::Instant::now() + ANSWER;
    let mut resend = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= resend {
            conn.send(bytes).await.map_err(|e| ClientError::Connect(format!("TURN: {e}")))?;
            resend = tokio::time::Instant::now()
                + if matches!(conn, Conn::Udp(_)) { Duration::from_millis(500) } else { ANSWER };
        }
        let got = tokio::time::timeout_at(deadline.min(resend), conn.recv()).await;
        match got {
            Ok(Ok(reply)) if Message::parse(&reply).is_some_and(|m| m.tid == tid) => return Ok(reply),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ClientError::Connect(format!("TURN: {e}"))),
            Err(_) if tokio::time::Instant::now() >= deadline => {
                return Err(ClientError::Connect("TURN: no answer".into()))
            }
            Err(_) => {}
        }
    }
}

fn error_code(m: &Message) -> Option<u16> {
    m.get(attr::ERROR_CODE).filter(|v| v.len() >= 4).map(|v| u16::from(v[2]) * 100 + u16::from(v[3]))
}

/// The media's way through a TURN allocation.
pub(crate) struct TurnLink {
    tx: mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>,
    /// The allocation's relayed address: ICE's relayed candidate.
    pub relayed: SocketAddr,
}

impl TurnLink {
    /// Allocates over `transport` (from `ip`) on the first of `servers` that offers it;
    /// what peers send comes on the receiver, with the peer's address.
    pub async fn allocate(
        servers: &[IceServer],
        transport: TurnTransport,
        ip: std::net::IpAddr,
    ) -> Result<(TurnLink, mpsc::Receiver<(SocketAddr, Vec<u8>)>), ClientError> {
        let (server, (host, port)) = servers
            .iter()
            .find_map(|s| Some((s, server_at(s, transport)?)))
            .ok_or_else(|| ClientError::Connect(format!("the server offers no TURN over {transport:?}")))?;
        let io = |e: std::io::Error| ClientError::Connect(format!("TURN {host}:{port}: {e}"));
        let at = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(io)?
            .next()
            .ok_or_else(|| ClientError::Connect(format!("TURN {host}: no address")))?;
        let tcp = || async {
            let s = tokio::time::timeout(ANSWER, TcpStream::connect(at))
                .await
                .map_err(|_| ClientError::Connect(format!("TURN {at}: connect timed out")))?
                .map_err(io)?;
            let _ = s.set_nodelay(true);
            Ok::<_, ClientError>(s)
        };
        let mut conn = match transport {
            TurnTransport::Udp => {
                let s = UdpSocket::bind(SocketAddr::new(ip, 0)).await.map_err(io)?;
                s.connect(at).await.map_err(io)?;
                Conn::Udp(s)
            }
            TurnTransport::Tcp => Conn::Tcp(Box::new(tcp().await?), Vec::new()),
            TurnTransport::Tls => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| ClientError::Connect(format!("TURN {host}: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config()?);
                let s = tokio::time::timeout(ANSWER, connector.connect(name, tcp().await?))
                    .await
                    .map_err(|_| ClientError::Connect(format!("TURN {at}: TLS handshake timed out")))?
                    .map_err(io)?;
                Conn::Tcp(Box::new(s), Vec::new())
            }
        };
        let udp_transport = [17u8, 0, 0, 0];
        let t = tid();
        let first = Builder::new(method::ALLOCATE, Class::Request, t)
            .attr(attr::REQUESTED_TRANSPORT, &udp_transport)
            .build();
        let reply = transact(&mut conn, t, &first).await?;
        let m = Message::parse(&reply).ok_or_else(|| ClientError::Connect("TURN: bad answer".into()))?;
        let (Some(realm), Some(nonce)) = (m.text(attr::REALM), m.text(attr::NONCE)) else {
            return Err(ClientError::Connect("TURN: no realm and nonce offered".into()));
        };
        let key = stun::long_term_key(&server.username, realm, &server.credential);
        let auth = Auth { username: server.username.clone(), realm: realm.into(), nonce: nonce.into(), key };
        let t = tid();
        let second = auth.sign(
            Builder::new(method::ALLOCATE, Class::Request, t).attr(attr::REQUESTED_TRANSPORT, &udp_transport),
        );
        let reply = transact(&mut conn, t, &second).await?;
        let m = Message::parse(&reply).ok_or_else(|| ClientError::Connect("TURN: bad answer".into()))?;
        if m.class != Class::Success {
            return Err(ClientError::Connect(format!("TURN allocation refused ({:?})", error_code(&m))));
        }
        let relayed = m
            .xor_addresses(attr::XOR_RELAYED_ADDRESS)
            .first()
            .copied()
            .ok_or_else(|| ClientError::Connect("TURN: no relayed address".into()))?;
        let (tx, out) = mpsc::unbounded_channel();
        let (to_media, from_turn) = mpsc::channel(1024);
        tokio::spawn(run(conn, auth, out, to_media));
        Ok((TurnLink { tx, relayed }, from_turn))
    }

    /// Sends `data` to `peer` from the relayed address.
    pub fn send(&self, peer: SocketAddr, data: Vec<u8>) {
        let _ = self.tx.send((peer, data));
    }
}

/// The allocation's life: packets out as ChannelData once the peer's channel is bound
/// (Send indications until then), packets in to the media, refreshes.
async fn run(
    mut conn: Conn,
    auth: Auth,
    mut out: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
    to_media: mpsc::Sender<(SocketAddr, Vec<u8>)>,
) {
    let tcp = matches!(conn, Conn::Tcp(..));
    let mut channels: HashMap<SocketAddr, (u16, bool)> = HashMap::new();
    let mut peers: HashMap<u16, SocketAddr> = HashMap::new();
    // ChannelBind requests in flight: transaction → peer.
    let mut binding: HashMap<[u8; 12], SocketAddr> = HashMap::new();
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.tick().await;
    loop {
        tokio::select! {
            packet = out.recv() => {
                let Some((peer, data)) = packet else { break };
                let next = 0x4000 + channels.len() as u16;
                let (channel, bound) = *channels.entry(peer).or_insert((next, false));
                if bound {
                    let _ = conn.send(&stun::channel_data(channel, &data, tcp)).await;
                    continue;
                }
                if peers.insert(channel, peer).is_none() {
                    let t = tid();
                    binding.insert(t, peer);
                    let bind = auth.sign(
                        Builder::new(method::CHANNEL_BIND, Class::Request, t)
                            .attr(attr::CHANNEL_NUMBER, &[(channel >> 8) as u8, channel as u8, 0, 0])
                            .xor_address(attr::XOR_PEER_ADDRESS, peer),
                    );
                    let _ = conn.send(&bind).await;
                }
                let send = Builder::new(method::SEND, Class::Indication, tid())
                    .xor_address(attr::XOR_PEER_ADDRESS, peer)
                    .attr(attr::DATA, &data)
                    .build();
                let _ = conn.send(&send).await;
            }
            got = conn.recv() => {
                let Ok(bytes) = got else { break };
                if let Some((channel, payload)) = stun::parse_channel_data(&bytes) {
                    if let Some(peer) = peers.get(&channel) {
                        let _ = to_media.try_send((*peer, payload.to_vec()));
                    }
                    continue;
                }
                let Some(m) = Message::parse(&bytes) else { continue };
                match (m.method, m.class) {
                    (method::DATA, Class::Indication) => {
                        if let (Some(peer), Some(data)) = (m.xor_addresses(attr::XOR_PEER_ADDRESS).first(), m.get(attr::DATA)) {
                            let _ = to_media.try_send((*peer, data.to_vec()));
                        }
                    }
                    // A channel is usable once bound.
                    (method::CHANNEL_BIND, Class::Success) => {
                        if let Some(c) = binding.remove(&m.tid).and_then(|peer| channels.get_mut(&peer)) {
                            c.1 = true;
                        }
                    }
                    _ => {}
                }
            }
            _ = refresh.tick() => {
                let lifetime = 600u32.to_be_bytes();
                let _ = conn.send(&auth.sign(Builder::new(method::REFRESH, Class::Request, tid()).attr(attr::LIFETIME, &lifetime))).await;
                for (peer, (channel, _)) in &channels {
                    let bind = auth.sign(
                        Builder::new(method::CHANNEL_BIND, Class::Request, tid())
                            .attr(attr::CHANNEL_NUMBER, &[(channel >> 8) as u8, *channel as u8, 0, 0])
                            .xor_address(attr::XOR_PEER_ADDRESS, *peer),
                    );
                    let _ = conn.send(&bind).await;
                }
            }
        }
    }
}
