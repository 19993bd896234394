//! One party's connection to the relay: its str0m `Rtc`, the lines it has (and whose
//! media each carries), the offer of the relay it has not answered yet, and what the
//! relay learnt of its streams and its network.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::rtp::Ssrc;
use str0m::Rtc;

use crate::ids::Sid;
use crate::media::feeds::Line;
use crate::media::forward;
use crate::media::layers::Estimate;
use crate::media_link::PartyKey;

pub(super) struct Connection {
    pub(super) sid: Sid,
    pub(super) key: PartyKey,
    pub(super) rtc: Rtc,
    /// `a=ice-ufrag` of the offer that made this connection: the same in a
    /// renegotiation, new after a reconnect or an ICE restart.
    pub(super) ufrag: Option<String>,
    /// `a=fingerprint` of the party's DTLS certificate: the same after an ICE restart
    /// (the DTLS association goes on), new for a new peer connection.
    pub(super) fingerprint: Option<String>,
    pub(super) lines: Vec<Line>,
    /// The relay's own offer awaiting the party's answer.
    pub(super) pending: Option<PendingOffer>,
    /// Lines the party asked to send on, not yet offered.
    pub(super) wants: Vec<MediaKind>,
    /// Lines it lacks (kinds), waiting for the back-off to offer them.
    pub(super) needs: Vec<MediaKind>,
    /// No offer before this (after refused answers).
    pub(super) offer_not_before: Option<Instant>,
    pub(super) refused_answers: u32,
    pub(super) last_media: Instant,
    /// The network as this connection's RTCP shows it since the last report.
    pub(super) net: NetSeen,
    pub(super) lost: bool,
    pub(super) wake: Option<Instant>,
    /// Which line each incoming SSRC belongs to (learnt from str0m's streams).
    /// With the simulcast layer (RID) of the stream: senders name it in the first
    /// packets only (browsers stop once the stream is acknowledged).
    pub(super) rx_lines: HashMap<Ssrc, (Mid, MediaKind, Option<Rid>)>,
    /// The numbering of the lines the relay sends on.
    pub(super) tx_lines: forward::Lines,
    /// In a video room: its downlink is estimated, and the rates of the video it gets
    /// are measured (calls need neither, and their forwarding does none of it).
    pub(super) estimated: bool,
    /// The estimate of its downlink (video rooms: they may get simulcast layers).
    pub(super) bwe: Estimate,
    /// The bitrate the estimator was last told to probe for.
    pub(super) probe_bps: u64,
}

impl Connection {
    /// The line an incoming SSRC belongs to.
    pub(super) fn rx_line(&mut self, ssrc: Ssrc) -> Option<(Mid, MediaKind, Option<Rid>)> {
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
    pub(super) fn request_keyframe(&mut self, mid: Mid, rids: &[Rid], kind: KeyframeRequestKind) -> bool {
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

    pub(super) fn line(&self, mid: Mid) -> Option<&Line> {
        self.lines.iter().find(|l| l.mid == mid)
    }

    /// Reads the lines an offer (just accepted) names from the session.
    pub(super) fn sync_lines(&mut self, sdp: &str) {
        for mid in sdp.lines().filter_map(|l| l.trim().strip_prefix("a=mid:")) {
            let mid = Mid::from(mid.trim());
            if let Some(m) = self.rtc.media(mid) {
                let (kind, dir) = (m.kind(), m.direction());
                self.set_line(mid, kind, dir);
            }
        }
    }

    pub(super) fn set_line(&mut self, mid: Mid, kind: MediaKind, dir: Direction) {
        match self.lines.iter_mut().find(|l| l.mid == mid) {
            Some(l) => l.dir = dir,
            None => self.lines.push(Line { mid, kind, dir, feed: None }),
        }
    }
}

/// An offer of the relay that the party has not answered yet.
pub(super) struct PendingOffer {
    pub(super) id: u64,
    pub(super) change: SdpPendingOffer,
    /// The lines it adds.
    pub(super) added: Vec<Mid>,
    /// The `sendrecv` lines among them that the party asked for.
    pub(super) wants: Vec<MediaKind>,
    pub(super) sdp: String,
    pub(super) sent: Instant,
}

/// Loss and round-trip time one connection's RTCP showed since the last report: the
/// worst of what the relay received from it and what it says it received.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct NetSeen {
    loss: Option<f32>,
    rtt: Option<Duration>,
}

impl NetSeen {
    pub(super) fn seen(&mut self, loss: Option<f32>, rtt: Option<Duration>) {
        if let Some(l) = loss {
            self.loss = Some(self.loss.map_or(l, |m| m.max(l)));
        }
        if let Some(r) = rtt {
            self.rtt = Some(self.rtt.map_or(r, |m| m.max(r)));
        }
    }

    /// The grade since the last report, and a fresh start.
    pub(super) fn take_grade(&mut self, alive: bool) -> u8 {
        let g = grade(alive, self.loss, self.rtt);
        *self = NetSeen::default();
        g
    }
}

/// Network quality as the call-engine face grades it: Unknown 0, Excellent
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
