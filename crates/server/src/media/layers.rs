//! Simulcast: a sender may send its video as several layers (RTP streams told apart by
//! their RID, RFC 8851); each receiver gets one of them: at most the size it asked for
//! (`qvga`, `vga`, `hd`), and no more than its downlink carries (the relay's bandwidth
//! estimate for that receiver, from its transport-wide congestion control feedback).
//! Layers are ranked by the bitrate they arrive at, not by their names: senders name
//! them as they like (`q`/`h`/`f`, `0`/`1`/`2`, …).
//!
//! Pure: packets, estimates and time go in, the layer to forward comes out.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use str0m::media::Rid;

use super::feeds::{ConnId, Source};

/// A layer not heard from for this long is not offered to receivers.
const GONE_AFTER: Duration = Duration::from_millis(1500);
/// Weight of each new one-second byte count in a layer's rate.
const ALPHA: f32 = 0.5;

/// The size a receiver asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Want {
    /// `qvga`: the smallest layer.
    Low,
    /// `vga`: the middle one.
    Mid,
    /// `hd` (and the default): the largest.
    #[default]
    High,
}

impl Want {
    /// The highest rank this want allows among `layers` layers (`None` if there are none).
    pub fn cap(self, layers: usize) -> Option<usize> {
        let top = layers.checked_sub(1)?;
        Some(match self {
            Want::Low => 0,
            Want::Mid => top.min(1),
            Want::High => top,
        })
    }

    /// From a `request_peer_video` resolution.
    pub fn from_resolution(r: Option<&str>) -> Want {
        match r {
            Some("qvga") => Want::Low,
            Some("vga") => Want::Mid,
            _ => Want::High,
        }
    }
}

#[derive(Debug)]
struct Seen {
    /// `None`: a source that sends one stream (no simulcast).
    rid: Option<Rid>,
    /// Bytes per second (smoothed).
    rate: f32,
    bytes: u64,
    since: Instant,
    last: Instant,
}

/// What layers each source sends.
#[derive(Debug, Default)]
pub(crate) struct Layers {
    seen: HashMap<Source, Vec<Seen>>,
}

impl Layers {
    /// A video packet of `bytes` on layer `rid` of `source` (`None`: its only stream).
    pub fn packet(&mut self, now: Instant, source: Source, rid: Option<Rid>, bytes: usize) {
        let layers = self.seen.entry(source).or_default();
        let seen = match layers.iter_mut().position(|l| l.rid == rid) {
            Some(i) => &mut layers[i],
            None => {
                layers.push(Seen { rid, rate: 0.0, bytes: 0, since: now, last: now });
                let last = layers.len() - 1;
                &mut layers[last]
            }
        };
        seen.bytes += bytes as u64;
        seen.last = now;
        let span = now.duration_since(seen.since);
        if span >= Duration::from_secs(1) {
            let rate = seen.bytes as f32 / span.as_secs_f32();
            seen.rate = if seen.rate == 0.0 { rate } else { seen.rate + ALPHA * (rate - seen.rate) };
            seen.bytes = 0;
            seen.since = now;
        }
    }

    /// The layers `source` has sent.
    pub fn rids(&self, source: &Source) -> Vec<Rid> {
        self.seen.get(source).map(|l| l.iter().filter_map(|s| s.rid).collect()).unwrap_or_default()
    }

    /// Whether `source` sends more than one layer.
    pub fn is_simulcast(&self, source: &Source) -> bool {
        self.seen.get(source).is_some_and(|l| l.iter().filter(|s| s.rid.is_some()).count() > 1)
    }

    /// The layers of `source` heard lately, smallest first, with their bitrates (bit/s).
    pub fn ranked(&self, now: Instant, source: &Source) -> Vec<(Rid, u64)> {
        let mut live: Vec<&Seen> = self
            .seen
            .get(source)
            .into_iter()
            .flatten()
            .filter(|l| l.rid.is_some() && now.duration_since(l.last) < GONE_AFTER)
            .collect();
        // Layers not measured yet (under a second old) rank by name as a tie-break.
        live.sort_by(|a, b| a.rate.total_cmp(&b.rate).then_with(|| a.rid.as_deref().cmp(&b.rid.as_deref())));
        live.iter().filter_map(|l| Some((l.rid?, (l.rate * 8.0) as u64))).collect()
    }

    /// The bitrate (bit/s) of everything `source` sends, all layers together.
    pub fn rate(&self, now: Instant, source: &Source) -> u64 {
        let live =
            self.seen.get(source).into_iter().flatten().filter(|l| now.duration_since(l.last) < GONE_AFTER);
        live.map(|l| (l.rate * 8.0) as u64).sum()
    }

    /// The layer of `source` to forward to a receiver that wants `want`: among the
    /// layers heard lately, ordered by rate, the smallest, the middle or the largest.
    pub fn pick(&self, now: Instant, source: &Source, want: Want) -> Option<Rid> {
        let live = self.ranked(now, source);
        live.get(want.cap(live.len())?).map(|l| l.0)
    }

    /// A source is gone.
    pub fn forget(&mut self, party: ConnId) {
        self.seen.retain(|s, _| s.party != party);
    }
}

/// Above this share of a receiver's estimate, its layers step down at once.
const DOWN_AT: f64 = 0.90;
/// A layer steps up only if the total stays under this share of the estimate...
const UP_TO: f64 = 0.80;
/// ...held for this long (the lowest estimate of the window counts).
const UP_AFTER: Duration = Duration::from_secs(3);
/// What an audio line the receiver gets costs it (Opus with headers, bit/s).
pub(crate) const AUDIO_BPS: u64 = 50_000;

/// The bandwidth estimates of one receiver's downlink, lately.
#[derive(Debug, Default)]
pub(crate) struct Estimate {
    seen: VecDeque<(Instant, u64)>,
    /// The estimator may still probe for more (str0m says when it no longer can).
    can_probe: bool,
}

impl Estimate {
    /// A new estimate (bit/s).
    pub fn seen(&mut self, now: Instant, bps: u64, can_probe: bool) {
        self.seen.push_back((now, bps));
        self.can_probe = can_probe;
        while self.seen.len() > 1 && self.seen.front().is_some_and(|(t, _)| now.duration_since(*t) > UP_AFTER)
        {
            self.seen.pop_front();
        }
    }

    /// The latest estimate.
    pub fn now(&self) -> Option<u64> {
        self.seen.back().map(|(_, b)| *b)
    }

    /// The lowest estimate of the last [`UP_AFTER`], if the estimates cover that long.
    fn held(&self, now: Instant) -> Option<u64> {
        let (first, _) = self.seen.front()?;
        (now.duration_since(*first) + Duration::from_millis(500) >= UP_AFTER)
            .then(|| self.seen.iter().map(|(_, b)| *b).min())
            .flatten()
    }
}

/// One simulcast source a receiver gets, for [`fit`].
#[derive(Debug, Clone)]
pub(crate) struct Fit {
    /// The layers' bitrates, smallest first.
    pub rates: Vec<u64>,
    /// The highest rank the receiver asked for.
    pub cap: usize,
    /// The rank it gets now (`None`: it gets none yet).
    pub now: Option<usize>,
}

/// The rank each source in `sources` should be forwarded at to a receiver whose
/// downlink is estimated as `est`, besides `other_bps` of media it gets anyway: never
/// above what it asked for; down at once (largest layer first) when the total passes
/// 90 % of the estimate; up one step at a time, round robin, only while the total
/// stays under 80 % of the lowest estimate of the last 3 s. Without an estimate, each
/// gets what it asked for.
pub(crate) fn fit(now: Instant, est: Option<&Estimate>, other_bps: u64, sources: &[Fit]) -> Vec<usize> {
    let Some(latest) = est.and_then(Estimate::now) else {
        return sources.iter().map(|s| s.cap).collect();
    };
    let mut r: Vec<usize> = sources.iter().map(|s| s.now.unwrap_or(0).min(s.cap)).collect();
    let total = |r: &[usize]| other_bps + sources.iter().zip(r).map(|(s, i)| s.rates[*i]).sum::<u64>();
    while total(&r) as f64 > DOWN_AT * latest as f64 {
        let Some(i) = (0..r.len()).filter(|i| r[*i] > 0).max_by_key(|i| sources[*i].rates[r[*i]]) else {
            break;
        };
        r[i] -= 1;
    }
    if let Some(held) = est.and_then(|e| e.held(now)) {
        let room = UP_TO * held.min(latest) as f64;
        loop {
            let mut moved = false;
            for i in 0..r.len() {
                if r[i] < sources[i].cap {
                    r[i] += 1;
                    if total(&r) as f64 > room {
                        r[i] -= 1;
                    } else {
                        moved = true;
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }
    r
}

/// What the estimator should probe for: what the receiver asked for, with headroom
/// (bit/s, rounded up to 100 kbit/s so small changes do not re-probe).
pub(crate) fn desired(other_bps: u64, sources: &[Fit]) -> u64 {
    let want = other_bps + sources.iter().map(|s| s.rates[s.cap]).sum::<u64>();
    ((want as f64 * 1.15) as u64).div_ceil(100_000) * 100_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::media::Mid;

    #[test]
    fn layers_rank_by_rate_and_a_stopped_one_is_skipped() {
        let t0 = Instant::now();
        let source = Source { party: ConnId(1), mid: Mid::from("1") };
        let mut l = Layers::default();
        // Three layers at 20, 60 and 200 kB/s, named so that names would mislead.
        for ms in (0..3000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            l.packet(now, source, Some(Rid::from("a")), 2000);
            l.packet(now, source, Some(Rid::from("z")), 200);
            l.packet(now, source, Some(Rid::from("m")), 600);
        }
        let now = t0 + Duration::from_secs(3);
        assert!(l.is_simulcast(&source));
        assert_eq!(l.pick(now, &source, Want::Low), Some(Rid::from("z")));
        assert_eq!(l.pick(now, &source, Want::Mid), Some(Rid::from("m")));
        assert_eq!(l.pick(now, &source, Want::High), Some(Rid::from("a")));
        // The top layer stops (the sender's bandwidth fell): High gets the best left.
        for ms in (3000..5000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            l.packet(now, source, Some(Rid::from("z")), 200);
            l.packet(now, source, Some(Rid::from("m")), 600);
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.pick(later, &source, Want::High), Some(Rid::from("m")));
        assert_eq!(Want::from_resolution(Some("qvga")), Want::Low);
        assert_eq!(Want::from_resolution(None), Want::High);
        l.forget(ConnId(1));
        assert_eq!(l.pick(later, &source, Want::High), None);
    }

    /// Two simulcast sources at 160, 480 and 1,600 kbit/s to one receiver: its
    /// estimate decides, down at once, up only after the estimate held for 3 s, never
    /// above what it asked for.
    #[test]
    fn layers_fit_the_receivers_estimate() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let rates = vec![160_000, 480_000, 1_600_000];
        let src = |now, cap| Fit { rates: rates.clone(), cap, now };
        let mut est = Estimate::default();
        // No estimate yet: what was asked for.
        assert_eq!(fit(at(0), None, 0, &[src(None, 2), src(None, 1)]), vec![2, 1]);
        // 5 Mbit/s held for 3 s: both at the top.
        for ms in (0..=3000).step_by(250) {
            est.seen(at(ms), 5_000_000, true);
        }
        let audio = 2 * AUDIO_BPS;
        let r = fit(at(3000), Some(&est), audio, &[src(Some(0), 2), src(Some(0), 2)]);
        assert_eq!(r, vec![2, 2]);
        // The estimate falls to 2 Mbit/s: both step down in the same turn.
        est.seen(at(3250), 2_000_000, true);
        let r = fit(at(3250), Some(&est), audio, &[src(Some(2), 2), src(Some(2), 2)]);
        assert_eq!(r, vec![1, 1], "2 x 480 k + audio fits under 1.8 M; 1.6 M + 480 k does not");
        // Back to 5 Mbit/s: not up at once...
        est.seen(at(3500), 5_000_000, true);
        let r = fit(at(4500), Some(&est), audio, &[src(Some(1), 2), src(Some(1), 2)]);
        assert_eq!(r, vec![1, 1], "the 2 M estimate of 1 s ago still counts");
        // ...but once 5 M held for 3 s.
        for ms in (3750..=6750).step_by(250) {
            est.seen(at(ms), 5_000_000, true);
        }
        let r = fit(at(6750), Some(&est), audio, &[src(Some(1), 2), src(Some(1), 2)]);
        assert_eq!(r, vec![2, 2]);
        // What was asked for caps it, however wide the downlink.
        let r = fit(at(6750), Some(&est), audio, &[src(Some(1), 1), src(Some(0), 0)]);
        assert_eq!(r, vec![1, 0]);
        // Probing aims at what was asked for, with headroom.
        assert_eq!(desired(audio, &[src(None, 2), src(None, 0)]), 2_200_000);
    }
}
