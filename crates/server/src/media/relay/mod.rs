//! The relay's decision-making core, sans IO: datagrams, commands and time go in
//! (`handle_datagram`, `offer`, `answer`, …, `handle_timeout`), datagrams to send and
//! events come out (`poll_transmit`, `poll_event`), and `poll_timeout` says when it
//! wants time next. No socket, no clock: the UDP shell in [`super`] and the tests on
//! simulated time drive it the same way.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::config::DtlsCert;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::net::{Protocol, Transmit};
use str0m::Input;

use super::feeds::{self, ConnId, Source};
use super::layers::{Layers, Want};
use super::speakers::Speakers;
use crate::ids::Sid;
use crate::media_link::{MediaCmd, PartyKey, RelayEvent};

mod connection;
mod forwarding;
mod liveness;
mod negotiation;

use connection::Connection;
use forwarding::Relayed;

/// An unanswered offer is sent again this often: it may have been lost with a
/// signaling connection that dropped. Answering the same offer twice is harmless.
const OFFER_RESEND: Duration = Duration::from_secs(5);
/// After a refused answer the next offer waits this long, doubling up to
/// [`OFFER_BACKOFF_MAX`]: a client that always refuses cannot make the relay offer at
/// round-trip rate.
const OFFER_BACKOFF_FIRST: Duration = Duration::from_millis(500);
const OFFER_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Liveness (media timeout) and offer resends are checked this often.
const LIVENESS_EVERY: Duration = Duration::from_millis(250);
/// Timers already due that [`Relay::drive`] runs at once per connection, before it
/// leaves the rest to [`Relay::handle_timeout`].
const DUE_NOW_MAX: u32 = 4;
/// Connections whose timers [`Relay::handle_timeout`] runs per call (about 15 µs each).
pub const TIMERS_PER_CALL: usize = 64;
/// A source is asked for a keyframe for a new receiver at most this often.
const KEYFRAME_THROTTLE: Duration = Duration::from_millis(500);

/// Counters of what the relay did, for `/metrics`. Monotonic except `connections`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayStats {
    /// Media packets received from parties, audio / video.
    pub packets_in: [u64; 2],
    /// Media packets written to parties, audio / video.
    pub packets_out: [u64; 2],
    /// Payload bytes received, audio / video.
    pub bytes_in: [u64; 2],
    /// Payload bytes written, audio / video.
    pub bytes_out: [u64; 2],
    /// Datagrams from an address no connection claims.
    pub dropped_unknown_source: u64,
    /// Datagrams a connection could not take (SRTP failure, malformed, …).
    pub dropped_bad_input: u64,
    /// Media a receiver line could not take (no matching codec, write failed).
    pub dropped_no_route: u64,
    /// Keyframe requests (PLI/FIR) passed from receivers to sources.
    pub keyframe_requests: u64,
    /// Keyframes asked of a source because a receiver started getting it.
    pub keyframes_for_new_receivers: u64,
    /// Offers the relay sent (resends not counted).
    pub offers: u64,
    /// Answers to the relay's offers that it could not apply.
    pub answers_refused: u64,
    /// Connections (parties) now.
    pub connections: u64,
}

fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

/// The SFU: every party's WebRTC connection, the feeds between them, and what to send.
pub struct Relay {
    advertised: SocketAddr,
    cert: Option<DtlsCert>,
    media_timeout: Duration,
    next_id: u64,
    next_offer: u64,
    parties: HashMap<ConnId, Connection>,
    /// Which connection a remote address belongs to, by transport (learnt from
    /// `accepts`).
    by_addr: HashMap<(Protocol, SocketAddr), ConnId>,
    /// The passive ICE-TCP candidate (RFC 6544) offered beside UDP, if any.
    tcp_advertised: Option<SocketAddr>,
    /// Connections of each session.
    by_call: HashMap<Sid, Vec<ConnId>>,
    /// Where each source's media goes: (party, line) pairs.
    routes: HashMap<Source, Vec<(ConnId, Mid)>>,
    /// When each connection wants `Input::Timeout`.
    wake: BTreeSet<(Instant, ConnId)>,
    /// Sessions whose lines changed: their feeds are reassigned.
    dirty: Vec<Sid>,
    /// When a source was last asked for a keyframe for a new receiver.
    keyframe_asked: HashMap<Source, Instant>,
    /// Per session, the parties that receive video on demand, and whose video each
    /// asked for (rooms); a party not listed receives everyone's (calls).
    video_from: HashMap<Sid, HashMap<PartyKey, HashMap<PartyKey, Want>>>,
    /// The simulcast layers each source sends.
    layers: Layers,
    /// The layer of each simulcast source each receiver gets now.
    chosen: HashMap<(ConnId, Source), Rid>,
    /// Per room session, the loudest-speaker selection (calls have none: both are heard).
    speakers: HashMap<Sid, Speakers>,
    /// Video rooms: their connections estimate their downlinks.
    estimated: std::collections::HashSet<Sid>,
    /// Liveness ticks so far (audio levels are reported every other one).
    ticks: u64,
    /// Parties that lack lines or asked for some: an offer may be due.
    offer_due: Vec<ConnId>,
    /// Parties whose offer waits for the back-off after refused answers.
    deferred: Vec<ConnId>,
    next_liveness: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<RelayEvent>,
    stats: RelayStats,
    /// [`Relay::drive`]'s work lists, kept between calls.
    scratch: (Vec<ConnId>, Vec<Relayed>),
}

impl Relay {
    /// A relay whose one candidate is `advertised`. Every connection uses `cert` for
    /// DTLS (generating a certificate per connection costs milliseconds of CPU);
    /// `None` lets each generate its own.
    pub fn new(advertised: SocketAddr, cert: Option<DtlsCert>, media_timeout: Duration) -> Self {
        Relay {
            advertised,
            cert,
            media_timeout,
            next_id: 1,
            next_offer: 1,
            parties: HashMap::new(),
            by_addr: HashMap::new(),
            tcp_advertised: None,
            by_call: HashMap::new(),
            routes: HashMap::new(),
            wake: BTreeSet::new(),
            dirty: Vec::new(),
            keyframe_asked: HashMap::new(),
            video_from: HashMap::new(),
            layers: Layers::default(),
            chosen: HashMap::new(),
            speakers: HashMap::new(),
            estimated: std::collections::HashSet::new(),
            ticks: 0,
            offer_due: Vec::new(),
            deferred: Vec::new(),
            next_liveness: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: RelayStats::default(),
            scratch: (Vec::new(), Vec::new()),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats { connections: self.parties.len() as u64, ..self.stats.clone() }
    }

    /// A datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// An event for the relay's owner.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// When [`Relay::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn = self.wake.first().map(|(t, _)| *t);
        match (conn, self.next_liveness) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time passes: connections that are due run their timers, at most
    /// [`TIMERS_PER_CALL`] of them (the rest stay due: [`Relay::poll_timeout`] says so
    /// at once), so that the timers of hundreds of connections set up together do not
    /// hold up forwarding; liveness and offer resends are checked.
    pub fn handle_timeout(&mut self, now: Instant) {
        for _ in 0..TIMERS_PER_CALL {
            let Some(&(t, id)) = self.wake.first() else { break };
            if t > now {
                break;
            }
            self.wake.pop_first();
            if let Some(p) = self.parties.get_mut(&id) {
                p.wake = None;
                let _ = p.rtc.handle_input(Input::Timeout(now));
                self.drive(now, id);
            }
        }
        if self.next_liveness.is_some_and(|t| t <= now) {
            self.check_liveness(now);
        }
        self.settle(now);
    }

    /// Also offer a passive ICE-TCP candidate at `addr` (RFC 6544), for clients whose
    /// network drops UDP; its frames come in through [`Relay::handle_tcp`] and go out as
    /// transmits with [`Protocol::Tcp`].
    pub fn set_tcp(&mut self, addr: SocketAddr) {
        self.tcp_advertised = Some(addr);
    }

    /// A datagram arrived at the relay's socket from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        if let Some(id) = self.receive(now, Protocol::Udp, source, data) {
            self.drive(now, id);
        }
        self.settle(now);
    }

    /// A frame (RFC 4571) arrived on the ICE-TCP connection from `source`; whether a
    /// connection of ours claims it (a TCP connection nobody claims is closed).
    pub fn handle_tcp(&mut self, now: Instant, source: SocketAddr, data: &[u8]) -> bool {
        let claimed = self.receive(now, Protocol::Tcp, source, data);
        if let Some(id) = claimed {
            self.drive(now, id);
        }
        self.settle(now);
        claimed.is_some()
    }

    /// A party's SDP offer: the answer, or what was wrong with the offer in our words.
    /// An offer with the ICE credentials of the party's current connection
    /// renegotiates it (a line added or changed); other offers replace the party's
    /// connection (a reconnect).
    pub fn offer(&mut self, now: Instant, sid: &Sid, party: &PartyKey, sdp: &str) -> Result<String, String> {
        // str0m can panic on a hostile offer (fuzzing found one: a payload type
        // declared differently in two sections). A client's SDP must never take the
        // shard, and every session on it, down with it.
        let accepted =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.accept(now, sid, party, sdp)));
        let answer = match accepted {
            Ok(a) => a,
            Err(_) => {
                tracing::warn!(%sid, %party, "an SDP offer made the WebRTC stack fail; refused");
                // A renegotiation may have left the party's connection half changed.
                if let Some(id) = self.find(sid, party) {
                    self.remove(id);
                    self.dirty.push(sid.clone());
                }
                Err("the relay cannot answer this SDP offer".to_string())
            }
        };
        if let Ok((id, _)) = &answer {
            self.drive(now, *id);
        }
        self.settle(now);
        answer.map(|(_, sdp)| sdp)
    }

    /// A party's answer to the relay's offer `offer_id` ([`RelayEvent::Offer`]).
    pub fn answer(&mut self, now: Instant, sid: &Sid, party: &PartyKey, offer_id: u64, sdp: &str) {
        if let Some(id) = self.find(sid, party) {
            self.apply_answer(now, id, offer_id, sdp);
            self.drive(now, id);
        }
        self.settle(now);
    }

    /// A party wants to send `kind` and has no line for it: the relay adds a
    /// `sendrecv` line and offers it. Repeats are ignored.
    pub fn add_line(&mut self, now: Instant, sid: &Sid, party: &PartyKey, kind: MediaKind) {
        let Some(p) = self.find(sid, party).and_then(|id| self.parties.get_mut(&id)) else {
            return;
        };
        let has = p.lines.iter().any(|l| l.kind == kind && feeds::relay_receives(l.dir))
            || p.wants.contains(&kind)
            || p.pending.as_ref().is_some_and(|o| o.wants.contains(&kind));
        if !has {
            p.wants.push(kind);
            self.dirty.push(sid.clone());
        }
        self.settle(now);
    }

    /// A party left a session that goes on.
    pub fn leave(&mut self, now: Instant, sid: &Sid, party: &PartyKey) {
        if let Some(id) = self.find(sid, party) {
            self.remove(id);
            self.dirty.push(sid.clone());
        }
        self.settle(now);
    }

    /// From now on `party` receives video only from the parties in `from` (a room
    /// participant's `requestPeerVideo` set). It may come before the party's first offer.
    pub fn set_video_from(
        &mut self,
        now: Instant,
        sid: &Sid,
        party: &PartyKey,
        from: Vec<(PartyKey, Option<String>)>,
    ) {
        let set: HashMap<PartyKey, Want> =
            from.into_iter().map(|(p, r)| (p, Want::from_resolution(r.as_deref()))).collect();
        let parties = self.video_from.entry(sid.clone()).or_default();
        if parties.get(party) != Some(&set) {
            parties.insert(party.clone(), set);
            self.dirty.push(sid.clone());
        }
        self.settle(now);
    }

    /// The size `receiver` wants of `source`'s video.
    fn want(&self, receiver: ConnId, source: ConnId) -> Want {
        let (Some(r), Some(s)) = (self.parties.get(&receiver), self.parties.get(&source)) else {
            return Want::High;
        };
        self.video_from
            .get(&r.sid)
            .and_then(|m| m.get(&r.key))
            .and_then(|w| w.get(&s.key))
            .copied()
            .unwrap_or_default()
    }

    /// Session `sid` is a room: only the `limit` loudest senders of audio are forwarded
    /// (by the RTP audio level they send), and every party's level is reported
    /// ([`RelayEvent::Levels`]); in a `video` room every connection's downlink is
    /// estimated, to fit the simulcast layers it gets.
    pub fn set_room(&mut self, now: Instant, sid: &Sid, limit: usize, video: bool) {
        self.speakers.entry(sid.clone()).or_insert_with(|| Speakers::new(limit));
        if video {
            self.estimated.insert(sid.clone());
        }
        self.next_liveness.get_or_insert(now + LIVENESS_EVERY);
    }

    /// Runs a command of the core. An offer's answer (or why it was refused) comes out
    /// as [`RelayEvent::Answer`], for the session that sent it.
    pub fn command(&mut self, now: Instant, cmd: MediaCmd) {
        match cmd {
            MediaCmd::Offer { sid, party, sdp, reply } => {
                let result = self.offer(now, &sid, &party, &sdp);
                self.events.push_back(RelayEvent::Answer { sid, party, reply, result });
            }
            MediaCmd::Answer { sid, party, offer_id, sdp } => self.answer(now, &sid, &party, offer_id, &sdp),
            MediaCmd::AddLine { sid, party, kind } => {
                let kind = match kind {
                    switchboard_protocol::MediaType::Audio => MediaKind::Audio,
                    switchboard_protocol::MediaType::Video => MediaKind::Video,
                };
                self.add_line(now, &sid, &party, kind)
            }
            MediaCmd::Leave { sid, party } => self.leave(now, &sid, &party),
            MediaCmd::VideoFrom { sid, party, from } => self.set_video_from(now, &sid, &party, from),
            MediaCmd::Room { sid, speakers, video } => self.set_room(now, &sid, speakers, video),
            MediaCmd::End { sid } => self.end(&sid),
        }
    }

    /// The session is over.
    pub fn end(&mut self, sid: &Sid) {
        self.video_from.remove(sid);
        self.speakers.remove(sid);
        self.estimated.remove(sid);
        for id in self.by_call.get(sid).cloned().unwrap_or_default() {
            self.remove(id);
        }
    }

    fn find(&self, sid: &Sid, party: &PartyKey) -> Option<ConnId> {
        self.by_call
            .get(sid)?
            .iter()
            .copied()
            .find(|id| self.parties.get(id).is_some_and(|p| p.key == *party))
    }

    fn remove(&mut self, id: ConnId) {
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
                let source = Source { party: id, mid: line.mid };
                self.routes.remove(&source);
                self.keyframe_asked.remove(&source);
            }
            if let Some(s) = self.speakers.get_mut(&p.sid) {
                s.forget(id);
            }
            self.layers.forget(id);
            self.chosen.retain(|(o, s), _| *o != id && s.party != id);
        }
        self.by_addr.retain(|_, v| *v != id);
    }
}

#[cfg(test)]
mod tests;
