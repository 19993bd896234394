//! The relay's decision-making core, sans IO: datagrams, commands and time go in
//! (`handle_datagram`, `offer`, `answer`, …, `handle_timeout`), datagrams to send and
//! events come out (`poll_transmit`, `poll_event`), and `poll_timeout` says when it
//! wants time next. No socket, no clock: the UDP shell in [`super`] and the tests on
//! simulated time drive it the same way.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::Ssrc;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use super::feeds::{self, Line, Source};
use super::forward::{self, Packet};
use super::layers::{self, Estimate, Fit, Layers, Want};
use super::sdp::{
    browser_answer, browser_offer, ice_ufrag, refused_offer, sdp_fingerprint, sdp_problem,
    without_audio_transport_cc,
};
use super::speakers::Speakers;
use crate::ids::Sid;
use crate::media_link::{MediaCmd, PartyKey, RelayEvent};

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

struct Party {
    sid: Sid,
    key: PartyKey,
    rtc: Rtc,
    /// `a=ice-ufrag` of the offer that made this connection: the same in a
    /// renegotiation, new after a reconnect or an ICE restart.
    ufrag: Option<String>,
    /// `a=fingerprint` of the party's DTLS certificate: the same after an ICE restart
    /// (the DTLS association goes on), new for a new peer connection.
    fingerprint: Option<String>,
    lines: Vec<Line>,
    /// The relay's own offer awaiting the party's answer.
    pending: Option<PendingOffer>,
    /// Lines the party asked to send on, not yet offered.
    wants: Vec<MediaKind>,
    /// Lines it lacks (kinds), waiting for the back-off to offer them.
    needs: Vec<MediaKind>,
    /// No offer before this (after refused answers).
    offer_not_before: Option<Instant>,
    refused_answers: u32,
    last_media: Instant,
    /// The network as this connection's RTCP shows it since the last report.
    net: NetSeen,
    lost: bool,
    wake: Option<Instant>,
    /// Which line each incoming SSRC belongs to (learnt from str0m's streams).
    /// With the simulcast layer (RID) of the stream: senders name it in the first
    /// packets only (browsers stop once the stream is acknowledged).
    rx_lines: HashMap<Ssrc, (Mid, MediaKind, Option<Rid>)>,
    /// The numbering of the lines the relay sends on.
    tx_lines: forward::Lines,
    /// In a video room: its downlink is estimated, and the rates of the video it gets
    /// are measured (calls need neither, and their forwarding does none of it).
    estimated: bool,
    /// The estimate of its downlink (video rooms: they may get simulcast layers).
    bwe: Estimate,
    /// The bitrate the estimator was last told to probe for.
    probe_bps: u64,
}

impl Party {
    /// The line an incoming SSRC belongs to.
    fn rx_line(&mut self, ssrc: Ssrc) -> Option<(Mid, MediaKind, Option<Rid>)> {
        if let Some(l) = self.rx_lines.get(&ssrc) {
            return Some(*l);
        }
        let (mid, rid) = self.rtc.direct_api().stream_rx(&ssrc).map(|s| (s.mid(), s.rid()))?;
        let kind = self.line(mid)?.kind;
        self.rx_lines.insert(ssrc, (mid, kind, rid));
        Some((mid, kind, rid))
    }

    /// Asks the party's sender on line `mid` for a keyframe: on each of the simulcast
    /// layers `rids`, or on the line's one stream when none is named.
    fn request_keyframe(&mut self, mid: Mid, rids: &[Rid], kind: KeyframeRequestKind) -> bool {
        let rids: Vec<Option<Rid>> =
            if rids.is_empty() { vec![None] } else { rids.iter().map(|r| Some(*r)).collect() };
        let mut asked = false;
        for rid in rids {
            if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, rid) {
                rx.request_keyframe(kind);
                asked = true;
            }
        }
        asked
    }

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

/// What one party's events ask of the others.
// Held in a buffer reused across packets: boxing the packet would allocate per packet.
#[allow(clippy::large_enum_variant)]
enum Relayed {
    Rtp(Mid, Packet),
    Keyframe(Mid, KeyframeRequestKind),
}

/// The SFU: every party's WebRTC connection, the feeds between them, and what to send.
pub struct Relay {
    advertised: SocketAddr,
    cert: Option<DtlsCert>,
    media_timeout: Duration,
    next_id: u64,
    next_offer: u64,
    parties: HashMap<u64, Party>,
    /// Which connection a remote address belongs to (learnt from `accepts`).
    by_addr: HashMap<SocketAddr, u64>,
    /// Connections of each session.
    by_call: HashMap<Sid, Vec<u64>>,
    /// Where each source's media goes: (party, line) pairs.
    routes: HashMap<Source, Vec<(u64, Mid)>>,
    /// When each connection wants `Input::Timeout`.
    wake: BTreeSet<(Instant, u64)>,
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
    chosen: HashMap<(u64, Source), Rid>,
    /// Per room session, the loudest-speaker selection (calls have none: both are heard).
    speakers: HashMap<Sid, Speakers>,
    /// Video rooms: their connections estimate their downlinks.
    estimated: std::collections::HashSet<Sid>,
    /// Liveness ticks so far (audio levels are reported every other one).
    ticks: u64,
    /// Parties that lack lines or asked for some: an offer may be due.
    offer_due: Vec<u64>,
    /// Parties whose offer waits for the back-off after refused answers.
    deferred: Vec<u64>,
    next_liveness: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<RelayEvent>,
    stats: RelayStats,
    /// [`Relay::drive`]'s work lists, kept between calls.
    scratch: (Vec<u64>, Vec<Relayed>),
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

    /// A datagram arrived at the relay's socket from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        if let Some(id) = self.receive(now, data, source) {
            self.drive(now, id);
        }
        self.settle(now);
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
    fn want(&self, receiver: u64, source: u64) -> Want {
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

    /// Picks again, for every receiver of a simulcast source, the layer it gets (what
    /// it asked for, within its downlink estimate: [`layers::fit`]); asks the source for
    /// a keyframe on a layer a receiver switches to, and every receiver's estimator to
    /// probe for what it asked for.
    fn choose_layers(&mut self, now: Instant) {
        let mut by_receiver: HashMap<u64, Vec<Source>> = HashMap::new();
        let mut video_bps: HashMap<u64, u64> = HashMap::new();
        let mut audio_lines: HashMap<u64, u64> = HashMap::new();
        // Only receivers that get layers or whose downlink is estimated (video rooms)
        // need figures: a call's routes are passed over.
        let estimated = |o: &u64| self.parties.get(o).is_some_and(|q| q.estimated);
        for (source, dests) in &self.routes {
            let simulcast = self.layers.is_simulcast(source);
            if !simulcast && !dests.iter().any(|(o, _)| estimated(o)) {
                continue;
            }
            let kind = self.parties.get(&source.party).and_then(|p| p.line(source.mid)).map(|l| l.kind);
            let rate = if simulcast { 0 } else { self.layers.rate(now, source) };
            for (o, _) in dests.iter().filter(|(o, _)| simulcast || estimated(o)) {
                if kind == Some(MediaKind::Audio) {
                    *audio_lines.entry(*o).or_default() += 1;
                    continue;
                }
                *video_bps.entry(*o).or_default() += rate;
                if simulcast {
                    by_receiver.entry(*o).or_default().push(*source);
                }
            }
        }
        // Every receiver, with the simulcast sources it gets (maybe none).
        let receivers: Vec<u64> = audio_lines
            .keys()
            .chain(video_bps.keys())
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for o in receivers {
            // Only the loudest speakers of a room reach a receiver.
            let speakers = self
                .parties
                .get(&o)
                .and_then(|p| self.speakers.get(&p.sid))
                .map_or(u64::MAX, |s| s.limit() as u64);
            let audio = audio_lines.get(&o).copied().unwrap_or(0).min(speakers);
            let other = audio * layers::AUDIO_BPS + video_bps.get(&o).copied().unwrap_or(0);
            let mut picks: Vec<(Source, Vec<(Rid, u64)>)> = Vec::new();
            let mut fits: Vec<Fit> = Vec::new();
            for source in by_receiver.remove(&o).unwrap_or_default() {
                let ranked = self.layers.ranked(now, &source);
                let Some(cap) = self.want(o, source.party).cap(ranked.len()) else { continue };
                let chosen = self.chosen.get(&(o, source));
                let now_rank = chosen.and_then(|c| ranked.iter().position(|(r, _)| r == c));
                fits.push(Fit { rates: ranked.iter().map(|(_, b)| *b).collect(), cap, now: now_rank });
                picks.push((source, ranked));
            }
            let Some(q) = self.parties.get_mut(&o) else { continue };
            let ranks = layers::fit(now, Some(&q.bwe), other, &fits);
            // Probe only for a receiver held below what it asked for: a probe is
            // padding on its downlink, and the estimate grows by itself while the
            // media it gets fills it.
            let held_back = ranks.iter().zip(&fits).any(|(r, f)| *r < f.cap);
            let desired = if held_back { layers::desired(other, &fits) } else { 0 };
            if q.bwe.now().is_some() && desired != q.probe_bps {
                q.probe_bps = desired;
                q.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
                self.drive(now, o);
            }
            for ((source, ranked), rank) in picks.into_iter().zip(ranks) {
                let Some(&(rid, _)) = ranked.get(rank) else { continue };
                if self.chosen.insert((o, source), rid).is_some_and(|old| old != rid) {
                    let estimate = self.parties.get(&o).and_then(|q| q.bwe.now());
                    tracing::debug!(receiver = o, source = source.party, %rid, rank, ?estimate, "simulcast layer switch");
                    if let Some(q) = self.parties.get_mut(&source.party) {
                        q.request_keyframe(source.mid, &[rid], KeyframeRequestKind::Pli);
                        self.stats.keyframe_requests += 1;
                    }
                    self.drive(now, source.party);
                }
            }
        }
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

    fn find(&self, sid: &Sid, party: &PartyKey) -> Option<u64> {
        self.by_call
            .get(sid)?
            .iter()
            .copied()
            .find(|id| self.parties.get(id).is_some_and(|p| p.key == *party))
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

    fn accept(
        &mut self,
        now: Instant,
        sid: &Sid,
        party: &PartyKey,
        sdp: &str,
    ) -> Result<(u64, String), String> {
        let offer = SdpOffer::from_sdp_string(&without_audio_transport_cc(sdp)).map_err(|e| {
            tracing::debug!(%sid, error = %e, "unreadable SDP offer");
            sdp_problem(&e).to_string()
        })?;
        let ufrag = ice_ufrag(sdp);
        let fingerprint = sdp_fingerprint(sdp);
        // The same connection renegotiating, or restarting ICE (the network changed; the
        // DTLS association and its keys go on): answer on it (this drops any offer of
        // ours still pending; its lines are offered again once this settles).
        if let Some(id) = self.find(sid, party) {
            let same = |p: &&mut Party| {
                let same_ice = p.ufrag.is_some() && p.ufrag == ufrag;
                let same_dtls = p.fingerprint.is_some() && p.fingerprint == fingerprint;
                p.rtc.is_alive() && (same_ice || same_dtls)
            };
            if let Some(p) = self.parties.get_mut(&id).filter(same) {
                if let Some(old) = p.pending.take() {
                    p.wants.extend(old.wants);
                }
                if p.ufrag != ufrag {
                    tracing::debug!(%sid, %party, "ICE restart");
                    p.ufrag = ufrag;
                }
                self.dirty.push(sid.clone());
                let answer = p.rtc.sdp_api().accept_offer(offer).map_err(|e| refused_offer(sid, &e))?;
                p.sync_lines(sdp);
                return Ok((id, browser_answer(&answer.to_sdp_string())));
            }
        }
        // RTP mode: packets are forwarded as they came, not reassembled into frames and
        // cut up again.
        // Opus with RED (RFC 2198) where the client offers it: each packet also carries
        // the previous frame, so a receiver fills a lost packet without a resend. A
        // receiver that did not take RED gets the primary only.
        let mut builder = Rtc::builder().set_ice_lite(true).set_rtp_mode(true).enable_opus(true, true);
        // In a room every participant's network quality is reported: it needs stats.
        if self.speakers.contains_key(sid) {
            builder = builder.set_stats_interval(Some(STATS_EVERY));
        }
        // In a video room its downlink is estimated (transport-wide congestion control,
        // which browsers answer), to choose the simulcast layers it can take.
        let estimated = self.estimated.contains(sid);
        if estimated {
            builder = builder.enable_bwe(Some(Bitrate::kbps(BWE_START_KBPS)));
        }
        if let Some(cert) = &self.cert {
            builder = builder.set_dtls_cert(cert.clone());
        }
        let mut rtc = builder.build(now);
        let candidate = Candidate::host(self.advertised, "udp").map_err(|e| {
            tracing::error!(error = %e, advertised = %self.advertised, "relay candidate refused");
            "the relay could not take the offer (internal error)".to_string()
        })?;
        rtc.add_local_candidate(candidate);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| refused_offer(sid, &e))?;
        let mut party = Party {
            sid: sid.clone(),
            key: party.clone(),
            rtc,
            ufrag,
            fingerprint,
            lines: Vec::new(),
            pending: None,
            wants: Vec::new(),
            needs: Vec::new(),
            offer_not_before: None,
            refused_answers: 0,
            last_media: now,
            net: NetSeen::default(),
            lost: false,
            wake: None,
            rx_lines: HashMap::new(),
            tx_lines: forward::Lines::default(),
            estimated,
            bwe: Estimate::default(),
            probe_bps: 0,
        };
        party.sync_lines(sdp);
        if !party.lines.iter().any(|l| party.rtc.media(l.mid).is_some_and(|m| !m.remote_pts().is_empty())) {
            return Err(
                "the SDP offer has no audio or video codec the relay can forward (Opus, VP8, VP9, H.264, AV1)"
                    .into(),
            );
        }
        // A new connection of the same party replaces the old one (a reconnect).
        if let Some(old) = self.find(sid, &party.key) {
            self.remove(old);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_call.entry(sid.clone()).or_default().push(id);
        self.parties.insert(id, party);
        self.dirty.push(sid.clone());
        self.next_liveness.get_or_insert(now + LIVENESS_EVERY);
        Ok((id, browser_answer(&answer.to_sdp_string())))
    }

    /// The party's answer to our offer: the lines it added are now usable.
    fn apply_answer(&mut self, now: Instant, id: u64, offer_id: u64, sdp: &str) {
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
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.rtc.sdp_api().accept_answer(change, answer).map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|_| {
            // As with offers: a hostile answer must not take the shard down. The
            // connection may be half changed: end it (the party reconnects).
            p.rtc.disconnect();
            Err("the WebRTC stack failed on this answer".to_string())
        });
        if let Err(e) = applied {
            // Superseded (the party offered meanwhile) or refused: offer again, later
            // each time.
            tracing::debug!(sid = %p.sid, error = %e, "media answer not applied");
            self.stats.answers_refused += 1;
            p.wants.extend(wants);
            let backoff =
                OFFER_BACKOFF_FIRST.saturating_mul(1 << p.refused_answers.min(6)).min(OFFER_BACKOFF_MAX);
            p.refused_answers += 1;
            p.offer_not_before = Some(now + backoff);
        } else {
            p.refused_answers = 0;
        }
        for mid in added {
            if let Some(m) = p.rtc.media(mid) {
                let (kind, dir) = (m.kind(), m.direction());
                p.set_line(mid, kind, dir);
            }
        }
        self.dirty.push(p.sid.clone());
    }

    /// Runs what inputs left to do: reassigns the feeds of sessions whose lines
    /// changed and offers lines to parties that lack some.
    fn settle(&mut self, now: Instant) {
        self.reassign_dirty(now);
        while let Some(id) = self.offer_due.pop() {
            let Some(p) = self.parties.get(&id) else { continue };
            if p.offer_not_before.is_some_and(|t| t > now) {
                if !self.deferred.contains(&id) {
                    self.deferred.push(id);
                }
                continue;
            }
            // A party with an offer out is asked again once it answers.
            self.offer_lines(now, id);
        }
    }

    fn reassign_dirty(&mut self, now: Instant) {
        while let Some(sid) = self.dirty.pop() {
            self.dirty.retain(|s| *s != sid);
            let ids = self.by_call.get(&sid).cloned().unwrap_or_default();
            let before: Vec<(Source, (u64, Mid))> = ids
                .iter()
                .filter_map(|id| self.parties.get(id).map(|p| (*id, p)))
                .flat_map(|(id, p)| p.lines.iter().filter_map(move |l| l.feed.map(|f| (f, (id, l.mid)))))
                .collect();
            let mut taken: Vec<(u64, Vec<Line>)> = ids
                .iter()
                .filter_map(|id| self.parties.get_mut(id).map(|p| (*id, std::mem::take(&mut p.lines))))
                .collect();
            let needs = {
                let keys: HashMap<u64, &PartyKey> =
                    ids.iter().filter_map(|id| self.parties.get(id).map(|p| (*id, &p.key))).collect();
                let on_demand = self.video_from.get(&sid);
                let speakers = self.speakers.get(&sid);
                let wants = |receiver: u64, source: u64, kind: MediaKind| {
                    if kind == MediaKind::Audio {
                        return speakers.is_none_or(|s| s.is_chosen(source));
                    }
                    let (Some(r), Some(s)) = (keys.get(&receiver), keys.get(&source)) else { return false };
                    on_demand.and_then(|m| m.get(*r)).is_none_or(|from| from.contains_key(*s))
                };
                let mut refs: Vec<(u64, &mut Vec<Line>)> = taken.iter_mut().map(|(id, l)| (*id, l)).collect();
                feeds::assign(&mut refs, &wants)
            };
            for (id, lines) in taken {
                for line in &lines {
                    self.routes.remove(&Source { party: id, mid: line.mid });
                }
                if let Some(p) = self.parties.get_mut(&id) {
                    p.lines = lines;
                    p.needs = needs.get(&id).cloned().unwrap_or_default();
                    if (!p.needs.is_empty() || !p.wants.is_empty()) && !self.offer_due.contains(&id) {
                        self.offer_due.push(id);
                    }
                }
            }
            let mut new_video_sources = Vec::new();
            for id in &ids {
                let Some(p) = self.parties.get(id) else { continue };
                let was: Vec<&(Source, (u64, Mid))> = before.iter().filter(|(_, (o, _))| o == id).collect();
                let now_fed: Vec<(Source, Mid)> =
                    p.lines.iter().filter_map(|l| l.feed.map(|f| (f, l.mid))).collect();
                let same = was.len() == now_fed.len()
                    && now_fed.iter().all(|(f, mid)| was.iter().any(|(g, (_, m))| g == f && m == mid));
                if !same {
                    let lines = p
                        .lines
                        .iter()
                        .filter_map(|l| {
                            let source = self.parties.get(&l.feed?.party)?;
                            Some(switchboard_protocol::MediaLine {
                                mid: l.mid.to_string(),
                                user_id: source.key.to_string(),
                                kind: match l.kind {
                                    MediaKind::Audio => switchboard_protocol::MediaType::Audio,
                                    MediaKind::Video => switchboard_protocol::MediaType::Video,
                                },
                            })
                        })
                        .collect();
                    self.events.push_back(RelayEvent::Lines {
                        sid: sid.clone(),
                        party: p.key.clone(),
                        lines,
                    });
                }
                for line in &p.lines {
                    if let Some(source) = line.feed {
                        self.routes.entry(source).or_default().push((*id, line.mid));
                        let fresh = !before.contains(&(source, (*id, line.mid)));
                        if fresh && line.kind == MediaKind::Video {
                            new_video_sources.push(source);
                        }
                    }
                }
            }
            // A receiver that starts getting a video source must not wait for the next
            // periodic keyframe to decode it.
            for source in new_video_sources {
                self.ask_keyframe(now, source);
            }
        }
    }

    fn ask_keyframe(&mut self, now: Instant, source: Source) {
        if self.keyframe_asked.get(&source).is_some_and(|t| now.duration_since(*t) < KEYFRAME_THROTTLE) {
            return;
        }
        let rids = self.layers.rids(&source);
        let Some(q) = self.parties.get_mut(&source.party) else { return };
        if q.request_keyframe(source.mid, &rids, KeyframeRequestKind::Pli) {
            self.keyframe_asked.insert(source, now);
            self.stats.keyframes_for_new_receivers += 1;
            self.drive(now, source.party);
        }
    }

    /// Adds `sendonly` lines for what the party lacks (and the `sendrecv` lines it
    /// asked for) to its connection and offers them.
    fn offer_lines(&mut self, now: Instant, id: u64) {
        let Some(p) = self.parties.get_mut(&id) else { return };
        if p.pending.is_some() || !p.rtc.is_alive() || (p.needs.is_empty() && p.wants.is_empty()) {
            return; // Asked again once the pending offer is answered.
        }
        let mut change = p.rtc.sdp_api();
        let wants = std::mem::take(&mut p.wants);
        let kinds = std::mem::take(&mut p.needs);
        let added: Vec<Mid> = kinds
            .iter()
            .map(|k| (k, Direction::SendOnly))
            .chain(wants.iter().map(|k| (k, Direction::SendRecv)))
            .map(|(k, dir)| change.add_media(*k, dir, None, None, None))
            .collect();
        let Some((offer, change)) = change.apply() else { return };
        let sdp = browser_offer(&without_audio_transport_cc(&offer.to_sdp_string()));
        let offer_id = self.next_offer;
        self.next_offer += 1;
        self.stats.offers += 1;
        tracing::debug!(sid = %p.sid, party = %p.key, offer_id, ?kinds, ?wants, "offering lines");
        let (sid, party) = (p.sid.clone(), p.key.clone());
        self.events.push_back(RelayEvent::Offer { sid, party, offer_id, sdp: sdp.clone() });
        p.pending = Some(PendingOffer { id: offer_id, change, added, wants, sdp, sent: now });
    }

    fn receive(&mut self, now: Instant, data: &[u8], source: SocketAddr) -> Option<u64> {
        let Ok(contents) = data.try_into() else {
            self.stats.dropped_bad_input += 1;
            return None;
        };
        // Packets are addressed to our one candidate, the advertised address: behind a
        // NAT or port mapping that is not the socket's own address, and ICE must see
        // the address it announced.
        let input = Input::Receive(
            now,
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
                let found = self
                    .parties
                    .iter()
                    .find(|(_, p)| p.rtc.is_alive() && p.rtc.accepts(&input))
                    .map(|(id, _)| *id);
                let Some(id) = found else {
                    self.stats.dropped_unknown_source += 1;
                    return None;
                };
                self.by_addr.insert(source, id);
                id
            }
        };
        let p = self.parties.get_mut(&id)?;
        if let Err(e) = p.rtc.handle_input(input) {
            self.stats.dropped_bad_input += 1;
            tracing::debug!(sid = %p.sid, error = %e, "media input failed");
        }
        Some(id)
    }

    /// Polls connection `id` (and every connection its output writes to) until they
    /// only wait, and schedules their wake-ups.
    fn drive(&mut self, now: Instant, id: u64) {
        // Reused buffers: forwarding allocates nothing of its own per packet.
        let (mut todo, mut relays) = std::mem::take(&mut self.scratch);
        todo.clear();
        todo.push(id);
        while let Some(id) = todo.pop() {
            relays.clear();
            let Some(p) = self.parties.get_mut(&id) else { continue };
            let mut due_now = 0;
            while p.rtc.is_alive() {
                match p.rtc.poll_output() {
                    // Due already: str0m stamps a written packet on a timeout before
                    // it sends it. Run it now, not a loop turn later (that was a timer
                    // turn for every forwarded packet); bounded, should a timer stay due.
                    Ok(Output::Timeout(t)) if t <= now && due_now < DUE_NOW_MAX => {
                        due_now += 1;
                        if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                            tracing::debug!(sid = %p.sid, error = %e, "media timer failed");
                        }
                    }
                    Ok(Output::Timeout(t)) => {
                        if p.wake != Some(t) {
                            if let Some(old) = p.wake.replace(t) {
                                self.wake.remove(&(old, id));
                            }
                            self.wake.insert((t, id));
                        }
                        break;
                    }
                    Ok(Output::Transmit(t)) => self.transmits.push_back(t),
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
                        Event::RtpPacket(pkt) => {
                            p.last_media = now;
                            let Some((mid, kind, rid)) = p.rx_line(pkt.header.ssrc) else {
                                self.stats.dropped_no_route += 1;
                                continue;
                            };
                            let Some(mut packet) = Packet::from_rtp(&p.rtc, pkt, kind) else { continue };
                            packet.rid = packet.rid.or(rid);
                            if kind == MediaKind::Audio {
                                if let Some(s) = self.speakers.get_mut(&p.sid) {
                                    s.heard(now, id, packet.ext.audio_level);
                                }
                            } else if packet.rid.is_some() || p.estimated {
                                let source = Source { party: id, mid };
                                self.layers.packet(now, source, packet.rid, packet.payload.len());
                            }
                            let k = kind_index(kind);
                            self.stats.packets_in[k] += 1;
                            self.stats.bytes_in[k] += packet.payload.len() as u64;
                            relays.push(Relayed::Rtp(mid, packet));
                        }
                        Event::KeyframeRequest(r) => relays.push(Relayed::Keyframe(r.mid, r.kind)),
                        Event::EgressBitrateEstimate(BweKind::Twcc { estimate, can_probe }) => {
                            p.bwe.seen(now, estimate.as_u64(), can_probe)
                        }
                        Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. })
                            if p.bwe.now().is_none() =>
                        {
                            p.bwe.seen(now, estimate.as_u64(), false)
                        }
                        Event::MediaIngressStats(s) => p.net.seen(s.loss, s.rtt),
                        Event::MediaEgressStats(s) => p.net.seen(s.loss, s.rtt),
                        // ICE disconnected: the party's network may be changing. Its
                        // connection stays for an ICE restart; if media does not come
                        // back within the media timeout, the party is lost.
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            tracing::debug!(sid = %p.sid, party = %p.key, "ICE disconnected")
                        }
                        _ => {}
                    },
                    Err(e) => {
                        tracing::debug!(sid = %p.sid, error = %e, "media session failed");
                        p.rtc.disconnect();
                    }
                }
            }
            for r in relays.drain(..) {
                match r {
                    Relayed::Rtp(mid, packet) => {
                        let source = Source { party: id, mid };
                        let Some(dests) = self.routes.get(&source) else { continue };
                        for &(o, line) in dests {
                            // A simulcast source: each receiver gets one layer.
                            if let Some(rid) = packet.rid {
                                let chosen = match self.chosen.get(&(o, source)) {
                                    Some(c) => Some(*c),
                                    None => {
                                        let pick = self.layers.pick(now, &source, self.want(o, id));
                                        if let Some(p) = pick {
                                            self.chosen.insert((o, source), p);
                                        }
                                        pick
                                    }
                                };
                                if chosen.is_some_and(|c| c != rid) {
                                    continue;
                                }
                            }
                            let Some(q) = self.parties.get_mut(&o) else { continue };
                            if !q.rtc.is_alive() {
                                continue;
                            }
                            let k = kind_index(packet.kind);
                            if q.tx_lines.write(&mut q.rtc, line, &packet) {
                                self.stats.packets_out[k] += 1;
                                self.stats.bytes_out[k] += packet.payload.len() as u64;
                            } else {
                                self.stats.dropped_no_route += 1;
                            }
                            if !todo.contains(&o) {
                                todo.push(o);
                            }
                        }
                    }
                    Relayed::Keyframe(mid, kind) => {
                        // A receiver lost video: ask the line's source for a keyframe.
                        let source = self.parties.get(&id).and_then(|p| p.line(mid)).and_then(|l| l.feed);
                        let Some(source) = source else { continue };
                        let rids = match self.chosen.get(&(id, source)) {
                            Some(r) => vec![*r],
                            None => self.layers.rids(&source),
                        };
                        let Some(q) = self.parties.get_mut(&source.party) else { continue };
                        if q.request_keyframe(source.mid, &rids, kind) {
                            self.stats.keyframe_requests += 1;
                        }
                        if !todo.contains(&source.party) {
                            todo.push(source.party);
                        }
                    }
                }
            }
        }
        self.scratch = (todo, relays);
    }

    fn check_liveness(&mut self, now: Instant) {
        self.next_liveness = (!self.parties.is_empty()).then_some(now + LIVENESS_EVERY);
        self.choose_layers(now);
        self.ticks += 1;
        let report = self.ticks.is_multiple_of(2);
        let report_quality = self.ticks.is_multiple_of(QUALITY_EVERY_TICKS);
        for (sid, s) in &mut self.speakers {
            if s.choose(now) {
                self.dirty.push(sid.clone());
            }
            if report {
                let levels: Vec<(PartyKey, u8, bool)> = s
                    .levels(now)
                    .into_iter()
                    .filter_map(|(id, l, talking)| self.parties.get(&id).map(|p| (p.key.clone(), l, talking)))
                    .collect();
                if !levels.is_empty() {
                    self.events.push_back(RelayEvent::Levels { sid: sid.clone(), levels });
                }
            }
            if report_quality {
                let fresh = self.media_timeout.min(STALE);
                let mut quality: Vec<(PartyKey, u8)> = Vec::new();
                for id in self.by_call.get(sid).into_iter().flatten() {
                    if let Some(p) = self.parties.get_mut(id) {
                        let alive = p.rtc.is_alive() && now.duration_since(p.last_media) < fresh;
                        quality.push((p.key.clone(), p.net.take_grade(alive)));
                    }
                }
                if !quality.is_empty() {
                    self.events.push_back(RelayEvent::Quality { sid: sid.clone(), quality });
                }
            }
        }
        self.offer_due.append(&mut self.deferred);
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
                self.events.push_back(offer);
            }
            if !p.lost && now.duration_since(p.last_media) > self.media_timeout {
                p.lost = true;
                tracing::info!(sid = %p.sid, party = %p.key, "media stopped");
                self.events.push_back(RelayEvent::Lost { sid: p.sid.clone(), party: p.key.clone() });
            }
        }
    }
}

/// How often a room connection's stats are taken.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// The downlink estimate a room connection starts from (kbit/s), before feedback.
const BWE_START_KBPS: u64 = 2500;
/// Network quality is reported every this many liveness ticks (2 s).
const QUALITY_EVERY_TICKS: u64 = 8;
/// A participant that sent nothing for this long has a network that is down.
const STALE: Duration = Duration::from_secs(3);

/// Loss and round-trip time one connection's RTCP showed since the last report: the
/// worst of what the relay received from it and what it says it received.
#[derive(Debug, Default, Clone, Copy)]
struct NetSeen {
    loss: Option<f32>,
    rtt: Option<Duration>,
}

impl NetSeen {
    fn seen(&mut self, loss: Option<f32>, rtt: Option<Duration>) {
        if let Some(l) = loss {
            self.loss = Some(self.loss.map_or(l, |m| m.max(l)));
        }
        if let Some(r) = rtt {
            self.rtt = Some(self.rtt.map_or(r, |m| m.max(r)));
        }
    }

    /// The grade since the last report, and a fresh start.
    fn take_grade(&mut self, alive: bool) -> u8 {
        let g = grade(alive, self.loss, self.rtt);
        *self = NetSeen::default();
        g
    }
}

/// Network quality as the call-engine face grades it (SPEC §6): Unknown 0, Excellent
/// 1, Good 2, Poor 3, Bad 4, Very bad 5, Down 6, from packet loss and round-trip time.
pub(crate) fn grade(alive: bool, loss: Option<f32>, rtt: Option<Duration>) -> u8 {
    if !alive {
        return 6;
    }
    let Some(loss) = loss else {
        return if rtt.is_some() { 1 } else { 0 };
    };
    let rtt = rtt.map_or(0, |r| r.as_millis());
    match (loss, rtt) {
        (l, r) if l < 0.01 && r < 150 => 1,
        (l, r) if l < 0.03 && r < 300 => 2,
        (l, r) if l < 0.08 && r < 500 => 3,
        (l, _) if l < 0.15 => 4,
        (l, _) if l < 0.30 => 5,
        _ => 6,
    }
}

#[cfg(test)]
mod tests;
