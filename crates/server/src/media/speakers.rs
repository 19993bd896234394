//! Who is heard in a room: the loudest speakers, chosen from the RTP audio level each
//! sender puts in its packets (RFC 6464, `ssrc-audio-level`), so that a listener in a
//! room of 100 gets no more audio lines, and no more downlink, than in a room of 6.
//!
//! Pure: levels and time go in, the chosen parties and the levels to report come out.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::feeds::ConnId;

/// A sender not heard from for this long counts as silent.
const SILENT_AFTER: Duration = Duration::from_millis(1000);
/// Weight of a new packet's level in the running level (packets come every 20 ms: a
/// time constant of about 200 ms, quick enough to follow turns in a conversation).
const ALPHA: f32 = 0.1;
/// A chosen speaker keeps its place unless another is this much louder (of 127), so
/// that two speakers of about the same level do not swap every evaluation.
const HYSTERESIS: f32 = 6.0;
/// A packet at least this loud (of 127: -50 dBov) carries voice, as browsers judge
/// voice activity.
const VOICE: f32 = 77.0;
/// A party starts talking when this many of its last [`TALK_WINDOW`] packets carry
/// voice (about 100 ms of voice in 200 ms: a short word counts, a click does not).
const TALK_START: u32 = 5;
/// Packets looked at for the start of talking (20 ms each).
const TALK_WINDOW: u32 = 10;
/// A talker stays talking this long after its last voice packet (the hangover), so
/// that the pauses between words do not end it, and the 500 ms level reports cannot
/// miss a short utterance.
const TALK_HANGOVER: Duration = Duration::from_millis(1200);

#[derive(Debug, Clone, Copy)]
struct Level {
    /// 0 (silence, -127 dBov) to 127 (0 dBov).
    smoothed: f32,
    /// Which of the latest packets carried voice (bit 0 the latest).
    voice: u32,
    /// Talking until then (the hangover after the last voice of a talker).
    talking_until: Option<Instant>,
    last: Instant,
}

/// The speaker selection of one room.
#[derive(Debug)]
pub(crate) struct Speakers {
    limit: usize,
    levels: HashMap<ConnId, Level>,
    chosen: HashSet<ConnId>,
}

impl Speakers {
    /// At most `limit` speakers are forwarded.
    pub fn new(limit: usize) -> Self {
        Self { limit: limit.max(1), levels: HashMap::new(), chosen: HashSet::new() }
    }

    /// How many speakers are forwarded at most.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A packet of `party` with its audio level in -dBov (`None` without the extension).
    pub fn heard(&mut self, now: Instant, party: ConnId, audio_level: Option<i8>) {
        // Without the extension a sender counts as speaking at a middling level: it
        // is heard while the room is small, and gives way to those that say how loud.
        let v = audio_level.map_or(64.0, |l| 127.0 - f32::from(l.unsigned_abs().min(127)));
        let e = self.levels.entry(party).or_insert(Level {
            smoothed: v,
            voice: 0,
            talking_until: None,
            last: now,
        });
        e.smoothed += ALPHA * (v - e.smoothed);
        e.voice = (e.voice << 1) | u32::from(v >= VOICE);
        let window = e.voice & ((1 << TALK_WINDOW) - 1);
        let talking = e.talking_until.is_some_and(|t| now < t);
        // Starting takes a burst of voice; once talking, any voice packet keeps it up.
        if (v >= VOICE && talking) || window.count_ones() >= TALK_START {
            e.talking_until = Some(now + TALK_HANGOVER);
        }
        e.last = now;
    }

    /// A party left.
    pub fn forget(&mut self, party: ConnId) {
        self.levels.remove(&party);
        self.chosen.remove(&party);
    }

    /// Whether `party`'s audio is forwarded (a party not heard yet is, so that nobody's
    /// first words are cut while the room is small).
    pub fn is_chosen(&self, party: ConnId) -> bool {
        self.chosen.contains(&party) || (!self.levels.contains_key(&party) && self.chosen.len() < self.limit)
    }

    fn level(&self, now: Instant, party: ConnId) -> f32 {
        match self.levels.get(&party) {
            Some(l) if now.duration_since(l.last) < SILENT_AFTER => l.smoothed,
            _ => 0.0,
        }
    }

    /// Chooses again; whether the chosen set changed.
    pub fn choose(&mut self, now: Instant) -> bool {
        let mut ranked: Vec<(ConnId, f32)> = self.levels.keys().map(|p| (*p, self.level(now, *p))).collect();
        // The chosen ones get the hysteresis bonus; ties go to the lower id (stable).
        let bonus = |p: ConnId, v: f32| if self.chosen.contains(&p) { v + HYSTERESIS } else { v };
        ranked.sort_by(|a, b| bonus(b.0, b.1).total_cmp(&bonus(a.0, a.1)).then(a.0.cmp(&b.0)));
        let chosen: HashSet<ConnId> = ranked.iter().take(self.limit).map(|(p, _)| *p).collect();
        let changed = chosen != self.chosen;
        self.chosen = chosen;
        changed
    }

    /// Every party's level now, 0-100, and whether it is talking.
    pub fn levels(&self, now: Instant) -> Vec<(ConnId, u8, bool)> {
        let mut out: Vec<(ConnId, u8, bool)> = self
            .levels
            .iter()
            .map(|(p, l)| {
                let level = self.level(now, *p);
                let talking = level > 0.0 && l.talking_until.is_some_and(|t| now < t);
                (*p, (level * 100.0 / 127.0).round() as u8, talking)
            })
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loudest_are_chosen_and_near_ties_do_not_flap() {
        let t0 = Instant::now();
        let mut s = Speakers::new(2);
        // Four speakers at -10, -20, -30 and -40 dBov for a second.
        for i in 0..50u64 {
            let now = t0 + Duration::from_millis(20 * i);
            for (party, level) in [(1, -40), (2, -30), (3, -20), (4, -10)] {
                s.heard(now, ConnId(party), Some(level));
            }
        }
        let now = t0 + Duration::from_secs(1);
        assert!(s.choose(now));
        assert!(
            s.is_chosen(ConnId(4))
                && s.is_chosen(ConnId(3))
                && !s.is_chosen(ConnId(2))
                && !s.is_chosen(ConnId(1))
        );
        // 2 gets a little louder than 3 (-18 vs -20): not enough to take its place.
        for i in 0..50u64 {
            let now = now + Duration::from_millis(20 * i);
            s.heard(now, ConnId(2), Some(-18));
            s.heard(now, ConnId(3), Some(-20));
            s.heard(now, ConnId(4), Some(-10));
        }
        let now = now + Duration::from_secs(1);
        assert!(!s.choose(now));
        // 2 gets much louder and 3 goes quiet: they swap.
        for i in 0..50u64 {
            let now = now + Duration::from_millis(20 * i);
            s.heard(now, ConnId(2), Some(-5));
            s.heard(now, ConnId(3), Some(-90));
            s.heard(now, ConnId(4), Some(-10));
        }
        let now = now + Duration::from_secs(1);
        assert!(s.choose(now));
        assert!(s.is_chosen(ConnId(2)) && s.is_chosen(ConnId(4)) && !s.is_chosen(ConnId(3)));
        // A speaker that stops sending is silent after a second.
        let later = now + Duration::from_secs(2);
        s.heard(later, ConnId(3), Some(-40));
        s.choose(later);
        assert!(s.is_chosen(ConnId(3)), "the only one still sending");
        let levels = s.levels(later);
        assert_eq!(
            levels.iter().find(|(p, ..)| *p == ConnId(2)).map(|(_, l, talking)| (*l, *talking)),
            Some((0, false))
        );
        assert!(
            levels.iter().any(|(p, _, talking)| *p == ConnId(3) && !talking),
            "one packet is not talking yet"
        );
    }

    /// Talking starts with about 100 ms of voice, outlasts the pauses between words by
    /// the hangover, and a click is not talking.
    #[test]
    fn talking_starts_with_a_short_word_and_outlasts_pauses() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let talking = |s: &Speakers, now, p: u64| s.levels(now).iter().any(|(q, _, t)| *q == ConnId(p) && *t);
        let mut s = Speakers::new(6);
        // Party 1: a 40 ms click, then silence. Party 2: a 120 ms word, then silence.
        for i in 0..100u64 {
            let (one, two) = (if i < 2 { -20 } else { -127 }, if i < 6 { -20 } else { -127 });
            s.heard(at(20 * i), ConnId(1), Some(one));
            s.heard(at(20 * i), ConnId(2), Some(two));
            if i == 10 {
                assert!(!talking(&s, at(200), 1), "a click is not talking");
                assert!(talking(&s, at(200), 2), "a short word is");
            }
            if i == 60 {
                assert!(talking(&s, at(1200), 2), "still talking through a pause of 1.1 s");
            }
        }
        assert!(!talking(&s, at(2000), 2), "over after the hangover");
        // Speech with pauses: 300 ms of voice every 900 ms keeps talking throughout.
        for i in 0..150u64 {
            let voice = (i % 45) < 15;
            s.heard(at(2000 + 20 * i), ConnId(3), Some(if voice { -25 } else { -127 }));
            if i > 10 {
                assert!(talking(&s, at(2000 + 20 * i), 3), "dropped at packet {i}");
            }
        }
    }

    #[test]
    fn a_small_room_forwards_everyone_from_the_first_packet() {
        let now = Instant::now();
        let mut s = Speakers::new(6);
        assert!(s.is_chosen(ConnId(7)), "not heard yet, room not full: forwarded");
        s.heard(now, ConnId(7), None);
        s.choose(now);
        assert!(s.is_chosen(ConnId(7)));
        s.forget(ConnId(7));
        assert!(s.levels(now).is_empty());
    }
}
