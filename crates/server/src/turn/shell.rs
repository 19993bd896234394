//! The TURN server's sockets: UDP and TCP on one port (RFC 8656 §3.1), TLS on a port of
//! its own and on the signaling listener's (which hands its TURN clients over), a task
//! per TCP or TLS client splitting its stream into STUN messages and ChannelData, and one
//! UDP socket per allocation (its relayed address) whose datagrams come back to the one
//! task that owns the [`Turn`] state.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use super::metrics::TurnMetrics;
use super::{stun, Client, Output, Settings, Transport, Turn, TurnStats};

/// TCP and TLS clients at once; more are refused.
const MAX_TCP_CLIENTS: usize = 4096;
/// ... and from one address (a /64 for IPv6 counts as one), so that one host cannot
/// take every place.
const TCP_CLIENTS_PER_ADDRESS: usize = 32;
/// TLS handshakes under way at once from one address on TURN's own TLS port.
const HANDSHAKES_PER_ADDRESS: usize = 8;
/// A TCP client must send something this often (allocations refresh every few minutes,
/// permissions every five; media flows far more often).
const TCP_IDLE: Duration = Duration::from_secs(330);
/// Packets queued for one TCP client (past it one is dropped, as UDP would lose it).
const QUEUE: usize = 512;
/// Most bytes written to a stream client at once (a TLS record's worth).
const WRITE_BATCH: usize = 16 * 1024;
/// TLS handshakes under way at once on the TURN/TLS port, and how long one may take.
const HANDSHAKES: usize = 256;
const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

/// A client's stream (TCP, or TLS the shell or the signaling listener terminated).
pub trait ClientStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> ClientStream for S {}

/// What the TURN task hears from its helpers.
enum Event {
    /// A STUN message or ChannelData from a TCP client.
    Frame(Client, Vec<u8>),
    /// A TCP client's connection closed.
    Gone(Client),
    /// A datagram from a peer at an allocation's relayed address.
    Peer(SocketAddr, SocketAddr, Vec<u8>),
    /// A TLS client whose handshake is done (here or at the signaling listener).
    Stream(Box<dyn ClientStream>, SocketAddr),
}

/// The way to hand the TURN server a client whose TLS another listener terminated.
#[derive(Clone)]
pub struct TurnStreams(mpsc::Sender<Event>);

impl TurnStreams {
    /// Gives it the decrypted stream of a TURN client at `peer` (dropped, so closed,
    /// when the server is gone or too busy).
    pub fn hand_over(&self, stream: impl ClientStream, peer: SocketAddr) {
        let _ = self.0.try_send(Event::Stream(Box::new(stream), peer));
    }
}

/// A running TURN server.
pub struct TurnServer {
    /// Where it listens (UDP and TCP, one port).
    pub local: SocketAddr,
    /// Its TLS port, if it has one of its own.
    pub tls_local: Option<SocketAddr>,
    streams: TurnStreams,
    metrics: Arc<TurnMetrics>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TurnServer {
    /// Binds UDP and TCP on `bind` (port 0: one free for both) and serves; allocations
    /// get relayed sockets on `relay_ip`. With `tls`, TURN over TLS on that address too
    /// (port 0: any). Its figures go to `metrics` every second.
    pub async fn start(
        bind: SocketAddr,
        relay_ip: IpAddr,
        tls: Option<(SocketAddr, crate::tls::TlsAcceptor)>,
        settings: Settings,
        metrics: Arc<TurnMetrics>,
    ) -> std::io::Result<Self> {
        let (udp, tcp) = bind_both(bind).await?;
        let local = udp.local_addr()?;
        let (tx, rx) = mpsc::channel::<Event>(4096);
        let streams = TurnStreams(tx.clone());
        let mut tasks =
            vec![tokio::spawn(run(Turn::new(settings), udp, tcp, relay_ip, metrics.clone(), tx, rx))];
        let mut tls_local = None;
        if let Some((at, acceptor)) = tls {
            let listener = TcpListener::bind(at).await?;
            tls_local = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(serve_tls_port(listener, acceptor, streams.clone())));
        }
        tracing::info!(%local, tls = ?tls_local, "TURN listening (UDP and TCP, TLS)");
        Ok(TurnServer { local, tls_local, streams, metrics, tasks })
    }

    /// The way for another TLS listener to hand over its TURN clients.
    pub fn streams(&self) -> TurnStreams {
        self.streams.clone()
    }

    /// Its counters (as of the last second).
    pub fn stats(&self) -> TurnStats {
        self.metrics.stats()
    }

    /// Stops it.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The TURN/TLS port: handshakes (a bounded number at once, and from one address, each
/// in bounded time), then the decrypted stream to the TURN task.
async fn serve_tls_port(listener: TcpListener, acceptor: crate::tls::TlsAcceptor, streams: TurnStreams) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES));
    let by_address = crate::limit::PendingCounts::new(HANDSHAKES_PER_ADDRESS as u32);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(place) = by_address.admit(peer.ip()) else {
            continue;
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, streams) = (acceptor.clone(), streams.clone());
        tokio::spawn(async move {
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIME, acceptor.accept(tcp)).await {
                streams.hand_over(tls, peer);
            }
            drop((permit, place));
        });
    }
}

/// The stream clients' queues, and how many each address has.
#[derive(Default)]
struct StreamClients {
    queues: HashMap<Client, mpsc::Sender<Vec<u8>>>,
    per_address: HashMap<IpAddr, usize>,
}

impl StreamClients {
    /// A queue for `client`, unless the server or its address is at its limit (or it is
    /// here already).
    fn admit(&mut self, client: Client) -> Option<mpsc::Receiver<Vec<u8>>> {
        let key = crate::limit::address_key(client.addr.ip());
        let n = self.per_address.get(&key).copied().unwrap_or(0);
        if self.queues.len() >= MAX_TCP_CLIENTS
            || n >= TCP_CLIENTS_PER_ADDRESS
            || self.queues.contains_key(&client)
        {
            return None;
        }
        let (out_tx, out_rx) = mpsc::channel(QUEUE);
        self.queues.insert(client, out_tx);
        self.per_address.insert(key, n + 1);
        Some(out_rx)
    }

    fn remove(&mut self, client: &Client) {
        if self.queues.remove(client).is_some() {
            let key = crate::limit::address_key(client.addr.ip());
            if let Some(n) = self.per_address.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.per_address.remove(&key);
                }
            }
        }
    }
}

/// UDP and TCP on the same port; with port 0 the UDP socket's port, tried a few times
/// (TCP may find it taken).
async fn bind_both(bind: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..8 {
        let udp = UdpSocket::bind(bind).await?;
        let at = SocketAddr::new(bind.ip(), udp.local_addr()?.port());
        match TcpListener::bind(at).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if bind.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port free for both UDP and TCP")))
}

struct Relayed {
    socket: Arc<UdpSocket>,
    reader: tokio::task::JoinHandle<()>,
}

async fn run(
    mut turn: Turn,
    udp: UdpSocket,
    tcp: TcpListener,
    relay_ip: IpAddr,
    metrics: Arc<TurnMetrics>,
    tx: mpsc::Sender<Event>,
    mut rx: mpsc::Receiver<Event>,
) {
    let mut tcp_clients = StreamClients::default();
    // A stream client (TCP or TLS): its queue, and the task that reads and writes it.
    let add = |clients: &mut StreamClients, stream: Box<dyn ClientStream>, client: Client| {
        if let Some(out_rx) = clients.admit(client) {
            tokio::spawn(serve_stream(stream, client, tx.clone(), out_rx));
        }
    };
    let mut relayed: HashMap<SocketAddr, Relayed> = HashMap::new();
    let mut buf = vec![0u8; stun::MAX_LEN];
    // Expiry, and the figures for /metrics (at once too when allocations come or go).
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut live = 0usize;
    loop {
        let now = Instant::now();
        let now_secs = crate::clock::now_ms() / 1000;
        // Opens the relayed socket of a new allocation.
        let mut bind = || {
            let std = std::net::UdpSocket::bind(SocketAddr::new(relay_ip, 0)).ok()?;
            std.set_nonblocking(true).ok()?;
            let socket = Arc::new(UdpSocket::from_std(std).ok()?);
            let addr = socket.local_addr().ok()?;
            let reader = tokio::spawn(read_peers(socket.clone(), addr, tx.clone()));
            relayed.insert(addr, Relayed { socket, reader });
            Some(addr)
        };
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    let client = Client { transport: Transport::Udp, addr: from };
                    turn.handle_client(now, now_secs, client, &buf[..n], &mut bind);
                }
            }
            accepted = tcp.accept() => {
                if let Ok((stream, peer)) = accepted {
                    let _ = stream.set_nodelay(true);
                    add(&mut tcp_clients, Box::new(stream), Client { transport: Transport::Tcp, addr: peer });
                }
            }
            Some(ev) = rx.recv() => match ev {
                Event::Frame(client, data) => turn.handle_client(now, now_secs, client, &data, &mut bind),
                Event::Gone(client) => {
                    tcp_clients.remove(&client);
                    turn.client_gone(client);
                }
                Event::Stream(stream, peer) => {
                    add(&mut tcp_clients, stream, Client { transport: Transport::Tls, addr: peer });
                }
                Event::Peer(at, peer, data) => turn.handle_peer(now, at, peer, &data),
            },
            _ = tick.tick() => {
                turn.expire(now);
                metrics.publish(turn.stats(), turn.live_by_transport());
            }
        }
        // (By count, which costs nothing per packet; the tick catches a swap of one
        // transport's allocation for another's.)
        if turn.len() != live {
            live = turn.len();
            metrics.publish(turn.stats(), turn.live_by_transport());
        }
        while let Some(out) = turn.poll() {
            match out {
                Output::ToClient(c, bytes) => match c.transport {
                    Transport::Udp => {
                        let _ = udp.try_send_to(&bytes, c.addr);
                    }
                    Transport::Tcp | Transport::Tls => {
                        if let Some(q) = tcp_clients.queues.get(&c) {
                            let _ = q.try_send(bytes);
                        }
                    }
                },
                Output::ToPeer { relayed: at, peer, data } => {
                    if let Some(r) = relayed.get(&at) {
                        let _ = r.socket.try_send_to(&data, peer);
                    }
                }
                Output::Release(at) => {
                    if let Some(r) = relayed.remove(&at) {
                        r.reader.abort();
                    }
                }
            }
        }
    }
}

/// Datagrams from peers at a relayed socket.
async fn read_peers(socket: Arc<UdpSocket>, at: SocketAddr, tx: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; stun::MAX_LEN];
    while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
        if tx.send(Event::Peer(at, peer, buf[..n].to_vec())).await.is_err() {
            return;
        }
    }
}

/// A TCP or TLS client: its stream cut into STUN messages and ChannelData (each knows
/// its own length), and what the server sends it.
async fn serve_stream(
    stream: Box<dyn ClientStream>,
    client: Client,
    tx: mpsc::Sender<Event>,
    mut out: mpsc::Receiver<Vec<u8>>,
) {
    let (mut r, mut w) = tokio::io::split(stream);
    let reading = async {
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = vec![0u8; 8192];
        loop {
            while let Some(len) = stun::framed_len(&buf) {
                if len > stun::MAX_LEN {
                    return;
                }
                if buf.len() < len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..len).collect();
                if tx.send(Event::Frame(client, frame)).await.is_err() {
                    return;
                }
            }
            match tokio::time::timeout(TCP_IDLE, r.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
    };
    let writing = async {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while let Some(bytes) = out.recv().await {
            // What else is queued goes out in the same write: one system call, and over
            // TLS one record, for a burst rather than one per packet.
            batch.clear();
            batch.extend_from_slice(&bytes);
            while batch.len() < WRITE_BATCH {
                match out.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            // TLS holds what it was given until flushed.
            if w.write_all(&batch).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = reading => {}
        _ = writing => {}
    }
    let _ = tx.send(Event::Gone(client)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_a_bounded_share_of_the_stream_places() {
        let mut clients = StreamClients::default();
        let at = |ip: &str, port: u16| Client {
            transport: Transport::Tls,
            addr: SocketAddr::new(ip.parse().unwrap(), port),
        };
        for port in 0..TCP_CLIENTS_PER_ADDRESS as u16 {
            assert!(clients.admit(at("192.0.2.1", 1000 + port)).is_some());
        }
        assert!(clients.admit(at("192.0.2.1", 5000)).is_none(), "that address is at its limit");
        assert!(clients.admit(at("192.0.2.2", 1000)).is_some(), "another address is not");
        assert!(clients.admit(at("192.0.2.2", 1000)).is_none(), "one client is not let in twice");
        clients.remove(&at("192.0.2.1", 1000));
        assert!(clients.admit(at("192.0.2.1", 5000)).is_some(), "a place freed is a place again");
    }
}
