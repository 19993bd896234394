//! What the relay watches over time: media that stopped (the party is lost), offers
//! to send again, the loudest speakers of each room and everyone's audio level, each
//! room participant's network quality, and the simulcast layer each receiver gets.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::media::{KeyframeRequestKind, MediaKind, Rid};

use super::connection::PendingOffer;
use super::{Relay, LIVENESS_EVERY, OFFER_RESEND};
use crate::media::feeds::{ConnId, Source};
use crate::media::layers::{self, Fit};
use crate::media_link::{PartyKey, RelayEvent};

impl Relay {
    /// Picks again, for every receiver of a simulcast source, the layer it gets (what
    /// it asked for, within its downlink estimate: [`layers::fit`]); asks the source for
    /// a keyframe on a layer a receiver switches to, and every receiver's estimator to
    /// probe for what it asked for.
    pub(super) fn choose_layers(&mut self, now: Instant) {
        let mut by_receiver: HashMap<ConnId, Vec<Source>> = HashMap::new();
        let mut video_bps: HashMap<ConnId, u64> = HashMap::new();
        let mut audio_lines: HashMap<ConnId, u64> = HashMap::new();
        // Only receivers that get layers or whose downlink is estimated (video rooms)
        // need figures: a call's routes are passed over.
        let estimated = |o: &ConnId| self.parties.get(o).is_some_and(|q| q.estimated);
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
        let receivers: Vec<ConnId> = audio_lines
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
                    tracing::debug!(receiver = %o, source = %source.party, %rid, rank, ?estimate, "simulcast layer switch");
                    if let Some(q) = self.parties.get_mut(&source.party) {
                        q.request_keyframe(source.mid, &[rid], KeyframeRequestKind::Pli);
                        self.stats.keyframe_requests += 1;
                    }
                    self.drive(now, source.party);
                }
            }
        }
    }

    pub(super) fn check_liveness(&mut self, now: Instant) {
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
pub(super) const STATS_EVERY: Duration = Duration::from_secs(1);

/// The downlink estimate a room connection starts from (kbit/s), before feedback.
pub(super) const BWE_START_KBPS: u64 = 2500;

/// Network quality is reported every this many liveness ticks (2 s).
const QUALITY_EVERY_TICKS: u64 = 8;

/// A participant that sent nothing for this long has a network that is down.
const STALE: Duration = Duration::from_secs(3);
