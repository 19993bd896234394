//! Media for the Rust SDK: one WebRTC connection (str0m) to the server's relay per
//! call, carrying Opus audio and optionally VP8 video. The SDK moves encoded frames;
//! encoding and decoding are the application's (the CLI uses libopus).

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use switchboard_protocol::Sid;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::{ice_tcp, turn, Client, ClientError};

/// Something the media connection received or noticed.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// ICE and DTLS are up: media can flow.
    Connected,
    /// An encoded audio frame (Opus) from another party.
    Audio {
        /// The media line (mid) it arrived on: one per sending party and kind.
        mid: String,
        /// The Opus payload.
        payload: Arc<[u8]>,
    },
    /// An encoded video frame (VP8 or H.264) from another party.
    Video {
        /// The media line (mid) it arrived on.
        mid: String,
        /// The payload (depacketized frame).
        payload: Arc<[u8]>,
    },
    /// The relay added lines to this connection (renegotiation), e.g. because the peer
    /// turned video on in an audio call.
    Renegotiated,
    /// The connection to the relay is gone.
    Disconnected,
}

/// Counters of a media connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MediaStats {
    /// Frames received.
    pub frames_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
}

/// How a media connection is opened ([`Client::start_media_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaOptions {
    /// Send video too (a line for it in the first offer).
    pub video: bool,
    /// Drop every n-th datagram this connection sends once connected (0: none): a
    /// lossy uplink, to see how the platform reports and copes with a bad network.
    pub drop_every: u32,
    /// Send plain Opus. By default audio goes out in RED (RFC 2198: each packet also
    /// carries the previous frame) where the relay takes it, and a lost packet is filled
    /// from the next one, as browsers with the web SDK do; RED about doubles the audio
    /// bit rate.
    pub plain_opus: bool,
    /// Which transports ICE may use to reach the relay.
    pub ice: IceTransport,
}

/// Which transports a media connection offers ICE (`--ice-transport` of the CLI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IceTransport {
    /// UDP where it works, else TCP to the relay's ICE-TCP port (as browsers do).
    #[default]
    Any,
    /// UDP only.
    Udp,
    /// TCP only (RFC 6544, to the relay's passive ICE-TCP candidate).
    Tcp,
    /// Through the server's TURN server over UDP only (a relayed candidate).
    TurnUdp,
    /// Through the server's TURN server over TCP only.
    TurnTcp,
    /// Through a TURN server over TLS only (a `turns:` URL of `welcome`; the certificate
    /// is checked against the platform's roots, or `SSL_CERT_FILE`'s).
    TurnTls,
}

enum Cmd {
    /// Opus, samples, the level in -dBov (RFC 6464) if known.
    Audio(Vec<u8>, u32, Option<u8>),
    Video(Vec<u8>, u32),
    AddVideo,
    Stop,
}

/// A call's media connection. Dropping it (or [`Media::stop`]) ends it.
pub struct Media {
    tx: mpsc::UnboundedSender<Cmd>,
    stats: Arc<Mutex<MediaStats>>,
}

impl Media {
    /// Sends one encoded Opus frame of `samples` samples at 48 kHz (960 for 20 ms).
    pub fn send_audio(&self, opus: Vec<u8>, samples: u32) {
        let _ = self.tx.send(Cmd::Audio(opus, samples, None));
    }

    /// Like [`Media::send_audio`], with the frame's level in -dBov (0 loudest, 127
    /// silence) in the RTP audio level extension (RFC 6464), as browsers send it: in a
    /// room the server forwards the loudest speakers by it.
    pub fn send_audio_with_level(&self, opus: Vec<u8>, samples: u32, level_dbov: u8) {
        let _ = self.tx.send(Cmd::Audio(opus, samples, Some(level_dbov.min(127))));
    }

    /// Sends one encoded video frame, `ticks` 90 kHz ticks after the previous one.
    pub fn send_video(&self, frame: Vec<u8>, ticks: u32) {
        let _ = self.tx.send(Cmd::Video(frame, ticks));
    }

    /// Turns video on in an audio-only connection: the relay adds a line to send video
    /// on (its offer, answered by the SDK, then [`MediaEvent::Renegotiated`]); frames
    /// given to [`Media::send_video`] before that are dropped.
    pub fn add_video(&self) {
        let _ = self.tx.send(Cmd::AddVideo);
    }

    /// Counters so far.
    pub fn stats(&self) -> MediaStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Stops sending and receiving.
    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop);
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The local address that routes to `server` (no packet is sent).
fn local_ip_towards(server_host: &str) -> std::net::IpAddr {
    let probe = StdUdpSocket::bind("0.0.0.0:0").and_then(|s| {
        s.connect(server_host)?;
        s.local_addr()
    });
    probe.map(|a| a.ip()).unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
}

/// How a media connection negotiates with the relay. For a call this is the call's
/// signaling session ([`Client::start_media`]); a program that hosts the relay itself
/// (tests, a media gateway) can plug in its own.
pub trait MediaSignaling: Send + Sync + 'static {
    /// Sends the connection's first offer; resolves with the relay's answer.
    fn offer(&self, sdp: String) -> BoxFuture<'static, Result<String, ClientError>>;
    /// Sends the answer to the relay's offer `offer_id`.
    fn answer(&self, offer_id: u64, sdp: String);
    /// Asks the relay for a line to send `kind` (`audio` / `video`) on.
    fn add_media(&self, kind: &str);
    /// The server's TURN servers with their credentials (none by default).
    fn ice_servers(&self) -> Vec<switchboard_protocol::IceServer> {
        Vec::new()
    }
    /// Where the connection hears that its call moved to another node's relay (the node
    /// that ran it died): it starts over there, a new connection with a new offer. Taken
    /// once, when the connection opens; none by default.
    fn moves(&mut self) -> Option<mpsc::UnboundedReceiver<()>> {
        None
    }
}

/// An offer of the relay (renegotiation) for a media connection.
#[derive(Debug, Clone)]
pub struct RelayOffer {
    /// The relay's id for it, echoed in the answer.
    pub id: u64,
    /// The SDP offer.
    pub sdp: String,
}

/// A boxed future, as [`MediaSignaling::offer`] returns.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A call's signaling session as [`MediaSignaling`]; stops routing the relay's offers
/// for the call when the media connection ends.
struct CallSignaling {
    client: Client,
    sid: Sid,
    token: u64,
    moves: Option<mpsc::UnboundedReceiver<()>>,
}

impl MediaSignaling for CallSignaling {
    fn ice_servers(&self) -> Vec<switchboard_protocol::IceServer> {
        self.client.ice_servers()
    }

    fn offer(&self, sdp: String) -> BoxFuture<'static, Result<String, ClientError>> {
        let (client, sid) = (self.client.clone(), self.sid.clone());
        Box::pin(async move { client.media_offer(&sid, sdp).await })
    }

    fn answer(&self, offer_id: u64, sdp: String) {
        self.client.media_answer(&self.sid, offer_id, sdp);
    }

    fn add_media(&self, kind: &str) {
        self.client.add_media(&self.sid, kind);
    }

    fn moves(&mut self) -> Option<mpsc::UnboundedReceiver<()>> {
        self.moves.take()
    }
}

impl Drop for CallSignaling {
    fn drop(&mut self) {
        self.client.unregister_media(&self.sid, self.token);
    }
}

impl Client {
    /// Starts the media of connected call `sid`: audio, and video when `video`.
    /// Resolves once the relay answered; [`MediaEvent::Connected`] follows when ICE and
    /// DTLS are up.
    pub async fn start_media(
        &self,
        sid: &Sid,
        video: bool,
    ) -> Result<(Media, mpsc::UnboundedReceiver<MediaEvent>), ClientError> {
        self.start_media_with(
            sid,
            MediaOptions { video, ice: self.ice_transport(), ..MediaOptions::default() },
        )
        .await
    }

    /// [`Client::start_media`] with options.
    pub async fn start_media_with(
        &self,
        sid: &Sid,
        options: MediaOptions,
    ) -> Result<(Media, mpsc::UnboundedReceiver<MediaEvent>), ClientError> {
        // Routed from before the offer: the relay may offer lines right after answering.
        let (token, relay_offers, moves) = self.register_media(sid);
        let signaling = CallSignaling { client: self.clone(), sid: sid.clone(), token, moves: Some(moves) };
        let ip = local_ip_towards(self.server_host());
        connect_media_with(Box::new(signaling), relay_offers, ip, options).await
    }
}

/// Opens a media connection from `ip` to a relay reached through `signaling`: audio,
/// and video when `video`. `relay_offers` carries the relay's offers for it.
pub async fn connect_media(
    signaling: Box<dyn MediaSignaling>,
    relay_offers: mpsc::UnboundedReceiver<RelayOffer>,
    ip: std::net::IpAddr,
    video: bool,
) -> Result<(Media, mpsc::UnboundedReceiver<MediaEvent>), ClientError> {
    connect_media_with(signaling, relay_offers, ip, MediaOptions { video, ..MediaOptions::default() }).await
}

/// [`connect_media`] with options.
pub async fn connect_media_with(
    signaling: Box<dyn MediaSignaling>,
    relay_offers: mpsc::UnboundedReceiver<RelayOffer>,
    ip: std::net::IpAddr,
    options: MediaOptions,
) -> Result<(Media, mpsc::UnboundedReceiver<MediaEvent>), ClientError> {
    let video = options.video;
    let mut signaling = signaling;
    switchboard_dtls::install();
    let socket =
        UdpSocket::bind(SocketAddr::new(ip, 0)).await.map_err(|e| ClientError::Connect(e.to_string()))?;
    let local = socket.local_addr().map_err(|e| ClientError::Connect(e.to_string()))?;
    let mut candidates = Vec::new();
    let connect = |e: String| ClientError::Connect(e);
    // Forced through TURN: an allocation, and its relayed address the only candidate.
    let turn = match options.ice {
        IceTransport::TurnUdp | IceTransport::TurnTcp | IceTransport::TurnTls => {
            let transport = match options.ice {
                IceTransport::TurnUdp => turn::TurnTransport::Udp,
                IceTransport::TurnTcp => turn::TurnTransport::Tcp,
                _ => turn::TurnTransport::Tls,
            };
            let (link, rx) = turn::TurnLink::allocate(&signaling.ice_servers(), transport, ip).await?;
            let candidate =
                Candidate::relayed(link.relayed, local, "udp").map_err(|e| connect(e.to_string()))?;
            candidates.push(candidate);
            Some((link, rx))
        }
        _ => None,
    };
    if matches!(options.ice, IceTransport::Any | IceTransport::Udp) {
        let candidate = Candidate::host(local, "udp").map_err(|e| ClientError::Connect(e.to_string()))?;
        candidates.push(candidate);
    }
    // An active TCP candidate: ICE connects to the relay's passive one.
    let tcp_local = SocketAddr::new(ip, ice_tcp::ACTIVE_PORT);
    let tcp = if !matches!(options.ice, IceTransport::Any | IceTransport::Tcp) {
        None
    } else {
        let candidate = Candidate::builder()
            .tcp()
            .host(tcp_local)
            .tcptype(TcpType::Active)
            .build()
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        candidates.push(candidate);
        Some(ice_tcp::TcpLinks::new())
    };
    let (rtc, audio, video_mid) =
        negotiate(signaling.as_ref(), &candidates, options.plain_opus, video).await?;
    let moves = signaling.moves();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(Mutex::new(MediaStats::default()));
    let (tcp, tcp_rx) = match tcp {
        Some((links, rx)) => (Some(links), Some(rx)),
        None => (None, None),
    };
    let (turn, turn_rx) = match turn {
        Some((link, rx)) => (Some(link), Some(rx)),
        None => (None, None),
    };
    let task = MediaTask {
        rtc,
        socket,
        local,
        tcp,
        tcp_local,
        turn,
        audio,
        video: video_mid,
        events: ev_tx,
        stats: stats.clone(),
        signaling,
        video_asked: false,
        level: None,
        drop_every: options.drop_every,
        sent: 0,
        connected: false,
        candidates,
        plain_opus: options.plain_opus,
        lost_since: None,
        moves_expected: moves.is_some(),
        renew_at: None,
        old: None,
    };
    tokio::spawn(task.run(rx, relay_offers, tcp_rx, turn_rx, moves));
    Ok((Media { tx, stats }, ev_rx))
}

/// A new connection from `candidates` with an audio line (and a video one when
/// `video`), offered through `signaling` and answered: the connection and its lines.
async fn negotiate(
    signaling: &dyn MediaSignaling,
    candidates: &[Candidate],
    plain_opus: bool,
    video: bool,
) -> Result<(Rtc, Mid, Option<Mid>), ClientError> {
    let mut builder = Rtc::builder().enable_opus(true, !plain_opus);
    if let Some(cert) = switchboard_dtls::certificate() {
        builder = builder.set_dtls_cert(cert);
    }
    let mut rtc = builder.build(Instant::now());
    for c in candidates {
        rtc.add_local_candidate(c.clone());
    }
    let mut change = rtc.sdp_api();
    let audio = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let video_mid = video.then(|| change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None));
    let (offer, pending) =
        change.apply().ok_or_else(|| ClientError::Connect("nothing to negotiate".into()))?;
    let answer = signaling.offer(offer.to_sdp_string()).await?;
    let answer = SdpAnswer::from_sdp_string(&answer)
        .map_err(|e| ClientError::Connect(format!("bad SDP answer: {e}")))?;
    rtc.sdp_api().accept_answer(pending, answer).map_err(|e| ClientError::Connect(e.to_string()))?;
    Ok((rtc, audio, video_mid))
}

/// How long a call's connection whose ICE went quiet waits for word that the call moved
/// to another node before it gives up.
const MOVE_WAIT: Duration = Duration::from_secs(30);

struct MediaTask {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    /// ICE-TCP connections, when TCP is allowed.
    tcp: Option<ice_tcp::TcpLinks>,
    /// The active TCP candidate's address (what TCP packets arrive at, for ICE).
    tcp_local: SocketAddr,
    /// The TURN allocation, when forced through TURN.
    turn: Option<turn::TurnLink>,
    audio: Mid,
    video: Option<Mid>,
    events: mpsc::UnboundedSender<MediaEvent>,
    stats: Arc<Mutex<MediaStats>>,
    signaling: Box<dyn MediaSignaling>,
    /// We asked the relay for a video line to send on.
    video_asked: bool,
    /// The level (-dBov) of the audio frame being written.
    level: Option<u8>,
    /// Drop every n-th datagram sent once connected (0: none).
    drop_every: u32,
    /// Datagrams sent since connected.
    sent: u64,
    connected: bool,
    /// The local candidates, for a new connection when the call moves.
    candidates: Vec<Candidate>,
    plain_opus: bool,
    /// Since when ICE has been disconnected (a call's connection waits for a move).
    lost_since: Option<Instant>,
    /// A call's connection: it may move to another relay.
    moves_expected: bool,
    /// A failed move is tried again then (and how many times it was tried).
    renew_at: Option<(Instant, u32)>,
    /// The connection the call moved from, kept until the new one carries media.
    old: Option<OldConnection>,
}

/// A call's connection to the relay it moved from: for [`OVERLAP`] it goes on sending
/// (the others may still listen there), and what it receives is played until the new
/// connection receives media, so that nobody hears a gap while everyone moves.
struct OldConnection {
    rtc: Rtc,
    audio: Mid,
    since: Instant,
    /// The new connection's media is played, not this one's.
    superseded: bool,
    /// When this one last received media.
    last_media: Instant,
    /// When the new one first received media.
    first_new: Option<Instant>,
}

/// How long the new connection's media flows before it is played instead of the old's.
const SETTLE: Duration = Duration::from_millis(600);

/// How many times a failed move is tried again, a second apart.
const RENEW_TRIES: u32 = 5;

/// How long a moved call keeps its old connection.
const OVERLAP: Duration = Duration::from_secs(2);

impl MediaTask {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Cmd>,
        mut relay_offers: mpsc::UnboundedReceiver<RelayOffer>,
        mut tcp_rx: Option<mpsc::Receiver<(SocketAddr, Vec<u8>)>>,
        mut turn_rx: Option<mpsc::Receiver<(SocketAddr, Vec<u8>)>>,
        mut moves: Option<mpsc::UnboundedReceiver<()>>,
    ) {
        let mut buf = vec![0u8; 2048];
        let (mut audio_ts, mut video_ts) = (0u64, 0u64);
        while let Some(next) = self.drive() {
            if self.renew_at.is_some_and(|(at, _)| at <= Instant::now()) {
                self.renew().await;
                continue;
            }
            let next = self.renew_at.map_or(next, |(at, _)| next.min(at));
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((n, source)) = r else { continue };
                    let Ok(contents) = buf[..n].try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: self.local, contents });
                    self.feed(input);
                }
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Audio(data, samples, level)) => {
                        self.level = level;
                        self.write(self.audio, Codec::Opus, MediaTime::new(audio_ts, str0m::media::Frequency::FORTY_EIGHT_KHZ), data);
                        self.level = None;
                        audio_ts += u64::from(samples);
                    }
                    Some(Cmd::Video(data, ticks)) => {
                        if let Some(mid) = self.video {
                            self.write(mid, Codec::Vp8, MediaTime::new(video_ts, str0m::media::Frequency::NINETY_KHZ), data);
                            video_ts += u64::from(ticks);
                        }
                    }
                    Some(Cmd::AddVideo) => self.add_video(),
                    Some(Cmd::Stop) | None => break,
                },
                Some(offer) = relay_offers.recv() => self.relay_offer(offer),
                Some(()) = moved(moves.as_mut()) => {
                    self.renew_at = None;
                    self.renew().await
                }
                Some((source, data)) = from_tcp(turn_rx.as_mut()) => {
                    let Some(relayed) = self.turn.as_ref().map(|t| t.relayed) else { continue };
                    let Ok(contents) = data.as_slice().try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: relayed, contents });
                    self.feed(input);
                }
                Some((source, data)) = from_tcp(tcp_rx.as_mut()) => {
                    let Ok(contents) = data.as_slice().try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Tcp, source, destination: self.tcp_local, contents });
                    self.feed(input);
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                    if let Some(old) = &mut self.old {
                        let _ = old.rtc.handle_input(Input::Timeout(Instant::now()));
                    }
                }
            }
        }
        self.rtc.disconnect();
        let _ = self.events.send(MediaEvent::Disconnected);
    }

    /// Asks the relay for a video line to send on; it arrives in its next offer.
    fn add_video(&mut self) {
        if self.video.is_some() || self.video_asked {
            return;
        }
        self.video_asked = true;
        self.signaling.add_media("video");
    }

    /// The relay offers lines: ones it sends other parties' media on, and the
    /// `sendrecv` line we asked for to send video on.
    fn relay_offer(&mut self, RelayOffer { id, sdp }: RelayOffer) {
        let sdp = sdp.as_str();
        let answer = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| e.to_string())
            .and_then(|offer| self.rtc.sdp_api().accept_offer(offer).map_err(|e| e.to_string()));
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => return tracing::warn!(error = %e, "relay offer refused"),
        };
        if self.video.is_none() && self.video_asked {
            self.video = sdp.lines().filter_map(|l| l.trim().strip_prefix("a=mid:")).find_map(|mid| {
                let mid = Mid::from(mid.trim());
                let m = self.rtc.media(mid)?;
                (m.kind() == MediaKind::Video && m.direction() == Direction::SendRecv).then_some(mid)
            });
        }
        self.signaling.answer(id, answer.to_sdp_string());
        let _ = self.events.send(MediaEvent::Renegotiated);
    }

    fn write(&mut self, mid: Mid, codec: Codec, time: MediaTime, data: Vec<u8>) {
        if let Some(old) = self.old.as_mut().filter(|_| mid == self.audio) {
            write_to(&mut old.rtc, old.audio, codec, time, data.clone(), self.level);
        }
        let len = data.len() as u64;
        if write_to(&mut self.rtc, mid, codec, time, data, self.level) {
            if let Ok(mut s) = self.stats.lock() {
                s.frames_out += 1;
                s.bytes_out += len;
            }
        }
    }

    /// The call moved to another node's relay: a new connection (new ICE, new DTLS)
    /// with the same lines replaces this one. A failure leaves the old one, which ends
    /// when its wait for a move is over.
    async fn renew(&mut self) {
        let video = self.video.is_some();
        match negotiate(self.signaling.as_ref(), &self.candidates, self.plain_opus, video).await {
            Ok((rtc, audio, video_mid)) => {
                tracing::info!("media: the call moved; new connection to its relay");
                if let Some(mut older) = self.old.take() {
                    older.rtc.disconnect();
                }
                // The old one goes on beside it for a while: the relay it reaches may still
                // carry the call (a node that drains), and its media is played until the
                // new one's has settled.
                let rtc = std::mem::replace(&mut self.rtc, rtc);
                let connected = self.lost_since.is_none();
                self.old = connected.then_some(OldConnection {
                    rtc,
                    audio: self.audio,
                    since: Instant::now(),
                    superseded: false,
                    last_media: Instant::now(),
                    first_new: None,
                });
                self.audio = audio;
                self.video = video_mid;
                self.video_asked = false;
                self.connected = false;
                self.lost_since = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "media: cannot connect to the call's new relay");
                // Tried again a few times (the new owner may be busy, the signaling
                // reconnecting): a call that moved has no other way back to media.
                let tries = self.renew_at.map_or(1, |(_, n)| n + 1);
                self.renew_at =
                    (tries <= RENEW_TRIES).then(|| (Instant::now() + Duration::from_secs(1), tries));
                return;
            }
        }
        self.renew_at = None;
    }

    /// An input for the connection it belongs to (the new one, or the one the call
    /// moved from).
    fn feed(&mut self, input: Input) {
        if self.rtc.accepts(&input) {
            let _ = self.rtc.handle_input(input);
        } else if let Some(old) = self.old.as_mut().filter(|o| o.rtc.accepts(&input)) {
            let _ = old.rtc.handle_input(input);
        }
    }

    /// Polls the connection the call moved from: its datagrams go out, its media in;
    /// when it must be polled again.
    fn drive_old(&mut self) -> Option<Instant> {
        let old = self.old.as_mut()?;
        loop {
            if !old.rtc.is_alive() || old.since.elapsed() > OVERLAP {
                if let Some(mut o) = self.old.take() {
                    o.rtc.disconnect();
                }
                return None;
            }
            match old.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    send_out(self.turn.as_ref(), self.tcp.as_mut(), &self.socket, t);
                }
                Ok(Output::Event(Event::MediaData(d))) if !old.superseded => {
                    old.last_media = Instant::now();
                    let mid = d.mid.to_string();
                    let ev = match old.rtc.media(d.mid).map(|m| m.kind()) {
                        Some(MediaKind::Video) => MediaEvent::Video { mid, payload: d.data },
                        _ => MediaEvent::Audio { mid, payload: d.data },
                    };
                    let _ = self.events.send(ev);
                }
                Ok(Output::Event(_)) => {}
                Err(_) => old.rtc.disconnect(),
            }
        }
    }

    /// Polls until the session only waits; `None` once it is dead.
    fn drive(&mut self) -> Option<Instant> {
        let next = self.drive_new()?;
        Some(self.drive_old().map_or(next, |t| t.min(next)))
    }

    /// Polls the connection until it only waits; `None` once it is dead.
    fn drive_new(&mut self) -> Option<Instant> {
        loop {
            if !self.rtc.is_alive() {
                return None;
            }
            if self.lost_since.is_some_and(|t| t.elapsed() > MOVE_WAIT) {
                self.rtc.disconnect();
                return None;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t.min(Instant::now() + Duration::from_millis(100))),
                Ok(Output::Transmit(t)) => {
                    if self.connected && self.drop_every > 0 {
                        self.sent += 1;
                        if self.sent.is_multiple_of(u64::from(self.drop_every)) {
                            continue;
                        }
                    }
                    send_out(self.turn.as_ref(), self.tcp.as_mut(), &self.socket, t);
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        self.connected = true;
                        let _ = self.events.send(MediaEvent::Connected);
                    }
                    Event::MediaData(d) => {
                        // The new connection's media is played once it has flowed for a while
                        // (a relay often adds lines, and pauses, right after a connection
                        // starts), or when the old one's stopped.
                        if let Some(old) = &mut self.old {
                            let first = *old.first_new.get_or_insert_with(Instant::now);
                            if first.elapsed() < SETTLE
                                && old.last_media.elapsed() < Duration::from_millis(100)
                            {
                                continue;
                            }
                            // Played from now on, and only it: no two streams interleaved.
                            old.superseded = true;
                        }
                        if let Ok(mut s) = self.stats.lock() {
                            s.frames_in += 1;
                            s.bytes_in += d.data.len() as u64;
                        }
                        let mid = d.mid.to_string();
                        let kind = self.rtc.media(d.mid).map(|m| m.kind());
                        let ev = if kind == Some(MediaKind::Video) {
                            MediaEvent::Video { mid, payload: d.data }
                        } else {
                            MediaEvent::Audio { mid, payload: d.data }
                        };
                        let _ = self.events.send(ev);
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        // A call's relay may have died with its node: the call moves to
                        // another node, and this connection starts over there.
                        if self.moves_expected {
                            self.lost_since.get_or_insert_with(Instant::now);
                        } else {
                            self.rtc.disconnect()
                        }
                    }
                    Event::IceConnectionStateChange(
                        IceConnectionState::Connected | IceConnectionState::Completed,
                    ) => {
                        self.lost_since = None;
                    }
                    _ => {}
                },
                Err(_) => self.rtc.disconnect(),
            }
        }
    }
}

/// Sends a datagram of a connection: through the TURN allocation when it is from the
/// relayed address, on ICE-TCP when it is TCP, else on the UDP socket.
fn send_out(
    turn: Option<&turn::TurnLink>,
    tcp: Option<&mut ice_tcp::TcpLinks>,
    socket: &UdpSocket,
    t: str0m::net::Transmit,
) {
    if let Some(turn) = turn.filter(|turn| turn.relayed == t.source) {
        return turn.send(t.destination, t.contents.into());
    }
    match (t.proto, tcp) {
        (Protocol::Tcp, Some(tcp)) => tcp.send(t.destination, t.contents.into()),
        _ => {
            let _ = socket.try_send_to(&t.contents, t.destination);
        }
    }
}

/// Writes one frame on line `mid` of `rtc` (with its level in -dBov, if known); whether
/// it went.
fn write_to(
    rtc: &mut Rtc,
    mid: Mid,
    codec: Codec,
    time: MediaTime,
    data: Vec<u8>,
    level: Option<u8>,
) -> bool {
    let Some(writer) = rtc.writer(mid) else { return false };
    let Some(pt) = writer.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt()) else {
        return false;
    };
    // Voice activity as browsers judge it: louder than about -50 dBov.
    let writer = match level {
        Some(l) => writer.audio_level(-(l as i8), l < 50),
        None => writer,
    };
    writer.write(pt, Instant::now(), time, data).is_ok()
}

/// The next word that the call moved, or never without a way to hear it.
async fn moved(rx: Option<&mut mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What an ICE-TCP connection received next, or never without ICE-TCP.
async fn from_tcp(rx: Option<&mut mpsc::Receiver<(SocketAddr, Vec<u8>)>>) -> Option<(SocketAddr, Vec<u8>)> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
