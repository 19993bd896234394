//! Negotiation: a party's offers (a new connection, a renegotiation, an ICE restart),
//! the relay's own offers of the lines a party lacks (with back-off when answers are
//! refused), its answers, and the reassignment of which line carries which source
//! whenever a session's lines change.

use std::collections::HashMap;
use std::time::Instant;

use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::TcpType;
use str0m::{Candidate, Rtc};

use super::connection::{Connection, NetSeen, PendingOffer};
use super::liveness::{BWE_START_KBPS, STATS_EVERY};
use super::{Relay, KEYFRAME_THROTTLE, LIVENESS_EVERY, OFFER_BACKOFF_FIRST, OFFER_BACKOFF_MAX};
use crate::ids::Sid;
use crate::media::feeds::{self, ConnId, Line, Source};
use crate::media::forward;
use crate::media::layers::Estimate;
use crate::media::sdp::{
    browser_answer, browser_offer, ice_ufrag, refused_offer, sdp_fingerprint, sdp_problem,
    without_audio_transport_cc,
};
use crate::media_link::{PartyKey, RelayEvent};

impl Relay {
    pub(super) fn accept(
        &mut self,
        now: Instant,
        sid: &Sid,
        party: &PartyKey,
        sdp: &str,
    ) -> Result<(ConnId, String), String> {
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
            let same = |p: &&mut Connection| {
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
        // Passive ICE-TCP beside UDP (RFC 6544): a client whose network drops UDP
        // connects to it; its priority is below UDP's, so UDP wins where it works.
        if let Some(tcp) = self.tcp_advertised {
            match Candidate::builder().tcp().host(tcp).tcptype(TcpType::Passive).build() {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::error!(error = %e, %tcp, "relay TCP candidate refused"),
            }
        }
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| refused_offer(sid, &e))?;
        let mut party = Connection {
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
        let id = ConnId(self.next_id);
        self.next_id += 1;
        self.by_call.entry(sid.clone()).or_default().push(id);
        self.parties.insert(id, party);
        self.dirty.push(sid.clone());
        self.next_liveness.get_or_insert(now + LIVENESS_EVERY);
        Ok((id, browser_answer(&answer.to_sdp_string())))
    }

    /// The party's answer to our offer: the lines it added are now usable.
    pub(super) fn apply_answer(&mut self, now: Instant, id: ConnId, offer_id: u64, sdp: &str) {
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
    pub(super) fn settle(&mut self, now: Instant) {
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

    pub(super) fn reassign_dirty(&mut self, now: Instant) {
        while let Some(sid) = self.dirty.pop() {
            self.dirty.retain(|s| *s != sid);
            let ids = self.by_call.get(&sid).cloned().unwrap_or_default();
            let before: Vec<(Source, (ConnId, Mid))> = ids
                .iter()
                .filter_map(|id| self.parties.get(id).map(|p| (*id, p)))
                .flat_map(|(id, p)| p.lines.iter().filter_map(move |l| l.feed.map(|f| (f, (id, l.mid)))))
                .collect();
            let mut taken: Vec<(ConnId, Vec<Line>)> = ids
                .iter()
                .filter_map(|id| self.parties.get_mut(id).map(|p| (*id, std::mem::take(&mut p.lines))))
                .collect();
            let needs = {
                let keys: HashMap<ConnId, &PartyKey> =
                    ids.iter().filter_map(|id| self.parties.get(id).map(|p| (*id, &p.key))).collect();
                let on_demand = self.video_from.get(&sid);
                let speakers = self.speakers.get(&sid);
                let wants = |receiver: ConnId, source: ConnId, kind: MediaKind| {
                    if kind == MediaKind::Audio {
                        return speakers.is_none_or(|s| s.is_chosen(source));
                    }
                    let (Some(r), Some(s)) = (keys.get(&receiver), keys.get(&source)) else { return false };
                    on_demand.and_then(|m| m.get(*r)).is_none_or(|from| from.contains_key(*s))
                };
                let mut refs: Vec<(ConnId, &mut Vec<Line>)> =
                    taken.iter_mut().map(|(id, l)| (*id, l)).collect();
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
                let was: Vec<&(Source, (ConnId, Mid))> =
                    before.iter().filter(|(_, (o, _))| o == id).collect();
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

    pub(super) fn ask_keyframe(&mut self, now: Instant, source: Source) {
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
    pub(super) fn offer_lines(&mut self, now: Instant, id: ConnId) {
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
}
