//! The media relay (SFU) on str0m: one UDP socket for every media session,
//! demultiplexed by ICE (a connection claims a packet with `Rtc::accepts`). Each party
//! of a session (both parties of a connected call; the members of a room) holds one
//! ICE-lite WebRTC connection (DTLS-SRTP, RTP/RTCP mux) with the relay. Every line a
//! party sends on is a *source*, and each other party receives it on a line of its own
//! (see [`feeds`]): its own `sendrecv` lines first, then `sendonly` lines the relay adds
//! and offers to it over signaling ([`RelayEvent::Offer`]). Keyframe requests travel
//! from a line back to its source, and a party whose media stops past
//! `media_timeout_ms` is reported ([`RelayEvent::Lost`]).
//!
//! The relay runs on its own task and owns every `Rtc`; the call core talks to it only
//! through [`MediaCmd`] and [`RelayEvent`].

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaData, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

mod feeds;

/// The kinds of media lines (re-exported for [`MediaCmd::AddLine`]).
pub use str0m::media::MediaKind;

use feeds::{Line, Source};

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

struct Party {
    sid: String,
    key: PartyKey,
    rtc: Rtc,
    /// `a=ice-ufrag` of the offer that made this connection: the same in a
    /// renegotiation, new after a reconnect.
    ufrag: Option<String>,
    lines: Vec<Line>,
    /// The relay's own offer awaiting the party's answer.
    pending: Option<PendingOffer>,
    /// Lines the party asked to send on, not yet offered.
    wants: Vec<MediaKind>,
    last_media: Instant,
    lost: bool,
    wake: Option<Instant>,
}

impl Party {
    fn line(&self, mid: Mid) -> Option<&Line> {
        self.lines.iter().find(|l| l.mid == mid)
    }

    /// Reads the lines an offer (just accepted) names from the session.
    fn sync_lines(&mut self, sdp: &str) {
        for mid in sdp.lines().filter_map(|l| l.trim().strip_prefix("a=mid:")) {
            let mid = Mid::from(mid.trim());
            if let Some(m) = self.rtc.media(mid) {
                let (kind, dir) = (m.kind(), m.direction());
                self.set_line(mid, kind, dir);
            }
        }
    }

    fn set_line(&mut self, mid: Mid, kind: MediaKind, dir: Direction) {
        match self.lines.iter_mut().find(|l| l.mid == mid) {
            Some(l) => l.dir = dir,
            None => self.lines.push(Line { mid, kind, dir, feed: None }),
        }
    }
}

/// An offer of the relay that the party has not answered yet.
struct PendingOffer {
    id: u64,
    change: SdpPendingOffer,
    /// The lines it adds.
    added: Vec<Mid>,
    /// The `sendrecv` lines among them that the party asked for.
    wants: Vec<MediaKind>,
    sdp: String,
    sent: Instant,
}

/// An unanswered offer is sent again this often: it may have been lost with a
/// signaling connection that dropped. Answering the same offer twice is harmless.
const OFFER_RESEND: Duration = Duration::from_secs(5);

/// What one party's events ask of the others.
enum Relay {
    Media(Mid, Box<MediaData>),
    Keyframe(Mid, KeyframeRequestKind),
}

/// Handle to the relay task.
#[derive(Clone)]
pub struct MediaRelay {
    tx: mpsc::UnboundedSender<MediaCmd>,
    /// The UDP address the relay advertises in its answers.
    pub advertised: SocketAddr,
}

impl MediaRelay {
    /// Binds `bind`, advertises `advertise` (or the bound address), and starts the task,
    /// which reports on `events`.
    pub async fn start(
        bind: SocketAddr,
        advertise: Option<crate::config::Advertise>,
        media_timeout: Duration,
        events: mpsc::UnboundedSender<RelayEvent>,
    ) -> Result<Self, MediaError> {
        static CRYPTO: Once = Once::new();
        CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
        let socket = UdpSocket::bind(bind).await.map_err(|source| MediaError::Bind { addr: bind, source })?;
        let local = socket.local_addr().map_err(|source| MediaError::Bind { addr: bind, source })?;
        let advertised = crate::config::Advertise::address(advertise, local);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = RelayTask {
            socket,
            advertised,
            next_id: 1,
            next_offer: 1,
            parties: HashMap::new(),
            by_addr: HashMap::new(),
            by_call: HashMap::new(),
            routes: HashMap::new(),
            wake: BTreeSet::new(),
            dirty: Vec::new(),
            media_timeout,
            events,
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
    advertised: SocketAddr,
    next_id: u64,
    next_offer: u64,
    parties: HashMap<u64, Party>,
    /// Which connection a remote address belongs to (learnt from `accepts`).
    by_addr: HashMap<SocketAddr, u64>,
    /// Connections of each session.
    by_call: HashMap<String, Vec<u64>>,
    /// Where each source's media goes: (party, line) pairs.
    routes: HashMap<Source, Vec<(u64, Mid)>>,
    /// When each connection wants `Input::Timeout`.
    wake: BTreeSet<(Instant, u64)>,
    /// Sessions whose lines changed: their feeds are reassigned.
    dirty: Vec<String>,
    media_timeout: Duration,
    events: mpsc::UnboundedSender<RelayEvent>,
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
            self.reassign_dirty();
        }
    }

    fn command(&mut self, cmd: MediaCmd) {
        match cmd {
            MediaCmd::Offer { sid, party, sdp, reply } => {
                let answer = self.accept(sid, party, &sdp);
                let _ = reply.send(answer.map(|(id, sdp)| {
                    self.drive(id);
                    sdp
                }));
            }
            MediaCmd::Answer { sid, party, offer_id, sdp } => {
                if let Some(id) = self.find(&sid, &party) {
                    self.answer(id, offer_id, &sdp);
                    self.drive(id);
                }
            }
            MediaCmd::AddLine { sid, party, kind } => {
                let Some(p) = self.find(&sid, &party).and_then(|id| self.parties.get_mut(&id)) else {
                    return;
                };
                // One line to send each kind on is enough; repeats are ignored.
                let has = p.lines.iter().any(|l| l.kind == kind && feeds::relay_receives(l.dir))
                    || p.wants.contains(&kind)
                    || p.pending.as_ref().is_some_and(|o| o.wants.contains(&kind));
                if !has {
                    p.wants.push(kind);
                    self.dirty.push(sid);
                }
            }
            MediaCmd::Leave { sid, party } => {
                if let Some(id) = self.find(&sid, &party) {
                    self.remove(id);
                    self.dirty.push(sid);
                }
            }
            MediaCmd::End { sid } => {
                for id in self.by_call.get(&sid).cloned().unwrap_or_default() {
                    self.remove(id);
                }
            }
        }
    }

    fn find(&self, sid: &str, party: &str) -> Option<u64> {
        self.by_call.get(sid)?.iter().copied().find(|id| self.parties.get(id).is_some_and(|p| p.key == party))
    }

    fn remove(&mut self, id: u64) {
        if let Some(mut p) = self.parties.remove(&id) {
            p.rtc.disconnect();
            if let Some(w) = p.wake {
                self.wake.remove(&(w, id));
            }
            if let Some(ids) = self.by_call.get_mut(&p.sid) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    self.by_call.remove(&p.sid);
                }
            }
            for line in &p.lines {
                self.routes.remove(&Source { party: id, mid: line.mid });
            }
        }
        self.by_addr.retain(|_, v| *v != id);
    }

    fn accept(&mut self, sid: String, party: PartyKey, sdp: &str) -> Result<(u64, String), String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| {
            tracing::debug!(%sid, error = %e, "unreadable SDP offer");
            sdp_problem(&e).to_string()
        })?;
        let ufrag = ice_ufrag(sdp);
        // The same connection renegotiating: answer on it (this drops any offer of ours
        // still pending; its lines are offered again once this settles).
        if let Some(id) = self.find(&sid, &party) {
            let p = self
                .parties
                .get_mut(&id)
                .filter(|p| p.rtc.is_alive() && p.ufrag.is_some() && p.ufrag == ufrag);
            if let Some(p) = p {
                if let Some(old) = p.pending.take() {
                    p.wants.extend(old.wants);
                }
                self.dirty.push(sid.clone());
                let answer = p.rtc.sdp_api().accept_offer(offer).map_err(|e| refused_offer(&sid, &e))?;
                p.sync_lines(sdp);
                return Ok((id, answer.to_sdp_string()));
            }
        }
        let now = Instant::now();
        let mut rtc = Rtc::builder().set_ice_lite(true).build(now);
        let candidate = Candidate::host(self.advertised, "udp").map_err(|e| {
            tracing::error!(error = %e, advertised = %self.advertised, "relay candidate refused");
            "the relay could not take the offer (internal error)".to_string()
        })?;
        rtc.add_local_candidate(candidate);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| refused_offer(&sid, &e))?;
        let mut party = Party {
            sid: sid.clone(),
            key: party,
            rtc,
            ufrag,
            lines: Vec::new(),
            pending: None,
            wants: Vec::new(),
            last_media: now,
            lost: false,
            wake: None,
        };
        party.sync_lines(sdp);
        // A new connection of the same party replaces the old one (a reconnect).
        if let Some(old) = self.find(&sid, &party.key) {
            self.remove(old);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_call.entry(sid.clone()).or_default().push(id);
        self.parties.insert(id, party);
        self.dirty.push(sid);
        Ok((id, answer.to_sdp_string()))
    }

    /// The party's answer to our offer: the lines it added are now usable.
    fn answer(&mut self, id: u64, offer_id: u64, sdp: &str) {
        let Some(p) = self.parties.get_mut(&id) else { return };
        if p.pending.as_ref().is_none_or(|o| o.id != offer_id) {
            // A repeated answer, or one to an offer already superseded.
            tracing::debug!(sid = %p.sid, offer_id, "media answer to no pending offer");
            return;
        }
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(a) => a,
            Err(e) => {
                // Keep the offer out: it is sent again, and a readable answer can follow.
                tracing::debug!(sid = %p.sid, error = %e, "bad SDP answer");
                return;
            }
        };
        let Some(PendingOffer { change, added, wants, .. }) = p.pending.take() else { return };
        if let Err(e) = p.rtc.sdp_api().accept_answer(change, answer) {
            // Superseded (the party offered meanwhile) or refused: offer again.
            tracing::debug!(sid = %p.sid, error = %e, "media answer not applied");
            p.wants.extend(wants);
        }
        for mid in added {
            if let Some(m) = p.rtc.media(mid) {
                let (kind, dir) = (m.kind(), m.direction());
                p.set_line(mid, kind, dir);
            }
        }
        self.dirty.push(p.sid.clone());
    }

    /// Reassigns the feeds of every session whose lines changed, offering new lines to
    /// parties that lack some.
    fn reassign_dirty(&mut self) {
        while let Some(sid) = self.dirty.pop() {
            self.dirty.retain(|s| *s != sid);
            let ids = self.by_call.get(&sid).cloned().unwrap_or_default();
            let mut taken: Vec<(u64, Vec<Line>)> = ids
                .iter()
                .filter_map(|id| self.parties.get_mut(id).map(|p| (*id, std::mem::take(&mut p.lines))))
                .collect();
            let needs = {
                let mut refs: Vec<(u64, &mut Vec<Line>)> = taken.iter_mut().map(|(id, l)| (*id, l)).collect();
                feeds::assign(&mut refs)
            };
            for (id, lines) in taken {
                for line in &lines {
                    self.routes.remove(&Source { party: id, mid: line.mid });
                }
                if let Some(p) = self.parties.get_mut(&id) {
                    p.lines = lines;
                }
            }
            for id in &ids {
                let Some(p) = self.parties.get(id) else { continue };
                for line in &p.lines {
                    if let Some(source) = line.feed {
                        self.routes.entry(source).or_default().push((*id, line.mid));
                    }
                }
            }
            for id in ids {
                self.offer_lines(id, needs.get(&id).map_or(&[], |k| k.as_slice()));
            }
        }
    }

    /// Adds `sendonly` lines of `kinds` (and the `sendrecv` lines the party asked
    /// for) to a party's connection and offers them.
    fn offer_lines(&mut self, id: u64, kinds: &[MediaKind]) {
        let Some(p) = self.parties.get_mut(&id) else { return };
        if p.pending.is_some() || !p.rtc.is_alive() || (kinds.is_empty() && p.wants.is_empty()) {
            return; // Asked again once the pending offer is answered.
        }
        let mut change = p.rtc.sdp_api();
        let wants = std::mem::take(&mut p.wants);
        let added: Vec<Mid> = kinds
            .iter()
            .map(|k| (k, Direction::SendOnly))
            .chain(wants.iter().map(|k| (k, Direction::SendRecv)))
            .map(|(k, dir)| change.add_media(*k, dir, None, None, None))
            .collect();
        let Some((offer, change)) = change.apply() else { return };
        let sdp = offer.to_sdp_string();
        let id = self.next_offer;
        self.next_offer += 1;
        tracing::debug!(sid = %p.sid, party = %p.key, offer_id = id, ?kinds, ?wants, "offering lines");
        let (sid, party) = (p.sid.clone(), p.key.clone());
        let _ = self.events.send(RelayEvent::Offer { sid, party, offer_id: id, sdp: sdp.clone() });
        p.pending = Some(PendingOffer { id, change, added, wants, sdp, sent: Instant::now() });
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr) -> Option<u64> {
        let contents = data.try_into().ok()?;
        // Packets are addressed to our one candidate, the advertised address: behind a
        // NAT or port mapping that is not the socket's own address, and ICE must see
        // the address it announced.
        let input = Input::Receive(
            Instant::now(),
            Receive { proto: Protocol::Udp, source, destination: self.advertised, contents },
        );
        // A dead connection's address may come back as a new one's: ask `accepts` again.
        let known = self
            .by_addr
            .get(&source)
            .copied()
            .filter(|id| self.parties.get(id).is_some_and(|p| p.rtc.is_alive()));
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

    /// Polls connection `id` (and every connection its output writes to) until they
    /// only wait, and schedules their wake-ups.
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
                        Event::MediaAdded(m) => {
                            p.set_line(m.mid, m.kind, m.direction);
                            self.dirty.push(p.sid.clone());
                        }
                        Event::MediaChanged(m) => {
                            if let Some(kind) = p.line(m.mid).map(|l| l.kind) {
                                p.set_line(m.mid, kind, m.direction);
                                self.dirty.push(p.sid.clone());
                            }
                        }
                        Event::MediaData(d) => {
                            p.last_media = Instant::now();
                            relays.push(Relay::Media(d.mid, Box::new(d)));
                        }
                        Event::KeyframeRequest(r) => relays.push(Relay::Keyframe(r.mid, r.kind)),
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
            for r in relays {
                match r {
                    Relay::Media(mid, data) => {
                        let Some(dests) = self.routes.get(&Source { party: id, mid }) else { continue };
                        for &(o, line) in dests {
                            let Some(q) = self.parties.get_mut(&o) else { continue };
                            write_media(q, line, &data);
                            if !todo.contains(&o) {
                                todo.push(o);
                            }
                        }
                    }
                    Relay::Keyframe(mid, kind) => {
                        // A receiver lost video: ask the line's source for a keyframe.
                        let source = self.parties.get(&id).and_then(|p| p.line(mid)).and_then(|l| l.feed);
                        let Some(source) = source else { continue };
                        let Some(q) = self.parties.get_mut(&source.party) else { continue };
                        if let Some(mut writer) = q.rtc.writer(source.mid) {
                            let _ = writer.request_keyframe(None, kind);
                        }
                        if !todo.contains(&source.party) {
                            todo.push(source.party);
                        }
                    }
                }
            }
        }
    }

    fn check_liveness(&mut self, now: Instant) {
        for p in self.parties.values_mut() {
            let due = |o: &&mut PendingOffer| now.duration_since(o.sent) > OFFER_RESEND;
            if let Some(pending) = p.pending.as_mut().filter(due).filter(|_| p.rtc.is_alive()) {
                pending.sent = now;
                let offer = RelayEvent::Offer {
                    sid: p.sid.clone(),
                    party: p.key.clone(),
                    offer_id: pending.id,
                    sdp: pending.sdp.clone(),
                };
                let _ = self.events.send(offer);
            }
            if !p.lost && now.duration_since(p.last_media) > self.media_timeout {
                p.lost = true;
                tracing::info!(sid = %p.sid, party = %p.key, "media stopped");
                let _ = self.events.send(RelayEvent::Lost { sid: p.sid.clone(), party: p.key.clone() });
            }
        }
    }
}

/// Writes what another party produced into `q`'s line `mid`.
fn write_media(q: &mut Party, mid: Mid, data: &MediaData) {
    let Some(writer) = q.rtc.writer(mid) else { return };
    let Some(pt) = writer.match_params(data.params) else { return };
    if let Err(e) = writer.write(pt, data.network_time, data.time, data.data.clone()) {
        tracing::debug!(sid = %q.sid, error = %e, "media write failed");
    }
}

/// The `a=ice-ufrag` of an SDP (session or first media level).
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=ice-ufrag:")).map(|u| u.trim().to_string())
}

/// What was wrong with an SDP offer, in our words: a client is never shown a parser's
/// internals (they can carry memory addresses).
fn sdp_problem(e: &str0m::error::SdpError) -> &'static str {
    match e {
        str0m::error::SdpError::ParseError(_) => "the SDP offer could not be parsed",
        str0m::error::SdpError::Inconsistent(_) => "the SDP offer contradicts itself",
    }
}

/// Why the relay refused an offer it could parse, in our words (the details are logged).
fn refused_offer(sid: &str, e: &str0m::RtcError) -> String {
    tracing::debug!(%sid, error = %e, "SDP offer refused");
    let why = match e {
        str0m::RtcError::Sdp(sdp) => sdp_problem(sdp),
        str0m::RtcError::RemoteSdp(m) if m.contains("m-lines") => "the SDP offer has no media lines",
        str0m::RtcError::RemoteSdp(m) if m.contains("ice-ufrag") => {
            "the SDP offer lacks ICE credentials (a=ice-ufrag, a=ice-pwd)"
        }
        str0m::RtcError::RemoteSdp(m) if m.contains("fingerprint") => {
            "the SDP offer lacks a DTLS fingerprint (a=fingerprint)"
        }
        str0m::RtcError::RemoteSdp(m) if m.contains("ICE-Lite") => {
            "the SDP offer is ICE-lite; the relay is ICE-lite too, so the client must do full ICE"
        }
        _ => "the relay cannot answer this SDP offer",
    };
    why.to_string()
}
