//! The media relay (SFU) on str0m: one UDP socket for every media session,
//! demultiplexed by ICE (a session claims a packet with `Rtc::accepts`). Each party of
//! a connected call holds one ICE-lite WebRTC session (DTLS-SRTP, RTP/RTCP mux) with
//! the relay; what one party sends is written to the others' media lines of the same
//! kind, keyframe requests travel back to the sender, and a party whose media stops
//! past `media_timeout_ms` is reported to the call core (NETWORK_UNSTABLE).
//!
//! The relay runs on its own task and owns every `Rtc`; the call core talks to it only
//! through [`MediaCmd`].

use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use switchboard_protocol::DisconnectSource;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

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

/// Commands to the relay.
pub enum MediaCmd {
    /// A party's SDP offer; the reply is the SDP answer or why not.
    Offer {
        /// The call.
        sid: String,
        /// `Caller` or `Callee`.
        side: DisconnectSource,
        /// The offer.
        sdp: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The call is over.
    End {
        /// The call.
        sid: String,
    },
}

/// The relay reports a party whose media stopped.
pub type LostTx = mpsc::Sender<(String, DisconnectSource)>;

struct Party {
    sid: String,
    side: DisconnectSource,
    rtc: Rtc,
    mids: Vec<(Mid, MediaKind)>,
    last_media: Instant,
    lost: bool,
}

impl Party {
    fn mid_of(&self, kind: MediaKind) -> Option<Mid> {
        self.mids.iter().find(|(_, k)| *k == kind).map(|(m, _)| *m)
    }

    fn kind_of(&self, mid: Mid) -> Option<MediaKind> {
        self.mids.iter().find(|(m, _)| *m == mid).map(|(_, k)| *k)
    }
}

/// What one party's events ask of the others.
enum Relay {
    Media(usize, MediaKind, Box<MediaData>),
    Keyframe(usize, MediaKind, KeyframeRequestKind),
}

/// Handle to the relay task.
#[derive(Clone)]
pub struct MediaRelay {
    tx: mpsc::UnboundedSender<MediaCmd>,
    /// The UDP address the relay advertises in its answers.
    pub advertised: SocketAddr,
}

impl MediaRelay {
    /// Binds `bind`, advertises `advertise` (or the bound address), and starts the task.
    pub async fn start(
        bind: SocketAddr,
        advertise: Option<std::net::IpAddr>,
        media_timeout: Duration,
        lost: LostTx,
    ) -> Result<Self, MediaError> {
        static CRYPTO: Once = Once::new();
        CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
        let socket = UdpSocket::bind(bind).await.map_err(|source| MediaError::Bind { addr: bind, source })?;
        let local = socket.local_addr().map_err(|source| MediaError::Bind { addr: bind, source })?;
        let advertised = SocketAddr::new(advertise.unwrap_or(local.ip()), local.port());
        let (tx, rx) = mpsc::unbounded_channel();
        let task = RelayTask { socket, local, advertised, parties: Vec::new(), media_timeout, lost };
        tokio::spawn(task.run(rx));
        tracing::info!(%local, %advertised, "media relay listening");
        Ok(Self { tx, advertised })
    }

    /// Sends a command to the relay.
    pub fn send(&self, cmd: MediaCmd) {
        let _ = self.tx.send(cmd);
    }
}

struct RelayTask {
    socket: UdpSocket,
    local: SocketAddr,
    advertised: SocketAddr,
    parties: Vec<Party>,
    media_timeout: Duration,
    lost: LostTx,
}

impl RelayTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<MediaCmd>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let next = self.drive();
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((n, source)) = r else { continue };
                    self.receive(&buf[..n], source);
                }
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {}
            }
            let now = Instant::now();
            for p in &mut self.parties {
                if p.rtc.is_alive() {
                    let _ = p.rtc.handle_input(Input::Timeout(now));
                }
            }
            self.check_liveness(now);
        }
    }

    fn command(&mut self, cmd: MediaCmd) {
        match cmd {
            MediaCmd::Offer { sid, side, sdp, reply } => {
                let _ = reply.send(self.accept(sid, side, &sdp));
            }
            MediaCmd::End { sid } => {
                for p in self.parties.iter_mut().filter(|p| p.sid == sid) {
                    p.rtc.disconnect();
                }
                self.parties.retain(|p| p.sid != sid);
            }
        }
    }

    fn accept(&mut self, sid: String, side: DisconnectSource, sdp: &str) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| format!("bad SDP offer: {e}"))?;
        let now = Instant::now();
        let mut rtc = Rtc::builder().set_ice_lite(true).build(now);
        let candidate = Candidate::host(self.advertised, "udp").map_err(|e| format!("candidate: {e}"))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| format!("offer refused: {e}"))?;
        // A new offer from the same party replaces its session (e.g. after a reconnect).
        self.parties.retain(|p| !(p.sid == sid && p.side == side));
        self.parties.push(Party { sid, side, rtc, mids: Vec::new(), last_media: now, lost: false });
        Ok(answer.to_sdp_string())
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr) {
        let Ok(contents) = data.try_into() else { return };
        let input = Input::Receive(
            Instant::now(),
            Receive { proto: Protocol::Udp, source, destination: self.local, contents },
        );
        if let Some(p) = self.parties.iter_mut().find(|p| p.rtc.is_alive() && p.rtc.accepts(&input)) {
            if let Err(e) = p.rtc.handle_input(input) {
                tracing::debug!(sid = %p.sid, error = %e, "media input failed");
            }
        }
    }

    /// Polls every session until each only waits, relaying what they produce;
    /// returns when to wake next.
    fn drive(&mut self) -> Instant {
        let mut next = Instant::now() + Duration::from_millis(100);
        loop {
            let mut relays = Vec::new();
            for (i, p) in self.parties.iter_mut().enumerate() {
                while p.rtc.is_alive() {
                    match p.rtc.poll_output() {
                        Ok(Output::Timeout(t)) => {
                            next = next.min(t);
                            break;
                        }
                        Ok(Output::Transmit(t)) => {
                            // UDP: a full socket buffer drops the packet, as the network might.
                            let _ = self.socket.try_send_to(&t.contents, t.destination);
                        }
                        Ok(Output::Event(e)) => match e {
                            Event::MediaAdded(m) => p.mids.push((m.mid, m.kind)),
                            Event::MediaData(d) => {
                                p.last_media = Instant::now();
                                if let Some(kind) = p.kind_of(d.mid) {
                                    relays.push(Relay::Media(i, kind, Box::new(d)));
                                }
                            }
                            Event::KeyframeRequest(r) => {
                                if let Some(kind) = p.kind_of(r.mid) {
                                    relays.push(Relay::Keyframe(i, kind, r.kind));
                                }
                            }
                            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                                p.rtc.disconnect()
                            }
                            _ => {}
                        },
                        Err(e) => {
                            tracing::debug!(sid = %p.sid, error = %e, "media session failed");
                            p.rtc.disconnect();
                        }
                    }
                }
            }
            if relays.is_empty() {
                return next;
            }
            for r in relays {
                self.relay(r);
            }
        }
    }

    fn relay(&mut self, r: Relay) {
        let (from, kind) = match &r {
            Relay::Media(i, k, _) | Relay::Keyframe(i, k, _) => (*i, *k),
        };
        let sid = self.parties[from].sid.clone();
        let others: Vec<usize> =
            (0..self.parties.len()).filter(|j| *j != from && self.parties[*j].sid == sid).collect();
        match r {
            Relay::Media(_, _, data) => {
                for j in others {
                    let p = &mut self.parties[j];
                    let Some(mid) = p.mid_of(kind) else { continue };
                    let Some(writer) = p.rtc.writer(mid) else { continue };
                    let Some(pt) = writer.match_params(data.params) else { continue };
                    if let Err(e) = writer.write(pt, data.network_time, data.time, data.data.clone()) {
                        tracing::debug!(%sid, error = %e, "media write failed");
                    }
                }
            }
            Relay::Keyframe(_, _, req) => {
                // A receiver lost video: ask the sender for a keyframe.
                for j in others {
                    let p = &mut self.parties[j];
                    let Some(mid) = p.mid_of(kind) else { continue };
                    if let Some(mut writer) = p.rtc.writer(mid) {
                        let _ = writer.request_keyframe(None, req);
                    }
                }
            }
        }
    }

    fn check_liveness(&mut self, now: Instant) {
        for p in &mut self.parties {
            if !p.lost && now.duration_since(p.last_media) > self.media_timeout {
                p.lost = true;
                tracing::info!(sid = %p.sid, side = p.side.name(), "media stopped");
                let _ = self.lost.try_send((p.sid.clone(), p.side));
            }
        }
    }
}
