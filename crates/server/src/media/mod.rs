//! The media relay (SFU) on str0m: one UDP socket for every media session,
//! demultiplexed by ICE (a connection claims a packet with `Rtc::accepts`). Each party
//! of a session (both parties of a connected call; the members of a room) holds one
//! ICE-lite WebRTC connection (DTLS-SRTP, RTP/RTCP mux) with the relay. Every line a
//! party sends on is a *source*, and each other party receives it on a line of its own
//! (see [`feeds`]): its own `sendrecv` lines first, then `sendonly` lines the relay adds
//! and offers to it over signaling ([`RelayEvent::Offer`]). Keyframe requests travel
//! from a line back to its source, a receiver that starts getting a video source gets
//! a keyframe asked for at once, and a party whose media stops past
//! `media_timeout_ms` is reported ([`RelayEvent::Lost`]).
//!
//! The decisions are made by the sans-IO [`relay::Relay`]; this module is its UDP
//! shell. What the core and the relay say to each other is [`crate::media_link`]. The relay runs as shards, one thread per core by default (as mediasoup runs a
//! worker per core): each shard owns a UDP socket on a port of its own and the
//! sessions placed on it, so forwarding never crosses threads and needs no lock. A
//! session is placed when its first offer arrives, on the shard with the fewest
//! sessions; every party of it is answered with that shard's address. The core talks
//! to the shards only through [`MediaCmd`] and [`RelayEvent`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::ids::Sid;
pub use crate::media_link::{MediaCmd, PartyKey, RelayEvent, Reply};

mod feeds;
mod forward;
mod layers;
pub mod metrics;
pub mod relay;
mod sdp;
mod speakers;
mod tcp;
mod udp;

pub use metrics::{MediaMetrics, ShardMetrics};
pub use relay::{Relay, RelayStats};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The UDP socket.
    #[error("cannot bind media socket {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The IO error.
        source: std::io::Error,
    },
}

/// How the relay's UDP sockets are set up.
#[derive(Debug, Clone)]
pub struct SocketSettings {
    /// Where shard 0 binds; shard `i` binds port + `i` (or an ephemeral port when the
    /// port is 0).
    pub bind: SocketAddr,
    /// What clients are told to send to (default: the bound address); with a port,
    /// shard `i` advertises port + `i`.
    pub advertise: Option<crate::config::Advertise>,
    /// Wanted `SO_RCVBUF` and `SO_SNDBUF`, bytes.
    pub buffer_bytes: usize,
    /// Relay shards (threads, each with its own socket and sessions); 0: one per core.
    pub shards: usize,
    /// Passive ICE-TCP (RFC 6544) on this port of the bind address (shard `i`: port +
    /// `i`; 0: an ephemeral port per shard), advertised beside UDP; `None`: UDP only.
    pub tcp_port: Option<u16>,
}

/// One relay shard: a thread owning a socket and the sessions placed on it.
struct Shard {
    tx: mpsc::UnboundedSender<MediaCmd>,
    /// Sessions placed on it.
    sessions: usize,
    /// Its thread, joined at shutdown.
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Handle to the relay shards. A session's parties all live on one shard (forwarding
/// never crosses threads); a new session goes to the shard with the fewest sessions.
#[derive(Clone)]
pub struct MediaRelay {
    shards: Arc<std::sync::Mutex<Placement>>,
    /// The UDP address of each shard, as advertised in its answers.
    pub advertised: Vec<SocketAddr>,
    /// The ICE-TCP address of each shard, as advertised (empty without ICE-TCP).
    pub advertised_tcp: Vec<SocketAddr>,
}

struct Placement {
    shards: Vec<Shard>,
    by_sid: std::collections::HashMap<Sid, usize>,
}

/// Datagrams taken per turn of a shard's loop before the relay's timers and commands
/// get a turn ...
const TURN_DATAGRAMS: usize = 64;
/// ... and no longer than this (a burst of DTLS handshakes costs about 0.5 ms a
/// datagram): what a turn leaves is taken in the next.
const TURN_TIME: Duration = Duration::from_millis(2);

impl MediaRelay {
    /// Binds one socket per shard, advertises `advertise` (or the bound addresses), and
    /// starts one thread per shard, each reporting on `events` and publishing its
    /// figures to `metrics`.
    pub async fn start(
        socket: SocketSettings,
        media_timeout: Duration,
        events: mpsc::UnboundedSender<RelayEvent>,
        metrics: Arc<MediaMetrics>,
    ) -> Result<Self, MediaError> {
        init_crypto();
        let count = match socket.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let cert = switchboard_dtls::certificate();
        if cert.is_none() {
            tracing::warn!("could not generate the relay's DTLS certificate; each connection makes its own");
        }
        let shard_metrics = metrics.init_shards(count);
        let mut shards = Vec::with_capacity(count);
        let mut advertised = Vec::with_capacity(count);
        let mut advertised_tcp = Vec::new();
        for (i, m) in shard_metrics.into_iter().enumerate() {
            let offset = u16::try_from(i).unwrap_or(u16::MAX);
            let mut bind = socket.bind;
            if bind.port() != 0 {
                bind.set_port(bind.port().saturating_add(offset));
            }
            let udp = bind_socket(bind, socket.buffer_bytes)
                .map_err(|source| MediaError::Bind { addr: bind, source })?;
            let local = udp.local_addr().map_err(|source| MediaError::Bind { addr: bind, source })?;
            m.port.store(u64::from(local.port()), Ordering::Relaxed);
            let advertise = socket.advertise.map(|mut a| {
                a.port = a.port.map(|p| p.saturating_add(offset));
                a
            });
            let addr = crate::config::Advertise::address(advertise, local);
            let mut relay = Relay::new(addr, cert.clone(), media_timeout);
            let tcp = match socket.tcp_port {
                Some(port) => {
                    let at =
                        SocketAddr::new(bind.ip(), if port == 0 { 0 } else { port.saturating_add(offset) });
                    let listener = tcp::bind(at).map_err(|source| MediaError::Bind { addr: at, source })?;
                    let bound =
                        listener.local_addr().map_err(|source| MediaError::Bind { addr: at, source })?;
                    // Advertised at the media address clients reach, on the bound port.
                    let reach = SocketAddr::new(addr.ip(), bound.port());
                    relay.set_tcp(reach);
                    advertised_tcp.push(reach);
                    tracing::info!(shard = i, local = %bound, advertised = %reach, "ICE-TCP listening");
                    Some(listener)
                }
                None => None,
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let events = events.clone();
            let thread = std::thread::Builder::new()
                .name(format!("relay-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt,
                        Err(e) => return tracing::error!(error = %e, shard = i, "relay shard cannot start"),
                    };
                    rt.block_on(async move {
                        let tcp = match tcp.map(tcp::TcpIce::new).transpose() {
                            Ok(t) => t,
                            Err(e) => {
                                return tracing::error!(error = %e, shard = i, "relay shard cannot use its TCP listener")
                            }
                        };
                        match UdpSocket::from_std(udp) {
                            Ok(udp) => run(udp, tcp, relay, rx, events, m).await,
                            Err(e) => {
                                tracing::error!(error = %e, shard = i, "relay shard cannot use its socket")
                            }
                        }
                    });
                })
                .map_err(|source| MediaError::Bind { addr: bind, source })?;
            tracing::info!(shard = i, %local, advertised = %addr, "media relay shard listening");
            shards.push(Shard { tx, sessions: 0, thread: Some(thread) });
            advertised.push(addr);
        }
        let placement = Placement { shards, by_sid: std::collections::HashMap::new() };
        Ok(Self { shards: Arc::new(std::sync::Mutex::new(placement)), advertised, advertised_tcp })
    }

    /// Stops every shard (their sessions end, their sockets close) and waits for their
    /// threads.
    pub async fn shutdown(&self) {
        let threads: Vec<std::thread::JoinHandle<()>> = match self.shards.lock() {
            Ok(mut p) => p
                .shards
                .iter_mut()
                .filter_map(|s| {
                    // A closed channel ends the shard's loop.
                    let (closed, _) = mpsc::unbounded_channel();
                    s.tx = closed;
                    s.thread.take()
                })
                .collect(),
            Err(_) => return,
        };
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    /// Sends a command to the shard of its session; a session's first offer places it
    /// on the least loaded shard.
    pub fn send(&self, cmd: MediaCmd) {
        let Ok(mut p) = self.shards.lock() else { return };
        let sid = cmd.sid().clone();
        let shard = match p.by_sid.get(&sid) {
            Some(i) => *i,
            // A room's video subscriptions are set at the join, before any offer: they
            // place the session too.
            None if matches!(
                cmd,
                MediaCmd::Offer { .. } | MediaCmd::VideoFrom { .. } | MediaCmd::Room { .. }
            ) =>
            {
                // A shard whose thread is gone (it panicked) takes no new sessions.
                let Some(i) = (0..p.shards.len())
                    .filter(|i| !p.shards[*i].tx.is_closed())
                    .min_by_key(|i| p.shards[*i].sessions)
                else {
                    tracing::error!("every media relay shard has stopped; media cannot start");
                    return;
                };
                p.shards[i].sessions += 1;
                p.by_sid.insert(sid.clone(), i);
                i
            }
            // Nothing of this session is on any shard.
            None => return,
        };
        if matches!(cmd, MediaCmd::End { .. }) {
            p.by_sid.remove(&sid);
            p.shards[shard].sessions = p.shards[shard].sessions.saturating_sub(1);
        }
        if p.shards[shard].tx.send(cmd).is_err() {
            tracing::error!(shard, %sid, "media relay shard has stopped; this session's media is lost");
        }
    }
}

/// Installs the process's default crypto provider for WebRTC (once): str0m's, with
/// the DTLS configuration shared by every relay connection (`switchboard_dtls`).
pub fn init_crypto() {
    switchboard_dtls::install();
}

/// Binds the UDP socket with the buffer sizes asked for. The kernel caps them at
/// `net.core.rmem_max` / `wmem_max`; as root the cap is lifted (`SO_RCVBUFFORCE`).
fn bind_socket(bind: SocketAddr, buffer_bytes: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if buffer_bytes > 0 {
        let _ = socket.set_recv_buffer_size(buffer_bytes);
        let _ = socket.set_send_buffer_size(buffer_bytes);
        force_buffers(&socket, buffer_bytes);
        // Linux reports twice the usable size (it counts its own bookkeeping).
        let got_rcv = socket.recv_buffer_size().unwrap_or(0) / 2;
        let got_snd = socket.send_buffer_size().unwrap_or(0) / 2;
        if got_rcv < buffer_bytes || got_snd < buffer_bytes {
            tracing::warn!(
                wanted = buffer_bytes,
                receive = got_rcv,
                send = got_snd,
                "media socket buffers are smaller than configured: raise net.core.rmem_max and wmem_max"
            );
        } else {
            tracing::debug!(receive = got_rcv, send = got_snd, "media socket buffers");
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&bind.into())?;
    Ok(socket.into())
}

#[cfg(target_os = "linux")]
fn force_buffers(socket: &socket2::Socket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt reads `size` (a c_int) for its length; a failure (no
        // CAP_NET_ADMIN) leaves the size set above.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn force_buffers(_: &socket2::Socket, _: usize) {}

/// A shard's sockets: the UDP socket with its send batch, and ICE-TCP if on.
struct Io {
    socket: UdpSocket,
    out: udp::SendBatch,
    tcp: Option<tcp::TcpIce>,
}

/// The next ICE-TCP client, or never without ICE-TCP.
async fn accept_tcp(tcp: Option<&tcp::TcpIce>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match tcp {
        Some(t) => t.accept().await,
        None => std::future::pending().await,
    }
}

/// What an ICE-TCP connection says next, or never without ICE-TCP.
async fn from_tcp(rx: Option<&mut mpsc::Receiver<tcp::TcpIn>>) -> Option<tcp::TcpIn> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The relay task: datagrams, TCP frames, commands and timers into the core; its
/// transmits onto the socket (or the TCP connection they are for), its events to the
/// owner.
async fn run(
    socket: UdpSocket,
    tcp: Option<(tcp::TcpIce, mpsc::Receiver<tcp::TcpIn>)>,
    mut relay: Relay,
    mut rx: mpsc::UnboundedReceiver<MediaCmd>,
    events: mpsc::UnboundedSender<RelayEvent>,
    metrics: Arc<ShardMetrics>,
) {
    let (tcp, mut tcp_rx) = match tcp {
        Some((t, r)) => (Some(t), Some(r)),
        None => (None, None),
    };
    let mut io = Io { socket, out: udp::SendBatch::default(), tcp };
    let mut incoming = udp::RecvBatch::new();
    let mut published = Instant::now();
    loop {
        let next = relay.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = io.socket.readable(), if !incoming.has_pending() => {
                if r.is_ok() {
                    take_datagrams(&mut io, &mut incoming, &mut relay, &metrics);
                }
            }
            // Datagrams a turn had no time for: first thing in the next.
            _ = std::future::ready(()), if incoming.has_pending() => {
                take_datagrams(&mut io, &mut incoming, &mut relay, &metrics);
            }
            accepted = accept_tcp(io.tcp.as_ref()) => {
                if let (Ok((stream, peer)), Some(tcp)) = (accepted, io.tcp.as_mut()) {
                    tcp.serve(stream, peer);
                    metrics.tcp_connections.store(tcp.len() as u64, Ordering::Relaxed);
                }
            }
            Some(msg) = from_tcp(tcp_rx.as_mut()) => {
                let started = Instant::now();
                match msg {
                    tcp::TcpIn::Frame(peer, data) => {
                        let claimed = relay.handle_tcp(started, peer, &data);
                        if let Some(tcp) = io.tcp.as_mut() {
                            tcp.claimed(peer, claimed);
                        }
                        flush(&mut io, &mut relay, &metrics);
                    }
                    tcp::TcpIn::Closed(peer) => {
                        if let Some(tcp) = io.tcp.as_mut() {
                            tcp.closed(peer);
                        }
                    }
                }
                if let Some(tcp) = io.tcp.as_ref() {
                    metrics.tcp_connections.store(tcp.len() as u64, Ordering::Relaxed);
                }
                metrics.lag(started.elapsed());
            }
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                let started = Instant::now();
                command(&mut relay, cmd);
                flush(&mut io, &mut relay, &metrics);
                metrics.lag(started.elapsed());
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {
                let started = Instant::now();
                relay.handle_timeout(started);
                flush(&mut io, &mut relay, &metrics);
                metrics.lag(started.elapsed());
            }
        }
        while let Some(e) = relay.poll_event() {
            let _ = events.send(e);
        }
        if published.elapsed() > Duration::from_millis(200) {
            published = Instant::now();
            metrics.publish(relay.stats());
        }
    }
}

/// One turn of datagrams: what the socket holds, read in batches, and what they make,
/// sent in batches; bounded in count and time ([`TURN_DATAGRAMS`], [`TURN_TIME`]), so
/// that a burst of DTLS handshakes does not hold up forwarding, timers and commands.
fn take_datagrams(io: &mut Io, incoming: &mut udp::RecvBatch, relay: &mut Relay, metrics: &ShardMetrics) {
    let started = Instant::now();
    let mut taken = 0;
    let mut now = started;
    while taken < TURN_DATAGRAMS && now.duration_since(started) < TURN_TIME {
        if !incoming.has_pending() && incoming.recv(&io.socket).is_err() {
            break;
        }
        if let Some((from, data)) = incoming.take() {
            relay.handle_datagram(now, from, data);
            send(io, relay, metrics);
            taken += 1;
        }
        now = Instant::now();
    }
    flush(io, relay, metrics);
    metrics.lag(started.elapsed());
}

/// Queues what the core has to send (full batches go out at once); TCP frames go to
/// their connection's queue.
fn send(io: &mut Io, relay: &mut Relay, metrics: &ShardMetrics) {
    while let Some(t) = relay.poll_transmit() {
        let dropped = if t.proto == str0m::net::Protocol::Tcp {
            let dropped = io.tcp.as_mut().is_none_or(|tcp| tcp.send(t.destination, t.contents.into()));
            u64::from(dropped)
        } else {
            io.out.push(&io.socket, t)
        };
        if dropped > 0 {
            metrics.send_dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }
}

/// Sends everything the core has to send and what is queued. UDP: a full send buffer
/// drops the datagram, as the network might; it is counted.
fn flush(io: &mut Io, relay: &mut Relay, metrics: &ShardMetrics) {
    send(io, relay, metrics);
    let dropped = io.out.flush(&io.socket);
    if dropped > 0 {
        metrics.send_dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}

fn command(relay: &mut Relay, cmd: MediaCmd) {
    relay.command(Instant::now(), cmd);
}
