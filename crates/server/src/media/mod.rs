//! The media relay (SFU) on str0m: one UDP socket for every media session,
//! demultiplexed by ICE (a session claims a packet with `Rtc::accepts`). Each party of
//! a connected call holds one ICE-lite WebRTC session (DTLS-SRTP, RTP/RTCP mux) with
//! the relay; what one party sends is written to the others' media lines of the same
//! kind, keyframe requests travel back to the sender, and a party whose media stops
//! past `media_timeout_ms` is reported to the call core (NETWORK_UNSTABLE).
//!
//! The relay runs on its own task and owns every `Rtc`; the call core talks to it only
//! through [`MediaCmd`].

use std::collections::{BTreeSet, HashMap};
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
    wake: Option<Instant>,
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
    Media(MediaKind, Box<MediaData>),
    Keyframe(MediaKind, KeyframeRequestKind),
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
        let task = RelayTask {
            socket,
            local,
            advertised,
            next_id: 1,
            parties: HashMap::new(),
            by_addr: HashMap::new(),
            by_call: HashMap::new(),
            wake: BTreeSet::new(),
            media_timeout,
            lost,
        };
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
    next_id: u64,
    parties: HashMap<u64, Party>,
    /// Which session a remote address belongs to (learnt from `accepts`).
    by_addr: HashMap<SocketAddr, u64>,
    /// Sessions of each call.
    by_call: HashMap<String, Vec<u64>>,
    /// When each session wants `Input::Timeout`.
    wake: BTreeSet<(Instant, u64)>,
    media_timeout: Duration,
    lost: LostTx,
}

impl RelayTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<MediaCmd>) {
        let mut buf = vec![0u8; 2048];
        let mut liveness = tokio::time::interval(Duration::from_millis(250));
        loop {
            let next = self.wake.first().map_or(Instant::now() + Duration::from_secs(1), |(t, _)| *t);
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((n, source)) = r else { continue };
                    if let Some(id) = self.receive(&buf[..n], source) {
                        self.drive(id);
                    }
                }
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {
                    let now = Instant::now();
                    while let Some(&(t, id)) = self.wake.first() {
                        if t > now {
                            break;
                        }
                        self.wake.pop_first();
                        if let Some(p) = self.parties.get_mut(&id) {
                            p.wake = None;
                            let _ = p.rtc.handle_input(Input::Timeout(now));
                            self.drive(id);
                        }
                    }
                }
                _ = liveness.tick() => self.check_liveness(Instant::now()),
            }
        }
    }

    fn command(&mut self, cmd: MediaCmd) {
        match cmd {
            MediaCmd::Offer { sid, side, sdp, reply } => {
                let answer = self.accept(sid, side, &sdp);
                let _ = reply.send(answer.map(|(id, sdp)| {
                    self.drive(id);
                    sdp
                }));
            }
            MediaCmd::End { sid } => {
                for id in self.by_call.remove(&sid).unwrap_or_default() {
                    self.remove(id);
                }
            }
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(mut p) = self.parties.remove(&id) {
            p.rtc.disconnect();
            if let Some(w) = p.wake {
                self.wake.remove(&(w, id));
            }
        }
        self.by_addr.retain(|_, v| *v != id);
    }

    fn accept(&mut self, sid: String, side: DisconnectSource, sdp: &str) -> Result<(u64, String), String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| format!("bad SDP offer: {e}"))?;
        let now = Instant::now();
        let mut rtc = Rtc::builder().set_ice_lite(true).build(now);
        let candidate = Candidate::host(self.advertised, "udp").map_err(|e| format!("candidate: {e}"))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| format!("offer refused: {e}"))?;
        // A new offer from the same party replaces its session (e.g. after a reconnect).
        let old: Vec<u64> = self
            .by_call
            .get(&sid)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| self.parties.get(id).is_some_and(|p| p.side == side))
            .collect();
        for id in old {
            self.remove(id);
            if let Some(ids) = self.by_call.get_mut(&sid) {
                ids.retain(|x| *x != id);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_call.entry(sid.clone()).or_default().push(id);
        self.parties
            .insert(id, Party { sid, side, rtc, mids: Vec::new(), last_media: now, lost: false, wake: None });
        Ok((id, answer.to_sdp_string()))
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr) -> Option<u64> {
        let contents = data.try_into().ok()?;
        let input = Input::Receive(
            Instant::now(),
            Receive { proto: Protocol::Udp, source, destination: self.local, contents },
        );
        let known = self.by_addr.get(&source).copied().filter(|id| self.parties.contains_key(id));
        let id = match known {
            Some(id) => id,
            // A new address: whose ICE credentials does it carry?
            None => {
                let id = self
                    .parties
                    .iter()
                    .find(|(_, p)| p.rtc.is_alive() && p.rtc.accepts(&input))
                    .map(|(id, _)| *id)?;
                self.by_addr.insert(source, id);
                id
            }
        };
        let p = self.parties.get_mut(&id)?;
        if let Err(e) = p.rtc.handle_input(input) {
            tracing::debug!(sid = %p.sid, error = %e, "media input failed");
        }
        Some(id)
    }

    /// Polls session `id` (and every session its output writes to) until they only
    /// wait, and schedules their wake-ups.
    fn drive(&mut self, id: u64) {
        let mut todo = vec![id];
        while let Some(id) = todo.pop() {
            let mut relays = Vec::new();
            let Some(p) = self.parties.get_mut(&id) else { continue };
            while p.rtc.is_alive() {
                match p.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        if p.wake != Some(t) {
                            if let Some(old) = p.wake.replace(t) {
                                self.wake.remove(&(old, id));
                            }
                            self.wake.insert((t, id));
                        }
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
                                relays.push(Relay::Media(kind, Box::new(d)));
                            }
                        }
                        Event::KeyframeRequest(r) => {
                            if let Some(kind) = p.kind_of(r.mid) {
                                relays.push(Relay::Keyframe(kind, r.kind));
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
            if relays.is_empty() {
                continue;
            }
            let sid = p.sid.clone();
            let others: Vec<u64> =
                self.by_call.get(&sid).into_iter().flatten().copied().filter(|o| *o != id).collect();
            for r in relays {
                for &o in &others {
                    let Some(q) = self.parties.get_mut(&o) else { continue };
                    relay_to(q, &r);
                    if !todo.contains(&o) {
                        todo.push(o);
                    }
                }
            }
        }
    }

    fn check_liveness(&mut self, now: Instant) {
        for p in self.parties.values_mut() {
            if !p.lost && now.duration_since(p.last_media) > self.media_timeout {
                p.lost = true;
                tracing::info!(sid = %p.sid, side = p.side.name(), "media stopped");
                let _ = self.lost.try_send((p.sid.clone(), p.side));
            }
        }
    }
}

/// Writes what another party produced into `q`'s media line of the same kind.
fn relay_to(q: &mut Party, r: &Relay) {
    match r {
        Relay::Media(kind, data) => {
            let Some(mid) = q.mid_of(*kind) else { return };
            let Some(writer) = q.rtc.writer(mid) else { return };
            let Some(pt) = writer.match_params(data.params) else { return };
            if let Err(e) = writer.write(pt, data.network_time, data.time, data.data.clone()) {
                tracing::debug!(sid = %q.sid, error = %e, "media write failed");
            }
        }
        Relay::Keyframe(kind, req) => {
            // A receiver lost video: ask the sender for a keyframe.
            let Some(mid) = q.mid_of(*kind) else { return };
            if let Some(mut writer) = q.rtc.writer(mid) {
                let _ = writer.request_keyframe(None, *req);
            }
        }
    }
}
