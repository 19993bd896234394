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
//! shell: one task owns the socket and the core, and the call core talks to it only
//! through [`MediaCmd`] and [`RelayEvent`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

mod feeds;
pub mod metrics;
pub mod relay;

/// The kinds of media lines (re-exported for [`MediaCmd::AddLine`]).
pub use str0m::media::MediaKind;

pub use metrics::MediaMetrics;
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

/// A party of a media session: `caller` or `callee` in a 1-to-1 call, a member in a room.
pub type PartyKey = String;

/// Commands to the relay.
pub enum MediaCmd {
    /// A party's SDP offer; the reply is the SDP answer or why not. An offer with the
    /// ICE credentials of the party's current connection renegotiates it (a line added
    /// or changed); other offers replace the party's connection (a reconnect).
    Offer {
        /// The session (call id).
        sid: String,
        /// The party.
        party: PartyKey,
        /// The offer.
        sdp: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// A party's answer to the relay's offer ([`RelayEvent::Offer`]).
    Answer {
        /// The session.
        sid: String,
        /// The party.
        party: PartyKey,
        /// The offer answered; an answer to an older one is ignored.
        offer_id: u64,
        /// The answer.
        sdp: String,
    },
    /// A party wants to send `kind` and has no line for it: the relay adds a
    /// `sendrecv` line and offers it ([`RelayEvent::Offer`]).
    AddLine {
        /// The session.
        sid: String,
        /// The party.
        party: PartyKey,
        /// Audio or video.
        kind: MediaKind,
    },
    /// A party left a session that goes on.
    Leave {
        /// The session.
        sid: String,
        /// The party.
        party: PartyKey,
    },
    /// The session is over.
    End {
        /// The session.
        sid: String,
    },
}

/// What the relay tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayEvent {
    /// A party's media stopped past the media timeout.
    Lost {
        /// The session.
        sid: String,
        /// The party.
        party: PartyKey,
    },
    /// The relay needs lines added to a party's connection (another party sends more
    /// than it can receive): send this offer to the party and pass back its answer
    /// with [`MediaCmd::Answer`].
    Offer {
        /// The session.
        sid: String,
        /// The party.
        party: PartyKey,
        /// Identifies this offer; the answer carries it back.
        offer_id: u64,
        /// The offer.
        sdp: String,
    },
}

/// How the relay's UDP socket is set up.
#[derive(Debug, Clone)]
pub struct SocketSettings {
    /// Where it binds.
    pub bind: SocketAddr,
    /// What clients are told to send to (default: the bound address).
    pub advertise: Option<crate::config::Advertise>,
    /// Wanted `SO_RCVBUF` and `SO_SNDBUF`, bytes.
    pub buffer_bytes: usize,
}

/// Handle to the relay task.
#[derive(Clone)]
pub struct MediaRelay {
    tx: mpsc::UnboundedSender<MediaCmd>,
    /// The UDP address the relay advertises in its answers.
    pub advertised: SocketAddr,
}

/// Datagrams taken from the socket per wake-up before the relay's timers and
/// commands get a turn.
const RECV_BATCH: usize = 64;

impl MediaRelay {
    /// Binds the socket, advertises `advertise` (or the bound address), and starts the
    /// task, which reports on `events` and publishes its figures to `metrics`.
    pub async fn start(
        socket: SocketSettings,
        media_timeout: Duration,
        events: mpsc::UnboundedSender<RelayEvent>,
        metrics: Arc<MediaMetrics>,
    ) -> Result<Self, MediaError> {
        static CRYPTO: Once = Once::new();
        CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
        let bind = socket.bind;
        let udp = bind_socket(&socket).map_err(|source| MediaError::Bind { addr: bind, source })?;
        let local = udp.local_addr().map_err(|source| MediaError::Bind { addr: bind, source })?;
        metrics.port.store(u64::from(local.port()), Ordering::Relaxed);
        let advertised = crate::config::Advertise::address(socket.advertise, local);
        // One DTLS certificate for every connection: generating one costs milliseconds,
        // which every new connection would otherwise take out of forwarding.
        let cert = str0m::crypto::from_feature_flags().dtls_provider.generate_certificate();
        if cert.is_none() {
            tracing::warn!("could not generate the relay's DTLS certificate; each connection makes its own");
        }
        let relay = Relay::new(advertised, cert, media_timeout);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(udp, relay, rx, events, metrics));
        tracing::info!(%local, %advertised, "media relay listening");
        Ok(Self { tx, advertised })
    }

    /// Sends a command to the relay.
    pub fn send(&self, cmd: MediaCmd) {
        let _ = self.tx.send(cmd);
    }
}

/// Binds the UDP socket with the buffer sizes asked for. The kernel caps them at
/// `net.core.rmem_max` / `wmem_max`; as root the cap is lifted (`SO_RCVBUFFORCE`).
fn bind_socket(s: &SocketSettings) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(s.bind), Type::DGRAM, Some(Protocol::UDP))?;
    if s.buffer_bytes > 0 {
        let _ = socket.set_recv_buffer_size(s.buffer_bytes);
        let _ = socket.set_send_buffer_size(s.buffer_bytes);
        force_buffers(&socket, s.buffer_bytes);
        // Linux reports twice the usable size (it counts its own bookkeeping).
        let got_rcv = socket.recv_buffer_size().unwrap_or(0) / 2;
        let got_snd = socket.send_buffer_size().unwrap_or(0) / 2;
        if got_rcv < s.buffer_bytes || got_snd < s.buffer_bytes {
            tracing::warn!(
                wanted = s.buffer_bytes,
                receive = got_rcv,
                send = got_snd,
                "media socket buffers are smaller than configured: raise net.core.rmem_max and wmem_max"
            );
        } else {
            tracing::debug!(receive = got_rcv, send = got_snd, "media socket buffers");
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&s.bind.into())?;
    UdpSocket::from_std(socket.into())
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

/// The relay task: datagrams, commands and timers into the core; its transmits onto
/// the socket, its events to the owner.
async fn run(
    socket: UdpSocket,
    mut relay: Relay,
    mut rx: mpsc::UnboundedReceiver<MediaCmd>,
    events: mpsc::UnboundedSender<RelayEvent>,
    metrics: Arc<MediaMetrics>,
) {
    let mut buf = vec![0u8; 2048];
    let mut published = Instant::now();
    loop {
        let next = relay.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = socket.readable() => {
                if r.is_err() {
                    continue;
                }
                let started = Instant::now();
                for _ in 0..RECV_BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => relay.handle_datagram(Instant::now(), from, &buf[..n]),
                        Err(_) => break,
                    }
                    flush(&socket, &mut relay, &metrics);
                }
                metrics.lag(started.elapsed());
            }
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                let started = Instant::now();
                command(&mut relay, cmd);
                flush(&socket, &mut relay, &metrics);
                metrics.lag(started.elapsed());
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {
                let started = Instant::now();
                relay.handle_timeout(started);
                flush(&socket, &mut relay, &metrics);
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

fn command(relay: &mut Relay, cmd: MediaCmd) {
    let now = Instant::now();
    match cmd {
        MediaCmd::Offer { sid, party, sdp, reply } => {
            let _ = reply.send(relay.offer(now, &sid, &party, &sdp));
        }
        MediaCmd::Answer { sid, party, offer_id, sdp } => relay.answer(now, &sid, &party, offer_id, &sdp),
        MediaCmd::AddLine { sid, party, kind } => relay.add_line(now, &sid, &party, kind),
        MediaCmd::Leave { sid, party } => relay.leave(now, &sid, &party),
        MediaCmd::End { sid } => relay.end(&sid),
    }
}

/// Sends what the core has to send. UDP: a full send buffer drops the datagram, as the
/// network might; it is counted.
fn flush(socket: &UdpSocket, relay: &mut Relay, metrics: &MediaMetrics) {
    while let Some(t) = relay.poll_transmit() {
        if socket.try_send_to(&t.contents, t.destination).is_err() {
            metrics.send_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
