//! Simulcast: a sender may send its video as several layers (RTP streams told apart by
//! their RID, RFC 8851); each receiver gets one of them, the one that fits the size it
//! asked for (`qvga`, `vga`, `hd`). Layers are ranked by the bitrate they arrive at,
//! not by their names: senders name them as they like (`q`/`h`/`f`, `0`/`1`/`2`, …).
//!
//! Pure: packets and time go in, the layer to forward comes out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::media::Rid;

use super::feeds::Source;

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
    rid: Rid,
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
    /// A packet of `bytes` on layer `rid` of `source`.
    pub fn packet(&mut self, now: Instant, source: Source, rid: Rid, bytes: usize) {
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
        self.seen.get(source).map(|l| l.iter().map(|s| s.rid).collect()).unwrap_or_default()
    }

    /// Whether `source` sends more than one layer.
    pub fn is_simulcast(&self, source: &Source) -> bool {
        self.seen.get(source).is_some_and(|l| l.len() > 1)
    }

    /// The layer of `source` to forward to a receiver that wants `want`: among the
    /// layers heard lately, ordered by rate, the smallest, the middle or the largest.
    pub fn pick(&self, now: Instant, source: &Source, want: Want) -> Option<Rid> {
        let mut live: Vec<&Seen> =
            self.seen.get(source)?.iter().filter(|l| now.duration_since(l.last) < GONE_AFTER).collect();
        if live.is_empty() {
            return None;
        }
        // Layers not measured yet (under a second old) rank by name as a tie-break.
        live.sort_by(|a, b| a.rate.total_cmp(&b.rate).then_with(|| (*a.rid).cmp(&*b.rid)));
        let i = match want {
            Want::Low => 0,
            Want::Mid => (live.len() - 1).min(1),
            Want::High => live.len() - 1,
        };
        Some(live[i].rid)
    }

    /// A source is gone.
    pub fn forget(&mut self, party: u64) {
        self.seen.retain(|s, _| s.party != party);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::media::Mid;

    #[test]
    fn layers_rank_by_rate_and_a_stopped_one_is_skipped() {
        let t0 = Instant::now();
        let source = Source { party: 1, mid: Mid::from("1") };
        let mut l = Layers::default();
        // Three layers at 20, 60 and 200 kB/s, named so that names would mislead.
        for ms in (0..3000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            l.packet(now, source, Rid::from("a"), 2000);
            l.packet(now, source, Rid::from("z"), 200);
            l.packet(now, source, Rid::from("m"), 600);
        }
        let now = t0 + Duration::from_secs(3);
        assert!(l.is_simulcast(&source));
        assert_eq!(l.pick(now, &source, Want::Low), Some(Rid::from("z")));
        assert_eq!(l.pick(now, &source, Want::Mid), Some(Rid::from("m")));
        assert_eq!(l.pick(now, &source, Want::High), Some(Rid::from("a")));
        // The top layer stops (the sender's bandwidth fell): High gets the best left.
        for ms in (3000..5000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            l.packet(now, source, Rid::from("z"), 200);
            l.packet(now, source, Rid::from("m"), 600);
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.pick(later, &source, Want::High), Some(Rid::from("m")));
        assert_eq!(Want::from_resolution(Some("qvga")), Want::Low);
        assert_eq!(Want::from_resolution(None), Want::High);
        l.forget(1);
        assert_eq!(l.pick(later, &source, Want::High), None);
    }
}
